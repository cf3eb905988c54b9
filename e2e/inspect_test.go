package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// inspected is what `hpcrun inspect --format json` says of an image.
type inspected struct {
	Ref        string            `json:"ref"`
	Digest     string            `json:"digest"`
	Platform   string            `json:"platform"`
	Size       int64             `json:"size"`
	Layers     []map[string]any  `json:"layers"`
	Entrypoint []string          `json:"entrypoint"`
	Cmd        []string          `json:"cmd"`
	Env        []string          `json:"env"`
	WorkingDir string            `json:"working_dir"`
	Labels     map[string]string `json:"labels"`
	Cached     *struct {
		Dir  string `json:"dir"`
		Size int64  `json:"size"`
	} `json:"cached"`
	Partial bool `json:"partial"`
}

// hpcrun inspect, as a user with the default cache: an archive, the same
// image once run (where the cache holds it) and by its digest, a pulled
// image with its registry down, and the Python image; table and JSON. It
// unpacks nothing, and prints what the image says escaped.
func TestInspect(t *testing.T) {
	t.Parallel()
	needUserns(t)
	uid := freeUID(t)
	cache := "/var/tmp/hpcrun-" + strconv.Itoa(uid) // the default cache
	removeUserDirs(t, uid)
	o := opts{uid: uid, env: []string{"HOME=/nonexistent"}, dir: "/"}
	bb := busyboxImage(t, `MKIMAGE_CMD=["echo","hi"]`, "MKIMAGE_WORKDIR=/tmp",
		`MKIMAGE_LABELS={"org.example.evil":"x\u001b]0;owned\u0007y","org.example.ok":"plain"}`)
	get := func(ref string) inspected {
		t.Helper()
		r := mustRun(t, o, "inspect", "--format", "json", ref)
		var in inspected
		if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
			t.Fatalf("inspect --format json %s: %v\n%s", ref, err, r)
		}
		return in
	}

	in := get(bb)
	if in.Ref != bb || !strings.HasPrefix(in.Digest, "sha256:") || in.Platform != "linux/"+runtime.GOARCH ||
		strings.Join(in.Cmd, " ") != "echo hi" || in.WorkingDir != "/tmp" || len(in.Layers) != 1 || in.Size == 0 ||
		in.Labels["org.example.evil"] != "x\x1b]0;owned\x07y" || in.Cached != nil || in.Partial {
		t.Errorf("inspect --format json %s: %+v", bb, in)
	}
	if images, _ := cacheEntries(t, cache); len(images) != 0 {
		t.Errorf("inspect unpacked the image: %v", images)
	}
	r := mustRun(t, o, "inspect", bb)
	for _, want := range []string{"Digest:     " + in.Digest, `Cmd:        ["echo","hi"]`, "Cached:     no",
		`org.example.evil=x\x1b]0;owned\x07y`, "IMAGE_VAR=from-image", "application/vnd.oci.image.layer.v1.tar+gzip"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect %s: no %q\n%s", bb, want, r.stdout)
		}
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07") {
		t.Errorf("inspect printed the label's control characters raw:\n%q", r.stdout)
	}

	// Once run, the cache holds it; its digest names it, and while the
	// archive is there the whole description comes from it.
	mustRun(t, o, "--no-home", "--image", bb, "true")
	in = get(bb)
	if in.Cached == nil || !strings.HasPrefix(in.Cached.Dir, cache+"/images/") || in.Cached.Size == 0 {
		t.Errorf("inspect after a run: cached %+v", in.Cached)
	}
	byDigest := get(strings.TrimPrefix(in.Digest, "sha256:")[:12])
	if byDigest.Digest != in.Digest || byDigest.Partial || len(byDigest.Layers) != 1 || byDigest.Cached == nil {
		t.Errorf("inspect by digest: %+v", byDigest)
	}
	if err := os.Remove(bb); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, o, "inspect", in.Digest)
	if !strings.Contains(r.stdout, "Layers:     unknown") || !strings.Contains(r.stdout, `Cmd:        ["echo","hi"]`) {
		t.Errorf("inspect of a cached image whose archive is gone:\n%s", r.stdout)
	}

	// A registry image: from the registry before a pull, from the cache
	// after one even with the registry down.
	lr := startRegistry(t)
	lr.pushArchive(t, busyboxImage(t, `MKIMAGE_ENTRYPOINT=["/bin/sh"]`), "test/insp:v1")
	ref := "docker://" + lr.host + "/test/insp:v1"
	remote := get(ref)
	if strings.Join(remote.Entrypoint, " ") != "/bin/sh" || len(remote.Layers) != 1 || remote.Cached != nil {
		t.Errorf("inspect %s: %+v", ref, remote)
	}
	if images, _ := cacheEntries(t, cache); len(images) != 1 {
		t.Errorf("inspect %s unpacked it: %v", ref, images)
	}
	mustRun(t, o, "-q", "pull", ref)
	lr.setHook(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	if cached := get(ref); cached.Digest != remote.Digest || cached.Cached == nil {
		t.Errorf("inspect %s from the cache: %+v", ref, cached)
	}
	lr.setHook(nil)

	// The Python image, unpacked nowhere.
	py := pythonImage(t)
	in = get(py)
	if in.Platform != "linux/"+runtime.GOARCH || len(in.Layers) == 0 || len(in.Env) == 0 {
		t.Errorf("inspect %s: %+v", py, in)
	}
	if r := mustRun(t, o, "inspect", py); !strings.Contains(r.stdout, "Layers:") || !strings.Contains(r.stdout, "PATH=") {
		t.Errorf("inspect %s:\n%s", py, r.stdout)
	}

	// Bad input: one line, 125, nothing on stdout.
	junk := tempDirOwned(t) + "/junk.tar"
	os.WriteFile(junk, []byte("no image here\n"), 0o644)
	for _, args := range [][]string{{"inspect", "/nonexistent/img.tar"}, {"inspect", junk}, {"inspect", "--format", "json", junk},
		{"inspect", "--format", "yaml", py}, {"inspect", "0123456789ab"}} {
		r := run(t, o, args...)
		if r.code != 125 || r.stdout != "" || len(lines(r.stderr)) != 1 || !strings.HasPrefix(r.stderr, "hpcrun: ") {
			t.Errorf("bad input: %s", r)
		}
	}
}
