package procs

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"golang.org/x/sys/unix"
)

// A Handle, through a pidfd and through the /proc directory that kernels
// without pidfds get, pins the process its pid and start time name: a
// wrong start time is refused, a signal ends it, Wait sees the end, and a
// Handle of an ended process sends nothing.
func TestHandle(t *testing.T) {
	for _, pidfd := range []bool{true, false} {
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		start, err := StartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open(pid, start+1, pidfd); !errors.Is(err, ErrGone) {
			t.Errorf("pidfd %v: a wrong start time: %v, want ErrGone", pidfd, err)
		}
		h, err := open(pid, start, pidfd)
		if err != nil {
			if pidfd && errors.Is(err, unix.ENOSYS) {
				continue
			}
			t.Fatalf("pidfd %v: %v", pidfd, err)
		}
		if h.Wait(50 * time.Millisecond) {
			t.Errorf("pidfd %v: Wait says a running process ended", pidfd)
		}
		if err := h.Signal(unix.SIGKILL); err != nil {
			t.Errorf("pidfd %v: Signal: %v", pidfd, err)
		}
		// Not reaped yet: a zombie has ended too.
		if !h.Wait(5 * time.Second) {
			t.Errorf("pidfd %v: Wait did not see the process end", pidfd)
		}
		cmd.Wait()
		if err := h.Signal(unix.SIGKILL); err != nil {
			t.Errorf("pidfd %v: Signal to a reaped process: %v", pidfd, err)
		}
		if !h.Wait(0) {
			t.Errorf("pidfd %v: Wait(0) of a reaped process", pidfd)
		}
		h.Close()
		if _, err := open(pid, start, pidfd); !errors.Is(err, ErrGone) {
			t.Errorf("pidfd %v: a reaped process: %v, want ErrGone", pidfd, err)
		}
	}
}

// FromFD tells a pidfd from a /proc directory, as the init gets its anchor.
func TestFromFD(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	start, _ := StartTime(cmd.Process.Pid)
	for _, pidfd := range []bool{true, false} {
		h, err := open(cmd.Process.Pid, start, pidfd)
		if err != nil {
			t.Fatal(err)
		}
		if g := FromFD(h.fd); g.pidfd != pidfd {
			t.Errorf("FromFD of a handle with pidfd %v: pidfd %v", pidfd, g.pidfd)
		}
		h.Close()
	}
	cmd.Process.Kill()
}

// OpenInit takes only a container's init of the caller's: pid 1 of a pid
// namespace below /proc's, with the start time given. Pid 1 of the host,
// this process and a process inside the container are refused, whatever
// their start times.
func TestOpenInit(t *testing.T) {
	c := startContainer(t, `"$B/sleep" 100 & echo sleep $!; wait`)
	c.readPids(1)
	sleep := c.waitFor("the sleep", func(procs []Proc) bool { return len(procs) == 2 })[1]
	for _, pid := range []int{1, os.Getpid(), sleep.Pid} {
		start, err := StartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		if h, err := OpenInit(pid, start); !errors.Is(err, ErrGone) {
			h.Close()
			t.Errorf("OpenInit(%d): %v, want ErrGone", pid, err)
		}
		if InitAlive(pid, start) {
			t.Errorf("InitAlive(%d)", pid)
		}
	}
	start, err := StartTime(c.init)
	if err != nil {
		t.Fatal(err)
	}
	h, err := OpenInit(c.init, start)
	if err != nil {
		t.Fatalf("the container's init: %v", err)
	}
	h.Close()
	if _, err := OpenInit(c.init, start+1); !errors.Is(err, ErrGone) {
		t.Errorf("the init under another start time: %v", err)
	}
}

// Parent pins the parent as a pidfd, or without pidfds as its
// /proc/PID/stat file, never as a directory: a container's init holds it
// while the job runs, and a host directory's descriptor there would be a
// way out of the root. The fallback's half runs in a child test process
// with the fallback forced.
func TestParentIsNoDirectory(t *testing.T) {
	f, err := Parent()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	mode := st.Mode & unix.S_IFMT
	if mode == unix.S_IFDIR {
		t.Fatalf("Parent is a directory (forced fallback: %v)", fallback.Forced(fallback.Pidfd))
	}
	if fallback.Forced(fallback.Pidfd) && mode != unix.S_IFREG {
		t.Fatalf("Parent without pidfds: mode %o, want a regular file", mode)
	}
	// It names the parent, which is alive, and reads back in another
	// Handle as a process that has not ended.
	dup, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	h := FromFD(dup)
	defer h.Close()
	if h.Wait(0) {
		t.Fatal("FromFD(Parent): the parent reads as ended")
	}
	if h.statFile && h.pid != os.Getppid() {
		t.Fatalf("FromFD(Parent) names pid %d, want %d", h.pid, os.Getppid())
	}
	if fallback.Forced(fallback.Pidfd) {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.v", "-test.run=^TestParentIsNoDirectory$")
	cmd.Env = append(os.Environ(), fallback.Env+"="+string(fallback.Pidfd))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestParentIsNoDirectory") {
		t.Fatalf("with %s=%s: %v\n%s", fallback.Env, fallback.Pidfd, err, out)
	}
}
