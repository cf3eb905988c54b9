// Package initclone clones the container's init: the first step of every
// job start, and the one that the rest waits for. It imports little, so
// that the package initialization that comes before it in a process is
// short: cmd/hpcrun clones the init from an early package init function,
// and the more packages must initialize first, the later the init starts.
// Package runtime adopts the clone (runtime.Adopt) and does the rest.
package initclone

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"golang.org/x/sys/unix"
)

// The argv[0]s under which hpcrun's binary, re-executed, runs one of its
// own stages instead of a command line (see package runtime).
const (
	InitArg0       = "hpcrun-init"   // the container's init
	ExecReaperArg0 = "hpcrun-exec"   // the reaper of a fenced exec
	RlimitArg0     = "hpcrun-rlimit" // the pre-exec shim
	ProbeArg0      = "hpcrun-probe"  // a kernel probe
)

// IsStage reports whether arg0 names one of those stages.
func IsStage(arg0 string) bool {
	switch arg0 {
	case InitArg0, ExecReaperArg0, RlimitArg0, ProbeArg0:
		return true
	}
	return false
}

// ForwardedSignals are passed on to the job: what batch systems and
// terminals send. Slurm sends CONT then TERM, then KILL after KillWait.
var ForwardedSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT,
}

// InitCaps are the capabilities the init holds inside its user namespace,
// as ambient capabilities: without them the re-executed init runs as the
// caller's uid and execve drops every capability, so the first mount fails
// with EPERM. They act only on the caller's own files. The init drops
// them all before a job that keeps the caller's uid; a --fakeroot job keeps
// its spec's set, which must be among these: with no_new_privs, execve
// grants a root job no capability its parent did not have.
var InitCaps = []uintptr{
	unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP, unix.CAP_NET_ADMIN, unix.CAP_DAC_OVERRIDE,
	unix.CAP_FOWNER, unix.CAP_SETUID, unix.CAP_SETGID,
	// The rest of package runtime's fakerootCaps.
	unix.CAP_CHOWN, unix.CAP_FSETID, unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETFCAP,
	unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

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
// of its own. It does not fail: Err says why the clone did.
func Start(stdio Stdio, detached bool, caps []uintptr, extra []*os.File) *Clone {
	c := &Clone{Sigs: make(chan os.Signal, 16), Catching: make(chan struct{})}
	// Catching signals costs a thread and a third of a millisecond in the
	// Go runtime, so it is set up beside the clone.
	go func() {
		signal.Notify(c.Sigs, ForwardedSignals...)
		close(c.Catching)
	}()
	// Raw pipes: the init gets the read end of the control pipe (its
	// config, then signals for the job) as fd 3 and the write end of the
	// status pipe as fd 4; ours stay close-on-exec.
	var cfgPipe, statPipe [2]int
	if err := unix.Pipe2(cfgPipe[:], unix.O_CLOEXEC); err != nil {
		c.Err = os.NewSyscallError("pipe", err)
		return c
	}
	if err := unix.Pipe2(statPipe[:], unix.O_CLOEXEC); err != nil {
		unix.Close(cfgPipe[0])
		unix.Close(cfgPipe[1])
		c.Err = os.NewSyscallError("pipe", err)
		return c
	}
	c.Control = os.NewFile(uintptr(cfgPipe[1]), "control")
	c.Status = os.NewFile(uintptr(statPipe[0]), "status")
	// syscall.ForkExec rather than os/exec: nothing that exec.Cmd adds is
	// needed, and os.StartProcess probes pidfd support with an extra fork.
	files := []uintptr{stdio.In.Fd(), stdio.Out.Fd(), stdio.Err.Fd(), uintptr(cfgPipe[0]), uintptr(statPipe[1])}
	for _, f := range extra {
		files = append(files, f.Fd())
	}
	c.Pid, c.Err = syscall.ForkExec("/proc/self/exe", []string{InitArg0}, &syscall.ProcAttr{
		// The init's work is sequential: one P spares the Go runtime its
		// cgroup probing and idle threads at start.
		Env:   append([]string{"GOMAXPROCS=1"}, fallback.Environ()...),
		Files: files,
		Sys: &syscall.SysProcAttr{
			// The id maps are written once the job's are known; until
			// then the init waits for its config. Further namespaces
			// (network, uts, ipc) the init unshares itself.
			Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID,
			AmbientCaps: caps,
			// If hpcrun dies, so does the init, and with it the pid
			// namespace; unless it is detached.
			Pdeathsig: pdeathsig(detached),
			// Out of the caller's session: no process of the container
			// has the caller's terminal as its controlling one, so none
			// can push input into it (TIOCSTI) or take its foreground.
			Setsid: true,
		},
	})
	c.At = time.Now()
	unix.Close(cfgPipe[0])
	unix.Close(statPipe[1])
	return c
}

func pdeathsig(detached bool) syscall.Signal {
	if detached {
		return 0
	}
	return syscall.SIGKILL
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
