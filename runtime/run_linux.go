package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// InitArg0 is argv[0] of the re-executed init stage. main hands control to
// Init as soon as it sees it, before parsing any flag.
const InitArg0 = "hpcrun-init"

// Config is everything the init stage needs. It crosses the re-exec as one
// JSON document on fd 3.
type Config struct {
	Spec *specs.Spec `json:"spec"`
	// Files are generated files bound read-only over paths in the
	// container (/etc/passwd, /etc/group). They live in the init's private
	// tmpfs and vanish with its mount namespace; the rootfs is not touched.
	Files []File `json:"files,omitempty"`
	// WritableTmpfs puts an overlay with a tmpfs upper layer over the
	// read-only rootfs; writes are discarded when the job ends.
	WritableTmpfs bool `json:"writableTmpfs,omitempty"`
	// Foreground makes the job's process group the terminal's foreground
	// group, so Ctrl-C at a terminal reaches the job once, and only the job.
	Foreground bool `json:"foreground,omitempty"`
	// Verbose makes the init log each phase to stderr, timed from Start.
	Verbose bool      `json:"verbose,omitempty"`
	Start   time.Time `json:"start"`
}

// File is a generated file placed into the container.
type File struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"`
}

// Stdio is the job's standard input, output and error.
type Stdio struct {
	In, Out, Err *os.File
}

// ForwardedSignals are passed on to the job: what batch systems and
// terminals send. Slurm sends CONT then TERM, then KILL after KillWait.
var ForwardedSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT,
}

// initCaps are the capabilities the init holds inside its user namespace
// while it builds the container, as ambient capabilities: without them the
// re-executed init runs as the caller's uid and execve drops every
// capability, so the first mount fails with EPERM. They only act on the
// caller's own files, and the init drops them all before the job starts.
var initCaps = []uintptr{
	unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP, unix.CAP_NET_ADMIN, unix.CAP_DAC_OVERRIDE,
	unix.CAP_FOWNER, unix.CAP_SETUID, unix.CAP_SETGID,
}

