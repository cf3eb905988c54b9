package runtime

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/envlist"
	"github.com/hpcrun/hpcrun/internal/fallback"
)

// RunInit is the container's init stage: PID 1 of the new pid namespace.
// cmd/hpcrun's package early calls it when os.Args[0] is InitArg0. It
// never returns.
//
// It reads like a script: read the config; build the root filesystem;
// pivot into it; drop privileges; start the job; forward signals and reap
// until the job ends; report the job's status.
func RunInit() {
	// no_new_privs, capabilities and the parent-death signal are per
	// thread: keep every step on this one.
	goruntime.LockOSThread()
	// Run as /proc/self/exe, it would show as "exe" in ps and pgrep.
	name := []byte("hpcrun-init\x00")
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
	os.Exit(initMain(time.Now()))
}

func initMain(entered time.Time) int {
	status := os.NewFile(4, "status")
	// Neither pipe may leak into the job.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	control := os.NewFile(3, "control")
	raw, err := readFrame(control)
	if err != nil {
		return report(status, fmt.Errorf("read container config: %w", err))
	}
	cfg, err := decodeInitConfig(raw)
	if err != nil {
		return report(status, err)
	}
	logf := cfg.logf
	if cfg.Hooks != "" {
		cfg.beforePivot = func(newroot string) (string, error) { return creationHooks(cfg, newroot, control, status) }
	}
	// The job runs as the same uid: without this it could open the init's
	// pipes through /proc/1/fd and forge its report, or ptrace the init's
	// threads, which keep their capabilities. Only now: the parent writes
	// the id maps through /proc/<pid>/ before it sends the config.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return report(status, fmt.Errorf("make the init undumpable: %w", err))
	}
	logf("started as pid %d, uid %d (Go runtime up at %.2fms)", os.Getpid(), os.Getuid(),
		float64(entered.Sub(cfg.Start).Microseconds())/1000)
	// Namespaces beyond the clone's are this thread's own, and the job's,
	// which this thread forks.
	if cfg.Unshare != 0 {
		if err := unix.Unshare(int(cfg.Unshare)); err != nil {
			return report(status, fmt.Errorf("unshare namespaces %#x: %w", cfg.Unshare, err))
		}
	}
	// Before anything forks: the job and every process the init starts
	// are forked from this thread, and inherit its keyring.
	if cfg.Keyring != "" {
		if err := joinKeyring(cfg.Keyring); err != nil {
			return report(status, err)
		}
		logf("joined a fresh session keyring")
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return report(status, fmt.Errorf("set hostname: %w", err))
		}
	}
	if cfg.Unshare&unix.CLONE_NEWNET != 0 {
		if err := loopbackUp(); err != nil {
			return report(status, fmt.Errorf("bring up lo: %w", err))
		}
		logf("new network namespace, lo is up")
	}
	if err := applySysctls(cfg.Sysctls); err != nil {
		return report(status, err)
	}
	// A container's state directory, and its control socket, are opened
	// while the host's tree is still in view.
	c, err := newCtl(cfg, status)
	if err != nil {
		return report(status, err)
	}
	// A checkpoint to restore, and a site's criu, are opened while the
	// host's tree is in view, as the state directory is.
	restoreDir, restoreCriu := -1, -1
	if cfg.RestoreDir != "" {
		if restoreDir, err = unix.Open(cfg.RestoreDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return report(status, fmt.Errorf("restore: open %s: %w", cfg.RestoreDir, err))
		}
		if cfg.RestoreCriu != "" {
			if restoreCriu, err = unix.Open(cfg.RestoreCriu, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return report(status, fmt.Errorf("restore: open criu %s: %w", cfg.RestoreCriu, err))
			}
		}
	}
	if err := buildRootfs(cfg, c.stateDir(), logf); err != nil {
		return report(status, err)
	}
	if err := applyRootPropagation(uintptr(cfg.RootPropagation)); err != nil {
		return report(status, err)
	}
	// Started there, as are processes exec'd without a --cwd.
	if err := chdirJob(cfg.Cwd); err != nil {
		return report(status, err)
	}
	path := ""
	if restoreDir < 0 {
		if path, err = lookPath(cfg.Args[0], envlist.Value(cfg.Env, "PATH"), ""); err != nil {
			return report(status, err)
		}
		setPidFloor(logf)
	}
	// The OOM score is inherited: set on the init, it is the job's and
	// every exec'd process's. Rlimits are not (see rlimit_linux.go).
	if cfg.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*cfg.OOMScoreAdj)), 0); err != nil {
			return report(status, fmt.Errorf("set oom_score_adj to %d: %w (an unprivileged user can raise it, not lower it)", *cfg.OOMScoreAdj, err))
		}
	}

	// Inherited descriptors beyond stdio do not pass into the job.
	closeExtraFDs(envlist.Value(cfg.Env, "PMI_FD"), cfg.Held)
	if restoreDir >= 0 {
		// criu restores the job, with its credentials, capabilities and
		// descriptors, as this thread's child; it needs the thread's
		// capabilities, which the drop below takes.
		job, err := restoreJob(cfg, restoreDir, restoreCriu, logf)
		unix.Close(restoreDir)
		if restoreCriu >= 0 {
			unix.Close(restoreCriu)
		}
		if err != nil {
			return report(status, err)
		}
		if err := dropPrivileges(true, capSets{}, false); err != nil {
			return report(status, err)
		}
		c.path = "criu"
		shieldSignals(false)
		go forwardSignals(control, job, cfg.Foreground)
		return c.running(job)
	}
	if !cfg.dropsInShim() {
		if err := dropPrivileges(cfg.NoNewPrivs, cfg.Caps, cfg.UID == 0); err != nil {
			return report(status, err)
		}
	}
	c.path = path
	if cfg.Detached {
		return c.created(control)
	}
	// The init leads a session of its own, apart from the caller's (see
	// Start). With a terminal that hpcrun relays (a new pty, never the
	// caller's) on stdin, that is the session's controlling terminal, and
	// the job, in a process group of its own, its foreground: Ctrl-C and
	// Ctrl-Z there signal the job, and a shell in it has job control. The
	// init, its parent in the same session, keeps the job's group from
	// being orphaned, where the kernel would drop the stop of Ctrl-Z.
	// Without one the job has no controlling terminal at all.
	attr := &syscall.ProcAttr{Env: cfg.Env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setsid: true}}
	if cfg.Terminal {
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			return report(status, fmt.Errorf("make the job's terminal the controlling one: %w", err))
		}
		attr.Sys = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: 0}
	}
	if int(cfg.UID) != os.Getuid() || int(cfg.GID) != os.Getgid() {
		attr.Sys.Credential = &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, NoSetGroups: true}
	}
	job, err := forkExec(cfg, path, cfg.Args, attr)
	if err != nil {
		return report(status, execError(cfg.Args[0], err))
	}
	// Signals sent to hpcrun reach the job through the control pipe, not
	// through PID 1's signal handlers. Until now a signal sent to the init
	// ends it, and the container with it.
	shieldSignals(false)
	go forwardSignals(control, job, cfg.Foreground)
	return c.running(job)
}

