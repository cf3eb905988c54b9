package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests are about the default cache: which dir every process of a
// user on a node picks, that it is never on a noexec filesystem, and that
// an image a temp cleaner damaged there is unpacked again.

// visibleCopy copies a file where a private mount over /tmp or /var/tmp
// does not hide it (the e2e images live in /var/tmp/hpcrun-e2e, hpcrun in
// /tmp), readable and executable by all.
func visibleCopy(t *testing.T, image string) string {
	t.Helper()
	dst := filepath.Join(tempDirOwnedIn(t, outerDir), filepath.Base(image))
	if out, err := exec.Command("cp", image, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v\n%s", image, err, out)
	}
	os.Chmod(dst, 0o755)
	return dst
}

// inMountNS runs hpcrun args as uid, in a private mount namespace where
// each of noexec is covered by an empty tmpfs mounted noexec, as clusters
// that harden /tmp and /var/tmp do. The env is the controlled one, plus env.
func inMountNS(t *testing.T, uid int, noexec []string, env []string, args ...string) result {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, d := range noexec {
		script.WriteString("mount -t tmpfs -o noexec,nosuid,nodev,mode=1777 tmpfs " + d + "\n")
	}
	script.WriteString(`exec setpriv --reuid "$U" --regid "$U" --clear-groups -- "$@"` + "\n")
	u := strconv.Itoa(uid)
	cmdArgs := append([]string{"-m", "--propagation", "private", "sh", "-c", script.String(), "sh", visibleCopy(t, binPath)}, args...)
	return runRaw(opts{asRoot: true, timeout: 3 * time.Minute, env: append([]string{"U=" + u, "HOME=/nonexistent", "USER=nobody"}, env...)},
		"unshare", cmdArgs...)
}

// needRootForMounts: the tests below mount tmpfs and switch users.
func needRootForMounts(t *testing.T) {
	t.Helper()
	needUserns(t)
	if os.Geteuid() != 0 || !asOther {
		if requireUserns {
			t.Fatal("mounting a noexec tmpfs needs root, and the tests require it")
		}
		t.Skip("mounting a noexec tmpfs needs root")
	}
}

// A node whose /var/tmp is noexec still runs the Python image: the cache
// is the next candidate, /tmp, and -v says why. Where every candidate is
// noexec, one line names them all and the fix, and exit 125.
func TestCacheNoexecCandidate(t *testing.T) {
	t.Parallel()
	needRootForMounts(t)
	image := visibleCopy(t, pythonImage(t))
	uid := freeUID(t)
	t.Cleanup(func() {
		os.RemoveAll("/tmp/hpcrun-" + strconv.Itoa(uid))
		os.RemoveAll("/var/tmp/hpcrun-" + strconv.Itoa(uid))
	})
	r := inMountNS(t, uid, []string{"/var/tmp"}, []string{"TMPDIR=/var/tmp"}, "-v", "--no-home", "--image", image, "python3", "-c", "print('ran', 6*7)")
	if r.err != nil || r.code != 0 || r.stdout != "ran 42\n" {
		t.Fatalf("with /var/tmp noexec: %s", r)
	}
	cache := "/tmp/hpcrun-" + strconv.Itoa(uid)
	for _, want := range []string{"cache: " + cache + " (default: hpcrun-UID in the scratch dir /tmp)",
		"scratch: /tmp (the first usable of /var/tmp, /tmp: node-local", "passed over /var/tmp is mounted noexec",
		"$TMPDIR=/var/tmp not used"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("-v: want %q in:\n%s", want, r.stderr)
		}
	}
	if images, _ := cacheEntries(t, cache); len(images) != 1 {
		t.Errorf("want the image in %s: %v", cache, images)
	}

	// Every candidate noexec: one line, 125, nothing written.
	r = inMountNS(t, uid, []string{"/var/tmp", "/tmp"}, nil, "--image", image, "true")
	assertOneErrorLine(t, r)
	for _, want := range []string{"no node-local dir for the image cache: /var/tmp is mounted noexec, /tmp is mounted noexec",
		"scratch: in the site config", "--cache"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("all noexec: want %q in %q", want, r.stderr)
		}
	}
	// hpcrun check reports it, with the fix.
	r = inMountNS(t, uid, []string{"/var/tmp", "/tmp"}, nil, "check")
	if r.code != 1 || !strings.Contains(r.stdout, "/var/tmp is mounted noexec, /tmp is mounted noexec") || !strings.Contains(r.stdout, "allows exec") {
		t.Errorf("hpcrun check with every candidate noexec: %s", r)
	}
}

