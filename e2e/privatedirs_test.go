package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hpcrun/hpcrun/internal/treesnap"
)

// The image cache and the container state are private to their user:
// another user on the node can neither read nor replace them, and hpcrun
// makes nothing in a directory that someone else put in its way.

// otherUID is a second unprivileged user, with no passwd entry needed.
const otherUID = 65533

// umask0 runs hpcrun with umask 0, so that only the modes hpcrun asks
// for decide what others may do with what it makes.
func umask0(t *testing.T, args ...string) result {
	t.Helper()
	r := runRaw(opts{files: true}, "/bin/sh", append([]string{"-c", `umask 0 && exec "$@"`, "sh", binPath}, args...)...)
	if r.err != nil || r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// checkPrivate checks that every entry under top (top included) belongs
// to the test user, and, unless inside says it is the contents of an
// unpacked rootfs, has no group or other permission bits. It returns the
// entries, relative to top.
func checkPrivate(t *testing.T, top string, inside func(rel string) bool) map[string]fs.FileMode {
	t.Helper()
	seen := map[string]fs.FileMode{}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, p)
		seen[rel] = fi.Mode()
		if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != testUID {
			t.Errorf("%s belongs to uid %d, not to the user (%d)", p, uid, testUID)
		}
		if !inside(rel) && fi.Mode()&(0o077|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			t.Errorf("%s is %v: group or other bits on what hpcrun made", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", top, err)
	}
	return seen
}

// What hpcrun makes in the cache (a cold start, a pull) and in the state
// root (a detached container, while it runs) is its user's and 0700 or
// 0600, even with umask 0. An unpacked rootfs keeps the image's modes
// (0755 dirs), but under a 0700 dir: another user reaches nothing.
func TestCacheAndStatePrivate(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t)
	lr := startRegistry(t)
	lr.pushArchive(t, image, "test/private:v1")
	cache := filepath.Join(tempDirOwned(t), "cache")
	root := filepath.Join(tempDirOwned(t), "state")

	umask0(t, "-q", "--cache", cache, "--image", image, "true")
	umask0(t, "-q", "pull", "--cache", cache, lr.host+"/test/private:v1")
	umask0(t, "-q", "--root", root, "--cache", cache, "--image", image, "--name", "svc", "--detach", "sleep", "60")
	t.Cleanup(func() { lc(t, root, "kill", "svc", "KILL") })

	var rootfs string
	seen := checkPrivate(t, cache, func(rel string) bool {
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) >= 3 && parts[0] == "images" && parts[2] == "rootfs" {
			rootfs = filepath.Join(cache, parts[0], parts[1], parts[2])
			return true
		}
		return false
	})
	var meta, lock, key, blob string
	for rel, mode := range seen {
		switch parts := strings.Split(rel, string(filepath.Separator)); {
		case len(parts) == 3 && parts[0] == "images" && parts[2] == "image.meta":
			meta = filepath.Join(cache, rel)
		case len(parts) == 2 && parts[0] == "locks" && mode.IsRegular():
			lock = filepath.Join(cache, rel)
		case len(parts) == 2 && parts[0] == "keys" && mode.IsRegular():
			key = filepath.Join(cache, rel)
		case len(parts) == 3 && parts[0] == "blobs" && mode.IsRegular():
			blob = filepath.Join(cache, rel)
		}
	}
	for _, dir := range []string{".", "images", "locks", "tmp", "keys", "blobs"} {
		if !seen[dir].IsDir() {
			t.Errorf("the cache has no %s dir: %v", dir, seen)
		}
	}
	if rootfs == "" || meta == "" || lock == "" || key == "" || blob == "" {
		t.Fatalf("want a rootfs, image.meta, lock, key and blob in the cache; found %q %q %q %q %q in %v", rootfs, meta, lock, key, blob, seen)
	}
	seen = checkPrivate(t, root, func(string) bool { return false })
	for _, f := range []string{"svc", "svc/state.json", "svc/log", "svc/ctl"} {
		if _, ok := seen[f]; !ok {
			t.Errorf("the state root has no %s: %v", f, seen)
		}
	}

	// Another user can neither list nor open anything there; the test
	// user, as a check of the paths, can.
	tries := []struct{ op, path string }{
		{"ls", cache}, {"ls", filepath.Join(cache, "images")}, {"ls", rootfs}, {"stat", rootfs},
		{"cat", filepath.Join(rootfs, "etc/passwd")}, {"stat", filepath.Join(rootfs, "bin/busybox")},
		{"cat", meta}, {"cat", lock}, {"cat", key}, {"cat", blob},
		{"ls", root}, {"cat", filepath.Join(root, "svc/state.json")}, {"cat", filepath.Join(root, "svc/log")},
		{"stat", filepath.Join(root, "svc/ctl")},
	}
	script, args := "", []string{}
	for i, tr := range tries {
		script += fmt.Sprintf("%s %q \"${%d}\" >/dev/null && echo reached %d\n", hostBusybox, tr.op, i+1, i)
		args = append(args, tr.path)
	}
	for _, as := range []int{otherUID, testUID} {
		if as == otherUID && !asOther {
			continue
		}
		r := runRaw(opts{uid: as}, "/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
		if r.err != nil {
			t.Fatal(r)
		}
		for i, tr := range tries {
			reached := strings.Contains(r.stdout, fmt.Sprintf("reached %d\n", i))
			if as == otherUID && reached {
				t.Errorf("uid %d could %s %s", as, tr.op, tr.path)
			}
			if as == testUID && !reached {
				t.Errorf("the owner could not %s %s: %s", tr.op, tr.path, r)
			}
		}
		if as == otherUID {
			if n := strings.Count(r.stderr, "Permission denied"); n != len(tries) {
				t.Errorf("uid %d: want %d refusals with EACCES, got %d: %s", as, len(tries), n, r)
			}
		}
	}
}

