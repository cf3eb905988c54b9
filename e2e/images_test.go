package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cachedImage is what `hpcrun images --format json` says of one image.
type cachedImage struct {
	Digest  string    `json:"digest"`
	Ref     string    `json:"ref"`
	Size    int64     `json:"size"`
	Blobs   int64     `json:"blobs"`
	LastUse time.Time `json:"last_use"`
	Damaged bool      `json:"damaged"`
}

// Pulled images in the default cache: images counts their blobs (a column,
// and --format json), rmi takes the reference as pulled and removes the
// blobs no other image uses; prune takes days and weeks, and removes
// every image only with --all or a yes at a terminal.
func TestImagesPulled(t *testing.T) {
	t.Parallel()
	needUserns(t)
	lr := startRegistry(t)
	lr.pushArchive(t, busyboxImage(t), "test/one:v1")
	lr.pushArchive(t, busyboxImage(t, `MKIMAGE_CMD=["echo","two"]`), "test/two:v1")
	one, two := lr.host+"/test/one:v1", lr.host+"/test/two:v1"
	uid := freeUID(t)
	cache := "/var/tmp/hpcrun-" + strconv.Itoa(uid) // the default cache
	removeUserDirs(t, uid)
	o := opts{uid: uid, env: []string{"HOME=/nonexistent"}, dir: "/"}
	list := func() map[string]cachedImage {
		t.Helper()
		r := mustRun(t, o, "images", "--format", "json")
		var ims []cachedImage
		if err := json.Unmarshal([]byte(r.stdout), &ims); err != nil {
			t.Fatalf("images --format json: %v\n%s", err, r)
		}
		m := map[string]cachedImage{}
		for _, im := range ims {
			m[im.Ref] = im
		}
		return m
	}
	blob := func(digest string) string {
		return filepath.Join(cache, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
	}

	mustRun(t, o, "-q", "pull", one)
	mustRun(t, o, "-q", "pull", "docker://"+two)
	ims := list()
	a, b := ims["docker://"+one], ims["docker://"+two]
	if len(ims) != 2 || a.Blobs == 0 || b.Blobs == 0 || a.Size == 0 || a.LastUse.IsZero() {
		t.Fatalf("images --format json after two pulls: %+v", ims)
	}
	if _, err := os.Stat(blob(a.Digest)); err != nil {
		t.Fatalf("the manifest of %s is not in blobs/: %v", one, err)
	}
	r := mustRun(t, o, "images")
	if head := strings.Fields(lines(r.stdout)[0]); strings.Join(head, " ") != "DIGEST SIZE BLOBS LAST USE REF" {
		t.Errorf("images: header %q\n%s", head, r)
	}

	// As pulled: no docker://, and the registry's own spelling.
	if r := mustRun(t, o, "rmi", one); strings.TrimSpace(r.stdout) != a.Digest {
		t.Errorf("rmi %s: %s", one, r)
	}
	ims = list()
	if _, err := os.Stat(blob(a.Digest)); err == nil || len(ims) != 1 || ims["docker://"+two].Blobs != b.Blobs {
		t.Errorf("after rmi %s: its manifest blob is left (%v), or %s lost blobs: %+v", one, err, two, ims)
	}
	mustRun(t, o, "rmi", "docker://"+two)
	if ents, _ := os.ReadDir(filepath.Join(cache, "blobs", "sha256")); len(ents) != 0 || len(list()) != 0 {
		t.Errorf("after rmi of both, blobs left: %v", ents)
	}

	// prune: days and weeks; a bare prune wants --all, or a yes.
	mustRun(t, o, "-q", "pull", one)
	for _, age := range []string{"7d", "2w", "36h"} {
		if r := mustRun(t, o, "prune", "--older-than", age); r.stdout != "" {
			t.Errorf("prune --older-than %s removed %q", age, r.stdout)
		}
	}
	r = run(t, o, "prune", "--older-than", "7days")
	if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "7d, 2w") {
		t.Errorf("prune --older-than 7days: %s", r)
	}
	r = run(t, o, "prune")
	if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "--all") || len(list()) != 1 {
		t.Errorf("a bare prune without a terminal: want exit 125, one line that names --all, the image kept: %s", r)
	}
	for _, answer := range []string{"n", "y"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		term := startOnTerminal(t, command(ctx, o, binPath, "prune"))
		term.waitFor("[y/N]")
		term.say(answer + "\n")
		code, err := term.wait()
		cancel()
		left := len(list())
		if code != 0 || (answer == "n") != (left == 1) {
			t.Errorf("a bare prune at a terminal, answered %s: exit %d (%v), %d images left; terminal %q",
				answer, code, err, left, term.out.String())
		}
	}
	mustRun(t, o, "-q", "pull", one)
	if r := mustRun(t, o, "prune", "--all"); len(lines(r.stdout)) != 1 || len(list()) != 0 {
		t.Errorf("prune --all: %s", r)
	}
}

// hpcrun list names the image a container runs in, says when it was made
// as people do, and its owner by name; --format json adds the image to the
// raw fields. As the test user, with the default cache and state dirs.
func TestImagesInList(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t)
	name := "list-image-" + strconv.Itoa(os.Getpid())
	mustRun(t, opts{}, "-q", "--name", name, "--detach", "--image", image, "sleep", "1000")
	t.Cleanup(func() {
		runRaw(opts{}, binPath, "kill", name, "KILL")
		runRaw(opts{}, binPath, "delete", "--force", name)
	})
	owner := strconv.Itoa(testUID)
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	r := mustRun(t, opts{}, "list")
	var row []string
	for _, l := range lines(r.stdout) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			row = f
		}
	}
	if head := strings.Fields(lines(r.stdout)[0]); strings.Join(head, " ") != "ID PID STATUS IMAGE CREATED OWNER" ||
		len(row) < 6 || row[3] != image || !strings.HasSuffix(strings.Join(row[4:len(row)-1], " "), "ago") &&
		strings.Join(row[4:len(row)-1], " ") != "just now" || row[len(row)-1] != owner {
		t.Errorf("list: want %s with image %s, a human time and owner %s:\n%s", name, image, owner, r.stdout)
	}
	r = mustRun(t, opts{}, "list", "--format", "json")
	var states []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &states); err != nil {
		t.Fatalf("list --format json: %v\n%s", err, r)
	}
	found := false
	for _, s := range states {
		if s["id"] == name {
			found = true
			if s["image"] != image || s["owner"] != strconv.Itoa(testUID) || s["created"] == nil {
				t.Errorf("list --format json: %v", s)
			}
		}
	}
	if !found {
		t.Errorf("list --format json has no %s: %s", name, r.stdout)
	}
}
