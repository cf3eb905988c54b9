package runtime

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// Every state file is read without following a symlink, without blocking
// and with a cap: a FIFO, /dev/zero behind a symlink, a huge file and a
// directory each give ErrBadStateFile at once.
func TestReadStateAt(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/dev/zero", filepath.Join(dir, "zero"))
	os.Symlink("small", filepath.Join(dir, "link"))
	os.WriteFile(filepath.Join(dir, "small"), []byte("42\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "huge"), make([]byte, maxStateFile+1), 0o600)
	os.Mkdir(filepath.Join(dir, "sub"), 0o700)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, tc := range []struct {
		name string
		want error // nil: reads "42\n"
	}{
		{"small", nil},
		{"missing", fs.ErrNotExist},
		{"fifo", ErrBadStateFile},
		{"zero", ErrBadStateFile},
		{"link", ErrBadStateFile},
		{"huge", ErrBadStateFile},
		{"sub", ErrBadStateFile},
	} {
		done := make(chan struct{})
		var b []byte
		var err error
		go func() { b, err = readStateAt(fd, tc.name, maxStateFile); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: the read hangs", tc.name)
		}
		switch {
		case tc.want == nil && (err != nil || string(b) != "42\n"):
			t.Errorf("%s: %q, %v; want 42", tc.name, b, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %q, %v; want %v", tc.name, b, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error of more than one line: %q", tc.name, err)
		}
	}
}

func TestParsePaused(t *testing.T) {
	const mnt = "/sys/fs/cgroup"
	for _, tc := range []struct {
		text, want string
		ok         bool
	}{
		{"", "", true},
		{"/sys/fs/cgroup/user.slice/job/hpcrun-c1", "/sys/fs/cgroup/user.slice/job/hpcrun-c1", true},
		{"/sys/fs/cgroup/hpcrun-c1", "/sys/fs/cgroup/hpcrun-c1", true},
		{"/sys/fs/cgroup/user.slice/job/hpcrun-c2", "", false}, // another container's
		{"/tmp/victim", "", false},
		{"/tmp/hpcrun-c1", "", false},
		{"/sys/fs/cgroup/../../tmp/hpcrun-c1", "", false},
		{"/sys/fs/cgroupx/hpcrun-c1", "", false},
		{"sys/fs/cgroup/hpcrun-c1", "", false},
		{"/sys/fs/cgroup/a//hpcrun-c1", "", false},
		{"/sys/fs/cgroup/hpcrun-c1\n", "", false},
		{"/sys/fs/cgroup", "", false},
		{"/", "", false},
	} {
		got, err := parsePaused([]byte(tc.text), mnt, "c1")
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parsePaused(%q) = %q, %v; want %q, ok %v", tc.text, got, err, tc.want, tc.ok)
		}
	}
	if _, err := parsePaused([]byte("/sys/fs/cgroup/hpcrun-c1"), "", "c1"); err == nil {
		t.Error("a cgroup was taken with no cgroup v2 mount")
	}
}

// A state root that is missing when it is opened holds no containers,
// even if one appears at its path afterwards: the verbs find nothing and
// do nothing, and never look at the path again.
func TestMissingRootIsNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	c, err := OpenContainers(root, false)
	if err != nil {
		t.Fatal(err)
	}
	// Flipped into place after the check, with a container that names
	// this process.
	writeContainer(t, root, "c1", State{Pid: os.Getpid(), Ready: true})
	if _, err := c.Load("c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load: %v, want ErrNotFound", err)
	}
	if err := c.Kill("c1", unix.SIGKILL, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("Kill: %v, want ErrNotFound", err)
	}
	if err := c.Delete("c1", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete: %v, want ErrNotFound", err)
	}
	if l, err := c.List(); err != nil || len(l) != 0 {
		t.Errorf("List: %v, %v; want none", l, err)
	}
	if _, err := os.Stat(filepath.Join(root, "c1", "state.json")); err != nil {
		t.Errorf("the state that appeared was touched: %v", err)
	}
}

// The root is what the check opened: a rename of another directory into
// its place later is not followed.
func TestRootIsTheOpenedDirectory(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "state")
	os.Mkdir(root, 0o700)
	c, err := OpenContainers(root, false)
	if err != nil {
		t.Fatal(err)
	}
	os.Rename(root, filepath.Join(base, "moved"))
	writeContainer(t, root, "c1", State{})
	if _, err := c.Load("c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load found the state of the directory renamed into place: %v", err)
	}
	if err := os.Symlink(filepath.Join(base, "moved"), filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenContainers(filepath.Join(base, "link"), false); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a symlink as the root: %v", err)
	}
}

