package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Hooks are steps of the init stage that live in other packages (the
// import direction is cmd → netns → runtime, so runtime cannot call them
// itself).
type Hooks struct {
	// LoopbackUp brings up lo in a new network namespace.
	LoopbackUp func() error
}

// Init is the container's init stage: PID 1 of the new pid namespace. main
// calls it when os.Args[0] is InitArg0. It never returns.
//
// It reads like a script: read the config; build the root filesystem;
// pivot into it; drop privileges; start the job; forward signals and reap
// until the job ends; report the job's status.
func Init(hooks Hooks) {
	// no_new_privs, capabilities and the parent-death signal are per
	// thread: keep every step on this one.
	goruntime.LockOSThread()
	os.Exit(initMain(hooks, time.Now()))
}

func initMain(hooks Hooks, entered time.Time) int {
	cfgFile := os.NewFile(3, "config")
	status := os.NewFile(4, "status")
	// Neither pipe may leak into the job.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)

	var cfg Config
	if err := json.NewDecoder(cfgFile).Decode(&cfg); err != nil {
		return report(status, fmt.Errorf("read container config: %w", err))
	}
	cfgFile.Close()
	logf := func(string, ...any) {}
	if cfg.Verbose {
		logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "hpcrun: [%7.2fms] init: %s\n",
				float64(time.Since(cfg.Start).Microseconds())/1000, fmt.Sprintf(format, args...))
		}
	}
	logf("started as pid %d, uid %d (Go runtime up at %.2fms, config read)", os.Getpid(), os.Getuid(),
		float64(entered.Sub(cfg.Start).Microseconds())/1000)
	spec := cfg.Spec
	if err := buildRootfs(&cfg, logf); err != nil {
		return report(status, err)
	}
	if hasNewNetwork(spec) && hooks.LoopbackUp != nil {
		if err := hooks.LoopbackUp(); err != nil {
			return report(status, fmt.Errorf("bring up lo: %w", err))
		}
		logf("lo is up")
	}
	if err := os.Chdir(spec.Process.Cwd); err != nil {
		return report(status, fmt.Errorf("working directory %s: %w; pick another with --pwd", spec.Process.Cwd, unwrapPath(err)))
	}
	path, err := lookPath(spec.Process.Args[0], envValue(spec.Process.Env, "PATH"))
	if err != nil {
		return report(status, err)
	}

	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, ForwardedSignals...)...)
	// Job control signals from the terminal must not stop PID 1.
	signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGTSTP)

	// Inherited descriptors beyond stdio do not pass into the job.
	closeExtraFDs(envValue(spec.Process.Env, "PMI_FD"))
	if err := dropPrivileges(spec.Process); err != nil {
		return report(status, err)
	}
	attr := &syscall.ProcAttr{
		Env:   spec.Process.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{},
	}
	// Ignored signals stay ignored across execve; the job starts clean.
	signal.Reset(syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGTSTP)
	if cfg.Foreground {
		attr.Sys.Foreground = true
		attr.Sys.Ctty = 0
	}
	if u := spec.Process.User; int(u.UID) != os.Getuid() || int(u.GID) != os.Getgid() {
		attr.Sys.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, NoSetGroups: true}
	}
	job, err := syscall.ForkExec(path, spec.Process.Args, attr)
	if err != nil {
		return report(status, execError(spec.Process.Args[0], err))
	}
	signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGTSTP)
	logf("job started as pid %d: %s", job, strings.Join(spec.Process.Args, " "))

	code := superviseJob(job, sigs)
	// Whatever the job left behind dies with it, as under Slurm.
	unix.Kill(-1, unix.SIGKILL)
	logf("job ended with status %d", code)
	writeMessage(status, message{Status: &code})
	return code
}

// superviseJob forwards signals to the job and reaps every child that the
// kernel hands to PID 1 until the job itself ends. It returns the job's
// status as a shell would report it.
func superviseJob(job int, sigs <-chan os.Signal) int {
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			// Signals that reach PID 1 are meant for the job.
			unix.Kill(job, sig.(syscall.Signal))
			continue
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if pid == job {
				return WaitStatusCode(syscall.WaitStatus(ws))
			}
		}
	}
	return StatusFailed
}

// report sends the init's failure to the parent and returns the exit status.
func report(status *os.File, err error) int {
	m := message{Error: err.Error(), Code: ExitStatus(err)}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		m.Errno = int(errno)
	}
	writeMessage(status, m)
	return m.Code
}

func writeMessage(f *os.File, m message) {
	b, _ := json.Marshal(m)
	f.Write(append(b, '\n'))
}

// closeExtraFDs marks every descriptor above stderr close-on-exec, so
// nothing hpcrun or its caller opened leaks into the job. Slurm's PMI_FD is
// the exception: PMI-2 clients need it.
func closeExtraFDs(pmiFD string) {
	defer func() {
		if fd, err := strconv.Atoi(pmiFD); err == nil && fd > 2 {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
		}
	}()
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		// Before Linux 5.11: walk /proc/self/fd.
		if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
			for _, e := range ents {
				if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
					unix.CloseOnExec(fd)
				}
			}
		}
	}
}

func hasNewNetwork(spec *specs.Spec) bool {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path == "" {
			return true
		}
	}
	return false
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
