package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hpcrun/hpcrun/runtime/initclone"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// InitArg0 is argv[0] of the re-executed init stage. cmd/hpcrun hands control to
// RunInit as soon as it sees it, from a package init function.
const InitArg0 = initclone.InitArg0

// Config is everything the init stage needs: the spec and what hpcrun adds
// to it. Run reduces it to the init's own compact form (see wire_linux.go),
// which crosses the re-exec on fd 3.
type Config struct {
	Spec *specs.Spec
	// Files are generated files bound read-only over paths in the
	// container (/etc/passwd, /etc/group). They live in the init's private
	// tmpfs and vanish with its mount namespace; the rootfs is not touched.
	Files []File
	// WritableTmpfs puts an overlay with a tmpfs upper layer over the
	// read-only rootfs; writes are discarded when the job ends.
	WritableTmpfs bool
	// NewKeyring gives the job, and every process exec'd into the
	// container, a fresh session keyring instead of the caller's.
	NewKeyring bool
	// Foreground is set by Run when the job has a terminal relayed to the
	// caller's (see terminalRelay): the init reports the job's stops, and
	// hpcrun stops with it, so that Ctrl-Z gives the shell its terminal.
	Foreground bool
	// Verbose makes the init log each phase to stderr, timed from Start.
	Verbose bool
	Start   time.Time
	// StateDir is the container's state directory, where its init serves
	// the control socket: set by Create, or for a named run by the caller
	// of Run (see Containers.Register), which makes the run one that exec,
	// ps and kill can find.
	StateDir string
	detached bool // set by Create
	// Terminal: the job's stdio is a terminal that becomes its
	// controlling one, in a session of its own: a detached container
	// whose config asks for a terminal, or a run whose terminal hpcrun
	// relays (set by Run).
	Terminal bool
	// Hold are files a detached container's init keeps open for as long
	// as it lives (never passed to the job): the lock that keeps its
	// cached image in use.
	Hold []*os.File
	// Anchor pins (procs.Parent) the process whose end ends a detached
	// container: under Slurm, the job's script, so that a service
	// started in a job dies with the job.
	Anchor *os.File
	// Members makes Create a group container: one for the tasks of an
	// MPI step on a node, so that they share its namespaces. It starts no
	// job of its own: each task runs its process in it with Exec, as a
	// Process with Member set, and it ends once Members of them have
	// joined and all have ended, or when Anchor ends. Args are not used.
	Members int
	// Restore, when set, makes the job the restore of a checkpoint
	// (see checkpoint_linux.go) instead of an exec of Spec's command.
	Restore *Restore
	hooks   *hookRun // a created container's OCI hooks (see hooks_linux.go)
	// cgroups are a bundle's container's own cgroups, limits written,
	// which Create moves the init into (see cgroups_linux.go).
	cgroups *containerCgroups
}

// Restore is a checkpoint to restore as a container's job.
type Restore struct {
	Dir    string   // the checkpoint's directory, on the host
	Criu   string   // a site's criu, on the host; "" for the image's
	Pid    int      // the job's pid, which the restore keeps
	MaxPid int      // CheckpointInfo.MaxPid
	Stdio  []string // CheckpointInfo.Stdio
}

// logf prints a -v line timed from c.Start, as the CLI's own lines are.
func (c *Config) logf(format string, args ...any) {
	if c.Verbose {
		logLine(c.Start, format, args...)
	}
}

func logLine(start time.Time, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "hpcrun: [%7.2fms] %s\n",
		float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
}

// File is a generated file placed into the container.
type File struct {
	Path string
	Data []byte
	Mode uint32
}

// Stdio is the job's standard input, output and error.
type Stdio = initclone.Stdio

// ForwardedSignals are passed on to the job: what batch systems and
// terminals send. Slurm sends CONT then TERM, then KILL after KillWait.
var ForwardedSignals = initclone.ForwardedSignals

// initCaps are the capabilities the init holds inside its user namespace
// (see initclone.InitCaps).
var initCaps = initclone.InitCaps