// freeUID is a uid with no passwd entry and no hpcrun dirs in /tmp or
// /var/tmp: a user whose default dirs a test may plant things in.
func freeUID(t *testing.T) int {
	t.Helper()
	for uid := 62000 + os.Getpid()%1000; uid < 64000; uid++ {
		if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			continue
		}
		free := true
		for _, d := range []string{"/tmp", "/var/tmp"} {
			if _, err := os.Lstat(filepath.Join(d, "hpcrun-"+strconv.Itoa(uid))); !errors.Is(err, fs.ErrNotExist) {
				free = false
			}
		}
		if free {
			return uid
		}
	}
	t.Fatal("no free uid")
	return 0
}

// A default cache (/var/tmp/hpcrun-UID) or state
// root (/tmp/hpcrun-UID/run) that someone else made first, as their
// directory or a symlink to one, is refused in one line that says what
// to do, and nothing is written there. Once it is gone the same runs work.
func TestDefaultDirsRefuseOthers(t *testing.T) {
	t.Parallel()
	needUserns(t)
	if !asOther {
		t.Skip("needs root to act as other users")
	}
	victim := freeUID(t)
	cacheDir := "/var/tmp/hpcrun-" + strconv.Itoa(victim) // jobs.CacheIn(jobs.Candidates[0], victim)
	tmpDir := "/tmp/hpcrun-" + strconv.Itoa(victim)       // the state root's parent
	t.Cleanup(func() {
		os.RemoveAll(cacheDir)
		os.RemoveAll(tmpDir)
	})
	image := busyboxImage(t)
	attackers, err := os.MkdirTemp(baseDir, "attacker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(attackers) })
	os.Chmod(attackers, 0o755)
	imageRun := []string{"-q", "--image", image, "true"}
	namedRun := []string{"--rootfs", rootfsDir, "--name", "svc", "true"}

	for _, tc := range []struct {
		name   string
		at     string // the default dir that is planted
		owner  int    // of the planted dir or symlink
		mode   os.FileMode
		link   bool // a symlink to a 0777 dir of otherUID's, rather than a dir
		env    []string
		args   []string
		advice string // what the message says to do
	}{
		{"cache: another user's dir", cacheDir, otherUID, 0o777, false, nil, imageRun, "--cache"},
		{"cache: root's dir", cacheDir, 0, 0o755, false, nil, imageRun, "--cache"},
		{"cache: another user's symlink", cacheDir, otherUID, 0, true, nil, imageRun, "--cache"},
		{"cache: root's symlink to another user's dir", cacheDir, 0, 0, true, nil, imageRun, "--cache"},
		{"state: another user's dir", tmpDir, otherUID, 0o777, false, nil, namedRun, "--root gives another"},
		{"state: another user's symlink", tmpDir, otherUID, 0, true, nil, namedRun, "--root gives another"},
		{"state: root's symlink to another user's dir", tmpDir, 0, 0, true, nil, namedRun, "--root gives another"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theirs, err := os.MkdirTemp(attackers, "d-")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(theirs, otherUID, otherUID); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(theirs, 0o777); err != nil {
				t.Fatal(err)
			}
			if tc.link {
				err = os.Symlink(theirs, tc.at)
			} else {
				theirs = tc.at
				err = os.Mkdir(tc.at, 0o700)
				if err == nil {
					err = os.Chmod(tc.at, tc.mode)
				}
			}
			if err == nil {
				err = os.Lchown(tc.at, tc.owner, tc.owner)
			}
			defer os.RemoveAll(tc.at)
			if err != nil {
				t.Fatal(err)
			}
			before := fingerprint(t, theirs)

			r := run(t, opts{uid: victim, env: tc.env}, tc.args...)
			assertOneErrorLine(t, r)
			if !strings.Contains(r.stderr, tc.at) || !strings.Contains(r.stderr, tc.advice) {
				t.Errorf("want the message to name %s and say %s: %q", tc.at, tc.advice, r.stderr)
			}
			if diffs := treesnap.Diff(before, fingerprint(t, theirs)); len(diffs) > 0 {
				t.Errorf("hpcrun wrote into %s, which uid %d owns:\n%s", theirs, tc.owner, strings.Join(diffs, "\n"))
			}
		})
	}

	// With nothing in the way, the same runs make the default dirs, the
	// victim's and private.
	mustRun(t, opts{uid: victim}, imageRun...)
	mustRun(t, opts{uid: victim}, namedRun...)
	mustRun(t, opts{uid: victim, env: []string{"TMPDIR=/tmp"}}, imageRun...)
	for _, d := range []string{cacheDir, tmpDir, filepath.Join(tmpDir, "run")} {
		fi, err := os.Lstat(d)
		if err != nil {
			t.Errorf("no %s: %v", d, err)
			continue
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; !fi.IsDir() || int(uid) != victim || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v, uid %d; want a dir of uid %d with no group or other bits", d, fi.Mode(), uid, victim)
		}
	}
}