// forwardSignals reads signal numbers from the control pipe, one byte
// each, and sends them to the job. With group, the job holds a terminal,
// and SIGCONT goes to all of its process group: after Ctrl-Z every process
// of the group is stopped.
func forwardSignals(control *os.File, job int, group bool) {
	var b [1]byte
	for {
		if _, err := control.Read(b[:]); err != nil {
			return
		}
		switch sig := unix.Signal(b[0]); {
		case sig == unix.SIGCONT && group:
			unix.Kill(-job, sig)
		default:
			unix.Kill(job, sig)
		}
	}
}

// report sends the init's failure to the parent and returns the exit status.
func report(status *os.File, err error) int {
	m := message{Failed: true, Error: err.Error(), Code: ExitStatus(err)}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		m.Errno = int(errno)
	}
	status.Write(m.encode())
	return m.Code
}

// closeExtraFDs marks every descriptor above stderr close-on-exec, so
// nothing hpcrun or its caller opened leaks into the job. Slurm's PMI_FD is
// the exception: PMI-2 clients need it.
func closeExtraFDs(pmiFD string, held int) {
	defer func() {
		// Not the init's own pipes, 3 and 4, nor what it holds from 5 on:
		// the caller's descriptors of those numbers are lost at the
		// init's exec anyway.
		if fd, err := strconv.Atoi(pmiFD); err == nil && fd > 4+held {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
		}
	}()
	var err error = unix.ENOSYS
	if !fallback.Forced(fallback.CloseRange) {
		err = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	}
	if err != nil {
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
