package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// process.rlimits apply to the job and every process started in the
// container, but not to the init: a Go runtime under a low RLIMIT_AS or
// RLIMIT_DATA cannot even start its threads. Nor may the init filter its
// own calls (linux.seccomp): it serves the container after the job
// starts. Go's ForkExec has no hook between fork and exec, so a process
// with limits or a filter is started through a shim: the hpcrun binary
// again (/proc/self/exe works after pivot_root), as RlimitArg0, which
// sets the limits, installs the filter and execs the command at once.
// The same shim fences in a process that may hold CAP_SYS_PTRACE (a
// pseudo-limit of resource fenceResource; see ocicaps_linux.go).

// RlimitArg0 is argv[0] of the pre-exec shim; cmd/hpcrun hands control
// to RunRlimitShim as soon as it sees it.
const RlimitArg0 = "hpcrun-rlimit"

// withShim returns the path and argv that start path with args under
// cfg's rlimits and seccomp filter, and the pseudo-limits in extra: path
// itself when there are none.
func withShim(cfg *initConfig, path string, args []string, extra ...rlimit) (string, []string) {
	if !cfg.needsShim() {
		return path, args
	}
	limits := append(slices.Clone(cfg.Rlimits), extra...)
	argv := []string{RlimitArg0, strconv.Itoa(len(limits))}
	for _, r := range limits {
		argv = append(argv, strconv.Itoa(r.Resource), strconv.FormatUint(r.Soft, 10), strconv.FormatUint(r.Hard, 10))
	}
	argv = append(argv, cfg.Seccomp, cfg.shimPrivileges())
	return "/proc/self/exe", append(append(argv, path), args...)
}

// needsShim says whether a process of cfg's starts through the shim: it
// has limits (or the fence) to set, or a filter to install.
func (cfg *initConfig) needsShim() bool { return len(cfg.Rlimits) > 0 || cfg.Seccomp != "" }

// forkExec starts path with args, under cfg's limits and filter, and
// returns once path runs, as syscall.ForkExec does: through the shim, once
// the shim has exec'd path (or failed), so that what follows a start (the
// poststart hooks, a signal, a state that names the job's pid) finds the
// job's program, not the shim's.
func forkExec(cfg *initConfig, path string, args []string, attr *syscall.ProcAttr) (int, error) {
	if !cfg.needsShim() {
		return syscall.ForkExec(path, args, attr)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	a := *attr
	a.Files = append(slices.Clone(attr.Files), w.Fd())
	path, args = withShim(cfg, path, args, rlimit{Resource: execSyncResource, Soft: uint64(len(a.Files) - 1)})
	pid, err := syscall.ForkExec(path, args, &a)
	w.Close()
	if err != nil {
		// hpcrun's own shim did not start: not the job's command.
		return pid, fmt.Errorf("start hpcrun's pre-exec shim (%s): %v; process.rlimits, a seccomp filter or a fenced capability need /proc mounted in the container", path, err)
	}
	// EOF once the shim's exec closes its end, or the shim exits, having
	// written why.
	r.SetReadDeadline(time.Now().Add(execSyncWait))
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	if err := shimFailure(b); err != nil {
		// The shim exits: reap it here (or the init's reaper does).
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
		return 0, err
	}
	return pid, nil
}

// execSyncResource is the pseudo-limit whose soft value is the shim's
// descriptor that its exec closes (see forkExec).
const execSyncResource = -2

// execSyncWait caps how long forkExec waits for the shim to exec.
const execSyncWait = 10 * time.Second

// RunRlimitShim sets the limits in os.Args, installs the seccomp filter
// there, if any (then drops privileges, where the init left that to it),
// and execs the command. It never returns; a failure exits
// 125 (126 when the exec fails).
func RunRlimitShim() {
	// The filter and the fence are the calling thread's: it must be the
	// one that execs.
	goruntime.LockOSThread()
	// A failure goes to whoever started the shim when it waits on a
	// descriptor of the shim's (execSyncResource), else to stderr.
	syncFD := -1
	report := func(code int, what string) {
		if syncFD < 0 || !writeAll(syncFD, what) {
			os.Stderr.WriteString("hpcrun: " + what[1:] + "\n")
		}
		os.Exit(code)
	}
	fail := func(code int, msg string) { report(code, "M"+msg) }
	a := os.Args[1:]
	n, err := strconv.Atoi(first(a))
	if err != nil || len(a) < 1+3*n+4 {
		fail(StatusFailed, "rlimit shim: bad arguments")
	}
	for i := 0; i < n; i++ {
		res, _ := strconv.Atoi(a[1+3*i])
		if res == execSyncResource {
			syncFD, _ = strconv.Atoi(a[2+3*i])
			syscall.CloseOnExec(syncFD)
			continue
		}
		if res == fenceResource {
			if err := fenceSelf(); err != nil {
				fail(StatusFailed, err.Error())
			}
			continue
		}
		soft, _ := strconv.ParseUint(a[2+3*i], 10, 64)
		hard, _ := strconv.ParseUint(a[3+3*i], 10, 64)
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: soft, Max: hard}); err != nil {
			fail(StatusFailed, "set rlimit "+strconv.Itoa(res)+": "+err.Error()+" (an unprivileged user can lower limits, not raise them)")
		}
	}
	rest := a[1+3*n:]
	if err := filterAndDrop(rest[0], rest[1]); err != nil {
		fail(StatusFailed, err.Error())
	}
	rest = rest[2:]
	// From here on the filter judges every call; syscall.Exec makes few
	// (it restores Go's RLIMIT_NOFILE, as runc's last exec does too).
	err = syscall.Exec(rest[0], rest[1:], os.Environ())
	var errno syscall.Errno
	if errors.As(err, &errno) && syncFD >= 0 {
		report(StatusNotExecutable, "E"+strconv.Itoa(int(errno)))
	}
	fail(StatusNotExecutable, execError(rest[1], err).Error())
}

// writeAll writes what to fd, whole.
func writeAll(fd int, what string) bool {
	for b := []byte(what); len(b) > 0; {
		n, err := syscall.Write(fd, b)
		if err != nil {
			return false
		}
		b = b[n:]
	}
	return true
}

// shimFailure is what a shim wrote on its sync descriptor before it
// exited: an exec's errno ("E2"), or a message ("M..."); nil for
// nothing, when it exec'd the job.
func shimFailure(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if b[0] == 'E' {
		if n, err := strconv.Atoi(string(b[1:])); err == nil {
			return syscall.Errno(n)
		}
	}
	return errors.New(string(b[1:]))
}

func first(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return a[0]
}