// Init is a container init that has been cloned and waits for its
// config. Starting it ahead of the config lets the clone and the start of
// its Go runtime (two milliseconds) overlap the caller's own work of
// parsing flags and resolving the job.
type Init struct {
	pid      int
	at       time.Time // when it had exec'd
	err      error     // why the clone failed; reported by Run
	control  *os.File  // our end of the control pipe: the config, then signals
	status   *os.File
	relay    *terminalRelay // the job's terminal, when stdin is one
	sigs     chan os.Signal
	catching chan struct{}
	done     chan struct{} // ends the forwarding goroutine
	used     bool

	mu         sync.Mutex
	configured bool         // the config is sent: signals go to the job
	warn       func(string) // says that a warning signal was not passed on
}

// Start clones an init in new user, mount and pid namespaces, with stdio as
// its standard streams. It does not fail: a failure is reported by Run, so
// that a bad command line is still reported first. Every Init must be
// ended by Run or Abort.
//
// The init, and so the job, runs in a session of its own: the caller's
// terminal is never the job's controlling one. Where stdin is a terminal,
// the job gets a pty of its own instead, which Run relays (see
// terminalRelay).
//
// Signals meant for the job are caught from here on. Until Run has sent
// the config, such a signal ends the init and then hpcrun itself, by the
// same signal, as if hpcrun had no handler yet; but SIGCONT, and the
// warning signals (see forward).
func Start(stdio Stdio) *Init { return start(stdio, false, initCaps, nil) }

// StartDetached clones an init for Create: one that outlives its caller,
// in a session of its own, with extra as its descriptors 5, 6, ..., that
// holds the capabilities spec asks for (see initCapsFor).
func StartDetached(stdio Stdio, spec *specs.Spec, extra ...*os.File) *Init {
	return start(stdio, true, initCapsFor(spec), extra)
}

func start(stdio Stdio, detached bool, caps []uintptr, extra []*os.File) *Init {
	var relay *terminalRelay
	if !detached && initclone.IsTerminal(stdio.In) {
		r, job, err := newTerminalRelay(stdio)
		if err != nil {
			catching := make(chan struct{})
			close(catching)
			p := &Init{err: err, sigs: make(chan os.Signal), catching: catching, done: make(chan struct{})}
			go p.forward()
			return p
		}
		relay, stdio = r, job
		defer relay.closeSlave()
	}
	p := &Init{relay: relay}
	p.fill(initclone.Start(stdio, detached, caps, extra))
	return p
}

// Adopt takes over an init that package initclone cloned (a job's init,
// cloned as early as can be, before this package is initialized): it
// forwards signals to it, and Run reports a failed clone.
func Adopt(c *initclone.Clone) *Init {
	if c == nil {
		return nil
	}
	p := &Init{}
	p.fill(c)
	return p
}

func (p *Init) fill(c *initclone.Clone) {
	p.pid, p.at, p.err, p.control, p.status, p.sigs, p.catching = c.Pid, c.At, c.Err, c.Control, c.Status, c.Sigs, c.Catching
	p.done = make(chan struct{})
	if p.err != nil {
		if isUserNSRefusal(p.err) {
			p.err = diagnoseUserNS(p.err, readSysctl)
		} else {
			p.err = fmt.Errorf("start container init: %w", p.err)
		}
	}
	go p.forward()
}

// Create hands a detached init its config, with cfg.StateDir set, and
// returns the init's pid once the container is built and serves its
// control socket; the job waits for StartJob. The init outlives the
// caller.
func (p *Init) Create(cfg *Config) (int, error) {
	if cfg.StateDir == "" {
		return 0, errors.New("create: no state directory")
	}
	cfg.detached = true
	if err := p.configure(cfg); err != nil {
		return 0, err
	}
	defer p.release()
	m, ok := readMessage(p.status)
	if ok && m.Hooks {
		// Built, waiting before pivot_root: the caller's hooks run now.
		if err := cfg.hooks.runtimeHooks(p.pid); err != nil {
			unix.Kill(p.pid, unix.SIGKILL)
			wait(p.pid)
			return 0, err
		}
		p.mu.Lock()
		p.control.Write([]byte{0})
		p.mu.Unlock()
		m, ok = readMessage(p.status)
	}
	switch {
	case ok && m.Ready:
		// The init is no child to wait for: it is reparented when we exit,
		// and reaped by whoever inherits it.
		return p.pid, nil
	case ok && m.Failed:
		wait(p.pid)
		return 0, initError(m)
	}
	_, err := finish(p.pid, m, ok)
	if err == nil {
		err = errors.New("the container's init ended before it was ready")
	}
	return 0, err
}