// A paused file that is not a small regular file, or names anything but
// the container's own cgroup, fails delete with one line and leaves all
// as it was; nothing it names is removed.
func TestDeleteBadPaused(t *testing.T) {
	victim := t.TempDir()
	for name, plant := range map[string]func(path string) error{
		"fifo": func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"zero": func(p string) error { return os.Symlink("/dev/zero", p) },
		"huge": func(p string) error { return os.WriteFile(p, make([]byte, 1<<20), 0o600) },
		"dir":  func(p string) error { return os.WriteFile(p, []byte(victim), 0o600) },
		"cgroup of another": func(p string) error {
			return os.WriteFile(p, []byte("/sys/fs/cgroup/hpcrun-other"), 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := openTestContainers(t)
			writeContainer(t, c.Root, "c1", State{Created: time.Now().Add(-time.Hour)})
			if err := plant(filepath.Join(c.Root, "c1", pausedFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Delete("c1", true) }()
			select {
			case err := <-done:
				if err == nil || strings.Contains(err.Error(), "\n") {
					t.Errorf("Delete: %v; want one line", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Delete hangs")
			}
			if _, err := os.Stat(filepath.Join(c.Root, "c1", "state.json")); err != nil {
				t.Errorf("the state went: %v", err)
			}
			if _, err := os.Stat(victim); err != nil {
				t.Errorf("the directory named in paused went: %v", err)
			}
		})
	}
}

// A state.json that names a live process which is no container's init
// (pid 1, this test) reports the container stopped, without its pid, and
// delete --force signals nothing.
func TestForeignPidIsNotTheInit(t *testing.T) {
	c := openTestContainers(t)
	for id, pid := range map[string]int{"one": 1, "self": os.Getpid()} {
		start, err := procs.StartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		writeContainer(t, c.Root, id, State{Pid: pid, Start: start, Ready: true, Created: time.Now()})
		os.WriteFile(filepath.Join(c.Root, id, startedFile), []byte("1"), 0o600)
		s, err := c.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != StatusStopped || s.OCI().Pid != 0 {
			t.Errorf("%s: status %s, pid %d; want stopped, no pid", id, s.Status, s.OCI().Pid)
		}
		if id == "one" {
			continue // pid 1 is not put to the test
		}
		if err := c.Delete(id, true); err != nil {
			t.Errorf("%s: delete: %v", id, err)
		}
	}
}

// A control socket that takes the connection and never answers fails the
// call within callTimeout.
func TestCallDeadline(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, ctlSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, silent
		}
	}()
	begin := time.Now()
	err = Signal(dir, unix.SIGTERM, false)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("Signal: %v; want no answer", err)
	}
	if d := time.Since(begin); d > callTimeout+5*time.Second {
		t.Errorf("Signal took %v", d)
	}
}

// writeContainer writes container id's state.json under root.
func writeContainer(t *testing.T, root, id string, s State) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, id), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(root, id, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"id":"c1","pid":1234,"start":5678,"bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-02T03:04:05Z","owner":"1000","ready":true}`))
	f.Add([]byte(`{"pid":-1}`))
	f.Add([]byte(`{"annotations":{"a":"b"},"members":3,"image":"sha256:00"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseState(b)
		if err != nil {
			return
		}
		if s.Pid < 0 || s.Members < 0 {
			t.Fatalf("accepted pid %d, members %d", s.Pid, s.Members)
		}
		s.OCI()
	})
}

func FuzzParsePaused(f *testing.F) {
	f.Add([]byte(""), "c1")
	f.Add([]byte("/sys/fs/cgroup/user.slice/hpcrun-c1"), "c1")
	f.Add([]byte("/sys/fs/cgroup/../../tmp/hpcrun-c1"), "c1")
	f.Add([]byte("/tmp/x"), "x")
	f.Fuzz(func(t *testing.T, b []byte, id string) {
		const mnt = "/sys/fs/cgroup"
		p, err := parsePaused(b, mnt, id)
		if err != nil || p == "" {
			return
		}
		if !strings.HasPrefix(p, mnt+"/") || filepath.Clean(p) != p || filepath.Base(p) != pauseCgroupName(id) {
			t.Fatalf("parsePaused(%q, %q) = %q", b, id, p)
		}
	})
}

func FuzzParseExit(f *testing.F) {
	for _, s := range []string{"0", "137\n", "-1", "x", "99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := parseExit(b); n < -1 || n > 255+128 {
			t.Fatalf("parseExit(%q) = %d", b, n)
		}
	})
}
