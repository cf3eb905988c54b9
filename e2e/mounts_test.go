package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A mount point missing from a host directory that is bound in ($HOME,
// /tmp) or from /proc is an error: staging it would freeze that directory
// into a read-only snapshot. The host directory stays as it was.
func TestBindIntoHostDirectory(t *testing.T) {
	t.Parallel()
	needUserns(t)
	data := tempDirOwnedIn(t, outerDir)
	home := tempDirOwned(t)
	for _, dest := range []string{home + "/newdir", "/tmp/e2e-hpcrun-nonexistent/x", "/proc/x", "/dev/e2e-x"} {
		r := run(t, opts{env: []string{"HOME=" + home}}, "--rootfs", rootfsDir, "--bind", data+":"+dest,
			"sh", "-c", `touch "$HOME/newfile" && echo wrote`)
		if r.code != 125 || !strings.Contains(r.stderr, "does not exist in") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("--bind to %s: want exit 125 and one line naming the host directory, got %s", dest, r)
		}
	}
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("the host $HOME changed: %v", ents)
	}
	// An existing destination in $HOME is fine, and $HOME stays writable.
	if err := os.Mkdir(filepath.Join(home, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(home, "mnt"), testUID, testGID)
	r := mustRun(t, opts{env: []string{"HOME=" + home}}, "--rootfs", rootfsDir, "--bind", data+":"+home+"/mnt",
		"sh", "-c", `touch "$HOME/newfile" && ls "$HOME/mnt" >/dev/null && echo wrote`)
	if !strings.Contains(r.stdout, "wrote") {
		t.Errorf("$HOME is not writable beside a bind in it: %s", r)
	}
}

// A host directory bound over a mount point that hpcrun staged (a $HOME
// the image lacks, a --bind to a new /data) is the host's: a mount point
// missing in it is an error as in TestBindIntoHostDirectory, and nothing
// is made in it. The image's own tree still gets its mount points staged.
func TestBindIntoStagedHostDirectory(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := busyboxImage(t)
	home, data, a, b := tempDirOwnedIn(t, outerDir), tempDirOwnedIn(t, outerDir), tempDirOwnedIn(t, outerDir), tempDirOwnedIn(t, outerDir)
	env := opts{env: []string{"HOME=" + home}}
	mustRun(t, opts{}, "--image", img, "true") // unpacked: its lines are not the error's
	for _, binds := range [][]string{
		{data + ":" + home + "/newdir"},
		{a + ":/data", b + ":/data/sub"},
		{a + ":/data", b + ":/data/sub/deeper"},
	} {
		args := []string{"--image", img}
		for _, bind := range binds {
			args = append(args, "--bind", bind)
		}
		r := run(t, env, append(args, "true")...)
		if r.code != 125 || !strings.Contains(r.stderr, "does not exist in") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("--bind %v: want exit 125 and one line naming the host directory, got %s", binds, r)
		}
	}
	for _, dir := range []string{home, a} {
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("hpcrun made %v in the host directory %s", ents, dir)
		}
	}
	// Once the mount point exists on the host, the same binds work.
	if err := os.Mkdir(filepath.Join(a, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "from-b"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, env, "--image", img, "--bind", a+":/data", "--bind", b+":/data/sub", "--bind", data+":/opt/new/x", "ls", "/data/sub")
	if strings.TrimSpace(r.stdout) != "from-b" {
		t.Errorf("want /data/sub to show the second bind: %s", r)
	}
	// A bind over a directory of the image that was staged for an
	// earlier one keeps its own flags: the staging is made read-only,
	// not what covers it.
	r = run(t, env, "--image", img, "--bind", data+":/usr/local/new", "--bind", b+":/usr/local", "touch", "/usr/local/written")
	if _, err := os.Stat(filepath.Join(b, "written")); r.code != 0 || err != nil {
		t.Errorf("a writable bind over a staged directory is not writable: %s", r)
	}
}

// A working directory reached through a symlink ($PWD is the logical path,
// as shells keep it) works: its physical directory is bound.
func TestWorkingDirThroughSymlink(t *testing.T) {
	t.Parallel()
	needUserns(t)
	real := tempDirOwnedIn(t, outerDir)
	if err := os.WriteFile(filepath.Join(real, "from-host"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tempDirOwned(t), "scratch")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, opts{dir: link, env: []string{"PWD=" + link}}, "--rootfs", rootfsDir, "sh", "-c", `pwd; ls`)
	if got := lines(r.stdout); strings.Join(got, ",") != link+",from-host" {
		t.Errorf("want the job in %s (= %s) seeing from-host, got %q\n%s", link, real, got, r)
	}
}

// The caller's --bind wins over what hpcrun generates or binds itself.
func TestUserBindsWin(t *testing.T) {
	t.Parallel()
	needUserns(t)
	dir := tempDirOwned(t)
	for name, content := range map[string]string{"hosts": "10.9.8.7 mine\n", "passwd": "me:x:4242:4242::/:/bin/sh\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := mustRun(t, opts{}, "--rootfs", rootfsDir, "--bind", dir+"/hosts:/etc/hosts", "--bind", dir+"/passwd:/etc/passwd",
		"sh", "-c", `cat /etc/hosts /etc/passwd`)
	if r.stdout != "10.9.8.7 mine\nme:x:4242:4242::/:/bin/sh\n" {
		t.Errorf("the caller's binds of /etc/hosts and /etc/passwd lost: %s", r)
	}
}

// A $HOME that is not an absolute path is not bound anywhere.
func TestRelativeHome(t *testing.T) {
	t.Parallel()
	needUserns(t)
	r := mustRun(t, opts{env: []string{"HOME=rel"}}, "--rootfs", rootfsDir, "sh", "-c", `ls -d /rel 2>/dev/null || echo none`)
	if strings.TrimSpace(r.stdout) != "none" || !strings.Contains(r.stderr, "not an absolute path") {
		t.Errorf("want no /rel and a warning: %s", r)
	}
}