// Pid is the init's process id on the host; 0 if its clone failed.
func (p *Init) Pid() int {
	if p == nil || p.err != nil {
		return 0
	}
	return p.pid
}

// Abort ends an init that will get no config. It is a no-op after Run.
func (p *Init) Abort() {
	if p == nil || p.used {
		return
	}
	p.used = true
	if p.relay != nil {
		p.relay.close()
	}
	if p.err == nil {
		unix.Kill(p.pid, unix.SIGKILL)
		wait(p.pid)
	}
	p.release()
}

func (p *Init) release() {
	close(p.done)
	p.mu.Lock()
	if p.control != nil {
		p.control.Close()
	}
	p.mu.Unlock()
	if p.status != nil {
		p.status.Close()
	}
	// Stopping costs a handshake per signal with the Go runtime's signal
	// thread; nobody need wait for it.
	go func() {
		<-p.catching
		signal.Stop(p.sigs)
	}()
}

// forward passes signals to the job through the init, which sends them on.
// Before the config is sent there is no job yet: the signal ends the init
// and hpcrun. Not SIGCONT, and not SIGUSR1 or SIGUSR2: a batch system's
// warning before the time limit (Slurm's --signal) can come while the image
// is still unpacking, and ending the job for it would lose the whole
// allocation. Passed on later, it would kill a job that has not yet set its
// handler. It is dropped, and said so (SetWarn).
func (p *Init) forward() {
	for {
		select {
		case sig := <-p.sigs:
			s := sig.(syscall.Signal)
			p.mu.Lock()
			switch {
			case p.configured:
				// After Ctrl-Z and fg, hpcrun holds the terminal again:
				// relay it before the job continues.
				if s == syscall.SIGCONT && p.relay != nil {
					p.relay.resume()
				}
				p.control.Write([]byte{byte(s)})
			case s == syscall.SIGCONT:
			case s == syscall.SIGUSR1 || s == syscall.SIGUSR2:
				msg := unix.SignalName(s) + " came before the job had started; it was not passed on"
				if p.warn != nil {
					p.warn(msg)
				} else {
					fmt.Fprintf(os.Stderr, "hpcrun: warning: %s\n", msg)
				}
			default:
				if p.err == nil {
					unix.Kill(p.pid, unix.SIGKILL)
					wait(p.pid)
				}
				dieOf(s)
			}
			p.mu.Unlock()
		case <-p.done:
			return
		}
	}
}

// SetWarn makes f say that a warning signal that came before the job had
// started was not passed on (hpcrun's stderr by default).
func (p *Init) SetWarn(f func(string)) {
	p.mu.Lock()
	p.warn = f
	p.mu.Unlock()
}

// dieOf takes the default action of s, as without a handler: hpcrun dies
// of it. Not signal.Reset alone: for a signal that hpcrun was started with
// ignored (SIGINT in a script's background job), Reset ignores it again,
// and hpcrun would go on unpacking for an init that is gone.
func dieOf(s syscall.Signal) {
	signal.Reset(s)
	var dfl [4]uint64 // a struct sigaction, all zero: SIG_DFL
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(s), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	unix.Kill(unix.Getpid(), s)
	// A fatal signal sent to ourselves ends the process before kill
	// returns; should it not, end as a shell reports a death by s.
	os.Exit(128 + int(s))
}

// configure writes the init's id maps and sends it its config; from then
// on, signals hpcrun catches go to the job. On an error the init is
// ended. The caller must release p once done with it.
func (p *Init) configure(cfg *Config) error {
	if p.used {
		return errors.New("container init already used")
	}
	if p.err != nil {
		p.Abort()
		return p.err
	}
	cfg.logf("init cloned, host pid %d (exec'd at %.2fms)", p.pid, float64(p.at.Sub(cfg.Start).Microseconds())/1000)
	ic, err := newInitConfig(cfg)
	if err == nil {
		err = writeIDMaps(p.pid, cfg.Spec.Linux)
	}
	if err != nil {
		p.Abort()
		return err
	}
	p.used = true
	<-p.catching
	// A write error means the init is dead already; its report, or its
	// wait status, says why. The pipe stays open: signals follow on it.
	p.mu.Lock()
	p.control.Write(frame(ic.encode()))
	p.configured = true
	p.mu.Unlock()
	return nil
}

