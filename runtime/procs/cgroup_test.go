package procs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testCgroup makes a cgroup v2, delegated to us, and returns it open, for a container to start in. It needs
// root to make a cgroup, and so skips without it.
func testCgroup(t *testing.T) (dir string, fd int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup needs root")
	}
	mnt, err := Cgroup2Mount()
	if err != nil {
		t.Fatalf("no cgroup v2 hierarchy: %v", err)
	}
	dir = filepath.Join(mnt, "hpcrun-procs-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// As systemd marks a cgroup that it delegates (we are root, who owns
	// them all).
	if err := unix.Setxattr(dir, "trusted.delegate", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := RemoveCgroup(dir); err != nil {
			t.Errorf("the test cgroup: %v", err)
		}
	})
	return dir, int(f.Fd())
}

func startContainerIn(t *testing.T, cgroupFD int, script string) *container {
	t.Helper()
	orig := nsAttr
	nsAttr = func() *syscall.SysProcAttr {
		a := orig()
		a.UseCgroupFD, a.CgroupFD = true, cgroupFD
		return a
	}
	defer func() { nsAttr = orig }()
	return startContainer(t, script)
}

// The cgroup freezer: a container in a cgroup we own is frozen in a child
// cgroup, init excepted; its loops stop using CPU, a forking loop's new
// children are caught; thawed, all run again, back in the parent cgroup,
// and the child cgroup is gone.
func TestFreezeCgroup(t *testing.T) {
	parent, fd := testCgroup(t)
	c := startContainerIn(t, fd, `
		"$B/sh" -c 'while :; do :; done' &
		"$B/sh" -c 'while :; do "$B/true" & "$B/true" & wait; done' &
		wait`)
	c.waitFor("the loops", func(procs []Proc) bool { return len(procs) >= 3 })
	for round := range 5 {
		child, err := FreezeCgroup(c.init, "hpcrun-test")
		if err != nil {
			t.Fatalf("FreezeCgroup: %v", err)
		}
		if child != filepath.Join(parent, "hpcrun-test") {
			t.Fatalf("froze %s, want a child of %s", child, parent)
		}
		if b, _ := os.ReadFile(filepath.Join(child, "cgroup.events")); !strings.Contains(string(b), "frozen 1") {
			t.Errorf("cgroup.events: %q", b)
		}
		frozen := c.list()
		time.Sleep(100 * time.Millisecond)
		later := c.list()
		if !slices.EqualFunc(frozen, later, sameState) {
			t.Fatalf("round %d: processes changed while frozen:\n%+v\n%+v", round, frozen, later)
		}
		inChild, _ := cgroupProcs(child)
		for _, p := range later {
			if in := slices.Contains(inChild, p.Pid); in == (p.Pid == c.init) && p.State != 'Z' {
				t.Errorf("process %d (%s): in the frozen cgroup %v; the init must not be, the others must", p.Pid, p.Comm, in)
			}
		}
		if err := ThawCgroup(c.init, child); err != nil {
			t.Fatalf("ThawCgroup: %v", err)
		}
		if _, err := os.Stat(child); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the child cgroup is still there: %v", err)
		}
		cpu := sum(later)
		c.waitFor("the loops running again", func(procs []Proc) bool { return sum(procs) > cpu })
	}

	// A frozen container still dies of SIGKILL (c.kill checks that none
	// of its processes is left), and its cgroup can then go.
	child, err := FreezeCgroup(c.init, "hpcrun-test")
	if err != nil {
		t.Fatal(err)
	}
	c.kill()
	if err := RemoveCgroup(child); err != nil {
		t.Error(err)
	}
}

// In a cgroup of root's that systemd did not mark delegated there is
// none to use, and nothing is changed.
func TestFreezeCgroupNotDelegated(t *testing.T) {
	dir, fd := testCgroup(t)
	if err := unix.Removexattr(dir, "trusted.delegate"); err != nil {
		t.Fatal(err)
	}
	c := startContainerIn(t, fd, `"$B/sleep" 100`)
	if _, err := FreezeCgroup(c.init, "hpcrun-test"); !errors.Is(err, ErrNoDelegatedCgroup) {
		t.Errorf("FreezeCgroup in root's unmarked cgroup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hpcrun-test")); err == nil {
		t.Error("a child cgroup was made")
	}
	c.kill()
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`: "/a/b", `/my\040dir`: "/my dir", `/t\011ab\012nl`: "/t\tab\nnl", `/back\134slash`: `/back\slash`,
		`/end\04`: `/end\04`, `/x\09y`: `/x\09y`, `/sys/fs/cgroup`: "/sys/fs/cgroup",
	} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// RemoveCgroup removes nothing but an empty cgroup v2 directory of the
// caller's: a plain directory, named by a path the user wrote, stays.
func TestRemoveCgroupOnlyCgroups(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "hpcrun-c1")
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := RemoveCgroup(victim); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("RemoveCgroup(%s): %v; want one line", victim, err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the directory went: %v", err)
	}
	if err := RemoveCgroup(filepath.Join(t.TempDir(), "missing", "hpcrun-c1")); err != nil {
		t.Errorf("a cgroup that is gone: %v", err)
	}
}
