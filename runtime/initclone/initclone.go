// Package initclone clones the container's init: the first step of every
// job start, and the one that the rest waits for. For a job's command line
// cmd/hpcrun clones it before the standard library is initialized, with
// package rawclone, and wraps that clone here (Adopt); Start clones from a
// later point (a job at a terminal, create), or where rawclone does not
// clone. Package runtime adopts the clone (runtime.Adopt) and does the
// rest.
package initclone

import (
	"os"
	"os/signal"
	"syscall"
	"time"
	"unsafe"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"github.com/hpcrun/hpcrun/runtime/initclone/rawclone"
)

// The argv[0]s under which hpcrun's binary, re-executed, runs one of its
// own stages instead of a command line (see package runtime).
const (
	InitArg0       = rawclone.InitArg0       // the container's init
	ExecReaperArg0 = rawclone.ExecReaperArg0 // the reaper of a fenced exec
	RlimitArg0     = rawclone.RlimitArg0     // the pre-exec shim
	ProbeArg0      = rawclone.ProbeArg0      // a kernel probe
)

// IsStage reports whether arg0 names one of those stages.
func IsStage(arg0 string) bool { return rawclone.IsStage(arg0) }

// ForwardedSignals are passed on to the job: what batch systems and
// terminals send. Slurm sends CONT then TERM, then KILL after KillWait.
var ForwardedSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT,
}

// InitCaps are the capabilities the init holds inside its user namespace
// (see rawclone.InitCaps).
var InitCaps = rawclone.InitCaps

// Stdio is the job's standard input, output and error.
type Stdio struct {
	In, Out, Err *os.File
}

// Clone is an init just cloned, waiting for its config on Control.
type Clone struct {
	At      time.Time // when the init had exec'd, for -v
	Pid     int
	Err     error    // why the clone failed, as the kernel said it
	Control *os.File // our end of the control pipe: the config, then signals
	Status  *os.File // our end of the status pipe
	// Sigs gets the ForwardedSignals from the clone on; Catching is
	// closed once it does.
	Sigs     chan os.Signal
	Catching chan struct{}
}

// Start clones an init in new user, mount and pid namespaces, with stdio
// as its standard streams, holding caps as ambient capabilities in its
// user namespace; extra become its descriptors 5, 6, .... A detached
// init outlives its caller. The init, and so the job, runs in a session
// of its own: out of the caller's, no process of the container has the
// caller's terminal as its controlling one, so none can push input into
// it (TIOCSTI) or take its foreground. It does not fail: Err says why the
// clone did.
func Start(stdio Stdio, detached bool, caps []uintptr, extra []*os.File) *Clone {
	// Raw pipes: the init gets the read end of the control pipe (its
	// config, then signals for the job) as fd 3 and the write end of the
	// status pipe as fd 4; ours stay close-on-exec.
	var cfgPipe, statPipe [2]int
	if err := syscall.Pipe2(cfgPipe[:], syscall.O_CLOEXEC); err != nil {
		return Adopt(0, os.NewSyscallError("pipe", err), -1, -1, time.Now())
	}
	if err := syscall.Pipe2(statPipe[:], syscall.O_CLOEXEC); err != nil {
		syscall.Close(cfgPipe[0])
		syscall.Close(cfgPipe[1])
		return Adopt(0, os.NewSyscallError("pipe", err), -1, -1, time.Now())
	}
	files := []int{int(stdio.In.Fd()), int(stdio.Out.Fd()), int(stdio.Err.Fd()), cfgPipe[0], statPipe[1]}
	for _, f := range extra {
		files = append(files, int(f.Fd()))
	}
	pid, err := spawn(rawclone.InitAttr(files, fallback.Environ(), caps, detached))
	syscall.Close(cfgPipe[0])
	syscall.Close(statPipe[1])
	return Adopt(pid, err, cfgPipe[1], statPipe[0], time.Now())
}

// Adopt makes a Clone of an init cloned at, with our ends of its pipes,
// or of the clone's failure (err, pipes -1). Signals are caught from here
// on.
func Adopt(pid int, err error, control, status int, at time.Time) *Clone {
	c := &Clone{At: at, Pid: pid, Sigs: make(chan os.Signal, 16), Catching: make(chan struct{})}
	if control >= 0 {
		c.Control = os.NewFile(uintptr(control), "control")
		c.Status = os.NewFile(uintptr(status), "status")
	}
	if err != nil {
		c.Pid, c.Err = 0, err
		if c.Control != nil {
			c.Control.Close()
			c.Status.Close()
			c.Control, c.Status = nil, nil
		}
	}
	// Catching signals costs a thread and a third of a millisecond in the
	// Go runtime, so it is set up beside the rest of the start.
	go func() {
		signal.Notify(c.Sigs, ForwardedSignals...)
		close(c.Catching)
	}()
	return c
}

// spawn starts a: with rawclone where it can, else with syscall.ForkExec.
func spawn(a *rawclone.Attr) (int, error) {
	if !rawclone.Supported {
		files := make([]uintptr, len(a.Files))
		for i, f := range a.Files {
			files[i] = uintptr(f)
		}
		return syscall.ForkExec(a.Path, a.Argv, &syscall.ProcAttr{Env: a.Env, Files: files,
			Sys: &syscall.SysProcAttr{Cloneflags: a.Flags, AmbientCaps: a.Caps, Pdeathsig: syscall.Signal(a.Pdeathsig), Setsid: true}})
	}
	// As syscall.ForkExec: no descriptor is half made while the child
	// copies the table.
	syscall.ForkLock.Lock()
	pid, errno := rawclone.Spawn(a)
	syscall.ForkLock.Unlock()
	if errno != 0 {
		return 0, syscall.Errno(errno)
	}
	return pid, nil
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