// A cache that is given (--cache, HPCRUN_CACHE) on a noexec filesystem is
// refused in one line before anything is unpacked, with exit 125; hpcrun
// check says so too.
func TestCacheGivenNoexec(t *testing.T) {
	t.Parallel()
	needRootForMounts(t)
	image := busyboxImage(t)
	dir := filepath.Join(tempDirOwnedIn(t, outerDir), "noexec")
	os.Mkdir(dir, 0o755)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOEXEC, "size=64m,mode=0755,uid="+strconv.Itoa(testUID)); err != nil {
		t.Fatalf("mount a noexec tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	cache := filepath.Join(dir, "cache")
	for _, tc := range []struct {
		name string
		o    opts
		args []string
	}{
		{"--cache", opts{}, []string{"--cache", cache}},
		{"HPCRUN_CACHE", opts{env: []string{"HPCRUN_CACHE=" + cache}}, nil},
		{"HPCRUN_SCRATCH", opts{env: []string{"HPCRUN_SCRATCH=" + dir}}, nil},
	} {
		r := run(t, tc.o, append(tc.args, "--image", image, "true")...)
		assertOneErrorLine(t, r)
		if !strings.Contains(r.stderr, "mounted noexec") || !strings.Contains(r.stderr, dir) {
			t.Errorf("%s on noexec: want the dir and noexec named: %q", tc.name, r.stderr)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s on noexec: written there: %v", tc.name, ents)
		}
	}
	r := run(t, opts{env: []string{"HPCRUN_CACHE=" + cache}}, "check")
	if r.code != 1 || !strings.Contains(r.stdout, "mounted noexec") {
		t.Errorf("hpcrun check with a noexec HPCRUN_CACHE: %s", r)
	}
}

// An image that a real temp cleaner (systemd-tmpfiles, aging the cache's
// files) took files from is unpacked again at the next run, which says
// why, and the job runs.
func TestCacheTempCleaner(t *testing.T) {
	t.Parallel()
	needRootForMounts(t)
	if _, err := exec.LookPath("systemd-tmpfiles"); err != nil {
		t.Fatal("no systemd-tmpfiles (package systemd): scripts/test-deps.sh installs it")
	}
	image := visibleCopy(t, pythonImage(t))
	uid := freeUID(t)
	cache := "/var/tmp/hpcrun-" + strconv.Itoa(uid) // the default cache
	t.Cleanup(func() { os.RemoveAll(cache) })
	py := []string{"--no-home", "--image", image, "python3", "-c", "import json; print(json.dumps([6*7]))"}
	r := mustRun(t, opts{uid: uid, env: []string{"HOME=/nonexistent"}, timeout: 3 * time.Minute}, py...)
	if r.stdout != "[42]\n" {
		t.Fatalf("cold: %s", r)
	}
	// What a site's tmpfiles.d says of /var/tmp, with an age of a second.
	conf := filepath.Join(tempDirOwned(t), "hpcrun-cache.conf")
	if err := os.WriteFile(conf, []byte("e "+cache+"/images - - - 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // past the age, for real
	if out, err := exec.Command("systemd-tmpfiles", "--clean", conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles --clean: %v\n%s", err, out)
	}
	images, _ := cacheEntries(t, cache)
	if len(images) != 1 {
		t.Fatalf("images after the cleaner: %v", images)
	}
	left := 0
	filepath.Walk(filepath.Join(cache, "images", images[0], "rootfs"), func(string, os.FileInfo, error) error { left++; return nil })
	t.Logf("the cleaner left %d entries of the rootfs", left)

	r = mustRun(t, opts{uid: uid, env: []string{"HOME=/nonexistent"}, timeout: 3 * time.Minute}, py...)
	want := "hpcrun: image sha256:"
	if r.stdout != "[42]\n" || !strings.Contains(r.stderr, want) ||
		!strings.Contains(r.stderr, " in "+cache+" was damaged (a temp cleaner removed files from it): unpacking it again") ||
		!strings.Contains(r.stderr, "unpacked ") {
		t.Fatalf("after the cleaner: %s", r)
	}
	// Warm again, whole.
	r = mustRun(t, opts{uid: uid, env: []string{"HOME=/nonexistent"}}, py...)
	if r.stdout != "[42]\n" || strings.Contains(r.stderr, "unpack") {
		t.Errorf("warm after the repair: %s", r)
	}
}

// uniqueImage is the busybox image with an env var of its own, so that its
// digest is this test's alone even in a default cache that other tests
// share.
func uniqueImage(t *testing.T) string {
	t.Helper()
	out := filepath.Join(tempDirOwned(t), "unique.tar")
	tag := "E2E_UNIQUE=" + strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.Itoa(os.Getpid())
	if b, err := exec.Command(repoPath("examples/mkimage.sh"), rootfsDir, out, "PATH=/bin", tag).CombinedOutput(); err != nil {
		t.Fatalf("mkimage.sh: %v\n%s", err, b)
	}
	os.Chmod(out, 0o644)
	return out
}

// The tasks of one step, with TMPDIR=/tmp on task 0 only as Slurm 22.05
// sets it, and a login-side `hpcrun images` and run without TMPDIR, all use
// the same default cache: the image is unpacked once, and the login side
// finds it there.
func TestSlurmCacheSameForAllTasks(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := uniqueImage(t)
	cache := "/var/tmp/hpcrun-" + strconv.Itoa(testUID) // the default
	t.Cleanup(func() { runRaw(opts{}, binPath, "rmi", image) })
	// As stock Slurm 22.05 does, whatever this cluster's settings.
	task := `if [ "$SLURM_PROCID" = 0 ]; then export TMPDIR=/tmp; else unset TMPDIR; fi; echo "task $SLURM_PROCID TMPDIR=$TMPDIR" >&2; exec "$@"`
	r := runRaw(opts{timeout: 2 * time.Minute}, "srun", "-n", "2", "-t", "2", "sh", "-c", task, "sh",
		binPath, "-v", "--no-join", "--image", image, "sh", "-c", "echo ran $SLURM_PROCID")
	if r.err != nil || r.code != 0 {
		t.Fatalf("srun: %s\n%s", r, slurmLogs())
	}
	for _, want := range []string{"ran 0\n", "ran 1\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q: %s", want, r)
		}
	}
	if !strings.Contains(r.stderr, "task 0 TMPDIR=/tmp") || !strings.Contains(r.stderr, "task 1 TMPDIR=\n") {
		t.Errorf("the tasks' TMPDIR is not as Slurm 22.05 sets it: %s", r)
	}
	if n := strings.Count(r.stderr, "cache: "+cache+" (default"); n != 2 {
		t.Errorf("want both tasks on the cache %s, %d are: %s", cache, n, r.stderr)
	}
	if n := strings.Count(r.stderr, "hpcrun: unpacked "); n != 1 {
		t.Errorf("the image was unpacked %d times, want once: %s", n, r.stderr)
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "cache: ") || strings.Contains(l, "scratch: ") {
			t.Logf("in the job: %s", l)
		}
	}
	// The login side, no TMPDIR: the same cache, the image there.
	listed := mustRun(t, opts{}, "images").stdout
	if !strings.Contains(listed, image) {
		t.Errorf("hpcrun images on the login side does not list %s:\n%s", image, listed)
	}
	r = mustRun(t, opts{}, "-v", "--image", image, "true")
	if strings.Contains(r.stderr, "unpacking") || !strings.Contains(r.stderr, "cache: "+cache+" (default") {
		t.Errorf("the login side did not find the image in %s: %s", cache, r.stderr)
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "cache: ") || strings.Contains(l, "scratch: ") {
			t.Logf("on the login side: %s", l)
		}
	}
}