// Run hands the init its config and waits for the job, and returns the
// job's exit status (128+N when a signal N killed it). It returns as soon
// as the init reports the job's status; the kernel finishes tearing down
// the namespaces on its own. Signals that hpcrun receives meanwhile are
// forwarded to the job.
func (p *Init) Run(ctx context.Context, cfg *Config) (int, error) {
	cfg.Terminal = p.relay != nil
	cfg.Foreground = cfg.Terminal
	if err := p.configure(cfg); err != nil {
		return StatusFailed, err
	}
	defer p.release()
	if p.relay != nil {
		// Restored on every way out: the job's end, its death, a kill
		// of the init, and the signals hpcrun forwards, which end the
		// job first.
		p.relay.start()
		defer p.relay.close()
	}
	cfg.logf("config sent")

	// Cancellation is handled beside; this goroutine blocks in read(2)
	// until the init reports, and wakes straight from it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			unix.Kill(p.pid, unix.SIGKILL)
		case <-stop:
		}
	}()
	m, ok := readMessage(p.status)
	for ok && m.Stopped {
		// The job stopped at its terminal (Ctrl-Z): give the caller's
		// terminal its modes back and stop as well, so the shell sees its
		// job stopped. Its SIGCONT (fg, bg) goes on to the job through
		// forward.
		p.relay.suspend()
		unix.Kill(unix.Getpid(), unix.SIGSTOP)
		m, ok = readMessage(p.status)
	}
	if err := ctx.Err(); err != nil {
		wait(p.pid)
		return StatusFailed, err
	}
	return finish(p.pid, m, ok)
}

// writeIDMaps writes the spec's id maps for the init, as Go's ForkExec
// would have at the clone. An unprivileged process may map only its own
// uid and gid, once, and the gid only after setgroups is denied.
func writeIDMaps(pid int, l *specs.Linux) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	for _, w := range []struct{ file, data string }{
		{"setgroups", "deny"},
		{"gid_map", formatIDMap(l.GIDMappings)},
		{"uid_map", formatIDMap(l.UIDMappings)},
	} {
		if err := os.WriteFile(dir+w.file, []byte(w.data), 0); err != nil {
			return fmt.Errorf("map ids into the container: %w; rootless hpcrun can map only your own uid and gid", err)
		}
	}
	return nil
}

func formatIDMap(ms []specs.LinuxIDMapping) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
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
func finish(pid int, m message, ok bool) (int, error) {
	switch {
	case ok && !m.Failed:
		// Reap the init in the background: the job has ended, and waiting
		// for the pid namespace to be torn down only delays the caller.
		go wait(pid)
		return m.Status, nil
	case ok:
		wait(pid)
		return m.Code, initError(m)
	}
	// No report: the init itself died, killed from outside (the OOM
	// killer, a kill -9); the job died with it.
	ws := wait(pid)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), &statusError{code: 128 + int(ws.Signal()),
			msg: fmt.Sprintf("the container's init was killed by signal %d (%s), and the job with it", ws.Signal(), unix.SignalName(ws.Signal()))}
	}
	return StatusFailed, fmt.Errorf("the container's init ended with status %d without reporting the job's", ws.ExitStatus())
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

// cloneFlags are the namespaces the init can make: user, mount and pid at
// its clone, the others by unshare(2) on its own thread.
var cloneFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
}

const clonedAtStart = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID

// namespaceFlags checks a spec's namespaces and returns the ones the init
// unshares itself, beyond the user, mount and pid namespaces of its clone.
func namespaceFlags(spec *specs.Spec) (uintptr, error) {
	if spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 {
		return 0, errors.New("the spec has no process to run")
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return 0, errors.New("the spec has no root filesystem")
	}
	if spec.Linux == nil {
		return 0, errors.New("the spec has no linux section")
	}
	var flags uintptr
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path != "" {
			return 0, fmt.Errorf("%s namespace %s: %w", ns.Type, ns.Path, errJoinNotSupported)
		}
		f, ok := cloneFlags[ns.Type]
		if !ok {
			return 0, fmt.Errorf("unsupported namespace type %q", ns.Type)
		}
		flags |= f
	}
	if flags&clonedAtStart != clonedAtStart {
		return 0, errors.New("a rootless container needs new user, mount and pid namespaces in the spec")
	}
	return flags &^ clonedAtStart, nil
}