// message is the one line the init sends back on fd 4: the job's exit
// status, or why the container could not start.
type message struct {
	Status *int   `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	Code   int    `json:"code,omitempty"`
	Errno  int    `json:"errno,omitempty"`
}

// Run executes cfg.Spec and returns the job's exit status (128+N when a
// signal N killed it). It returns as soon as the init reports that status;
// the kernel finishes tearing down the namespaces on its own. Signals that
// hpcrun receives meanwhile are forwarded to the job.
func Run(ctx context.Context, cfg *Config, stdio Stdio) (int, error) {
	attr, err := sysProcAttr(cfg.Spec)
	if err != nil {
		return StatusFailed, err
	}
	payload, err := json.Marshal(cfg)
	if err != nil {
		return StatusFailed, fmt.Errorf("encode container config: %w", err)
	}
	// Raw pipes: the init gets the read end of one as fd 3 and the write
	// end of the other as fd 4; ours stay close-on-exec.
	var cfgPipe, statPipe [2]int
	if err := unix.Pipe2(cfgPipe[:], unix.O_CLOEXEC); err != nil {
		return StatusFailed, fmt.Errorf("pipe: %w", err)
	}
	defer unix.Close(cfgPipe[1])
	if err := unix.Pipe2(statPipe[:], unix.O_CLOEXEC); err != nil {
		unix.Close(cfgPipe[0])
		return StatusFailed, fmt.Errorf("pipe: %w", err)
	}
	status := os.NewFile(uintptr(statPipe[0]), "status")
	defer status.Close()

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, ForwardedSignals...)
	defer signal.Stop(sigs)

	// syscall.ForkExec rather than os/exec: the job needs nothing that
	// exec.Cmd adds, and os.StartProcess probes pidfd support with an extra
	// fork on its first use.
	pid, err := syscall.ForkExec("/proc/self/exe", []string{InitArg0}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{stdio.In.Fd(), stdio.Out.Fd(), stdio.Err.Fd(), uintptr(cfgPipe[0]), uintptr(statPipe[1])},
		Sys:   attr,
	})
	unix.Close(cfgPipe[0])
	unix.Close(statPipe[1])
	if err != nil {
		if isUserNSRefusal(err) {
			return StatusFailed, diagnoseUserNS(err, readSysctl)
		}
		return StatusFailed, fmt.Errorf("start container init: %w", err)
	}
	// A write error means the init is dead already; its status line, or
	// its wait status, says why.
	writeAll(cfgPipe[1], payload)
	unix.Close(cfgPipe[1])

	done := make(chan message, 1)
	go func() { done <- readMessage(status) }()
	for {
		select {
		case sig := <-sigs:
			unix.Kill(pid, sig.(syscall.Signal))
		case <-ctx.Done():
			unix.Kill(pid, unix.SIGKILL)
			<-done
			wait(pid)
			return StatusFailed, ctx.Err()
		case m := <-done:
			if cfg.Foreground {
				reclaimTerminal(stdio.In)
			}
			return finish(pid, m)
		}
	}
}

func writeAll(fd int, b []byte) {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		b = b[n:]
	}
}

// wait reaps the init and returns its wait status.
func wait(pid int) unix.WaitStatus {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			return ws
		}
	}
}

// finish turns the init's report into Run's result.
func finish(pid int, m message) (int, error) {
	switch {
	case m.Status != nil:
		// Reap the init in the background: the job has ended, and waiting
		// for the pid namespace to be torn down only delays the caller.
		go wait(pid)
		return *m.Status, nil
	case m.Error != "":
		wait(pid)
		return m.Code, initError(m)
	}
	// No report: the init itself died, killed from outside.
	ws := wait(pid)
	return StatusFailed, fmt.Errorf("container init ended without reporting a status (%s)", describe(ws))
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

func readMessage(r io.Reader) message {
	var m message
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return m
	}
	if json.Unmarshal(line, &m) != nil {
		m = message{Error: "container init sent a garbled status", Code: StatusFailed}
	}
	return m
}

// initError rebuilds the init's error so that errors.Is finds the sentinel
// behind its exit code.
func initError(m message) error {
	var sentinel error
	switch {
	case m.Code == StatusNotFound:
		sentinel = ErrCommandNotFound
	case m.Code == StatusNotExecutable:
		sentinel = ErrNotExecutable
	case m.Errno == int(syscall.EPERM) || m.Errno == int(syscall.EACCES):
		// Some kernels (Ubuntu's AppArmor policy) create the namespace but
		// give it no capabilities, so the first mount is refused.
		if v, ok := readSysctl("kernel.apparmor_restrict_unprivileged_userns"); ok && v == "1" {
			return diagnoseUserNS(syscall.EPERM, readSysctl)
		}
	}
	return &reportedError{msg: m.Error, sentinel: sentinel}
}

type reportedError struct {
	msg      string
	sentinel error
}

func (e *reportedError) Error() string { return e.msg }
func (e *reportedError) Unwrap() error { return e.sentinel }

// sysProcAttr builds the clone attributes for the init from the spec.
func sysProcAttr(spec *specs.Spec) (*syscall.SysProcAttr, error) {
	if spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, errors.New("the spec has no process to run")
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, errors.New("the spec has no root filesystem")
	}
	if spec.Linux == nil {
		return nil, errors.New("the spec has no linux section")
	}
	var flags uintptr
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path != "" {
			return nil, fmt.Errorf("%s namespace %s: %w", ns.Type, ns.Path, errJoinNotSupported)
		}
		f, ok := cloneFlags[ns.Type]
		if !ok {
			return nil, fmt.Errorf("unsupported namespace type %q", ns.Type)
		}
		flags |= f
	}
	if flags&unix.CLONE_NEWUSER == 0 {
		return nil, errors.New("a rootless container needs a user namespace in the spec")
	}
	return &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: idMaps(spec.Linux.UIDMappings),
		GidMappings: idMaps(spec.Linux.GIDMappings),
		// An unprivileged process may only map its gid after setgroups is
		// denied in the new namespace.
		GidMappingsEnableSetgroups: false,
		AmbientCaps:                initCaps,
		// If hpcrun dies, so does the init, and with it the pid namespace.
		Pdeathsig: syscall.SIGKILL,
	}, nil
}

var cloneFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
}

func idMaps(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// ForegroundTerminal reports whether f is a terminal whose foreground
// process group is ours, i.e. hpcrun runs interactively, not in the
// background.
func ForegroundTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// reclaimTerminal gives the terminal back to hpcrun's process group after
// the job, which held it, has ended. SIGTTOU is ignored around the call: a
// background group that sets the foreground group is otherwise stopped.
func reclaimTerminal(f *os.File) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(int(f.Fd()), unix.TIOCSPGRP, unix.Getpgrp())
}
