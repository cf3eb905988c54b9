package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/initclone"
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
const RlimitArg0 = initclone.RlimitArg0

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
//
// Once the limits are set the shim must not grow its heap or start a
// thread: a Go runtime's address space is already past a bundle's usual
// RLIMIT_AS (1.2 GB reserved at start), so the next heap growth under it
// is a fatal "out of memory", and a thread past RLIMIT_NPROC is fatal
// too. What the exec needs (its argv and environment, the filter, the
// capability sets) is made first; on the way to the exec only raw system
// calls follow the limits. A failure's message may still allocate a
// little, from spans the heap already has.
func RunRlimitShim() {
	// The filter and the fence are the calling thread's: it must be the
	// one that execs.
	goruntime.LockOSThread()
	// A failure goes to whoever started the shim when it waits on a
	// descriptor of the shim's (execSyncResource), else to stderr.
	syncFD := -1
	report := func(code int, what ...string) {
		ok := syncFD >= 0
		for _, w := range what {
			ok = ok && writeAll(syncFD, []byte(w)) == nil
		}
		if !ok {
			os.Stderr.WriteString("hpcrun: " + strings.Join(what, "")[1:] + "\n")
		}
		os.Exit(code)
	}
	fail := func(code int, msg ...string) { report(code, append([]string{"M"}, msg...)...) }
	a := os.Args[1:]
	n, err := strconv.Atoi(first(a))
	if err != nil || n < 0 || len(a) < 1+3*n+4 {
		fail(StatusFailed, "rlimit shim: bad arguments")
	}
	type limit struct {
		res int
		lim unix.Rlimit
	}
	var limits []limit
	for i := 0; i < n; i++ {
		res, _ := strconv.Atoi(a[1+3*i])
		switch res {
		case execSyncResource:
			syncFD, _ = strconv.Atoi(a[2+3*i])
			syscall.CloseOnExec(syncFD)
		case fenceResource:
			if err := fenceSelf(); err != nil {
				fail(StatusFailed, err.Error())
			}
		default:
			soft, _ := strconv.ParseUint(a[2+3*i], 10, 64)
			hard, _ := strconv.ParseUint(a[3+3*i], 10, 64)
			limits = append(limits, limit{res, unix.Rlimit{Cur: soft, Max: hard}})
		}
	}
	rest := a[1+3*n:]
	var filter *seccompFilter
	if rest[0] != "" {
		if filter, err = parseSeccompFilter(rest[0]); err != nil {
			fail(StatusFailed, err.Error())
		}
	}
	privs, root, dropPrivs := capSets{}, false, filter != nil && rest[1] != ""
	if dropPrivs {
		if privs, root, err = parseShimPrivileges(rest[1]); err != nil {
			fail(StatusFailed, err.Error())
		}
	}
	argv0, argv := rest[2], rest[3:]
	argv0p, err := syscall.BytePtrFromString(argv0)
	if err != nil {
		fail(StatusNotExecutable, execError(argv[0], err).Error())
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		fail(StatusNotExecutable, execError(argv[0], err).Error())
	}
	envvp, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		fail(StatusNotExecutable, execError(argv[0], err).Error())
	}
	// The exec's errno for the waiting init, written without allocating.
	errnoMsg := make([]byte, 0, 24)
	// Go raised this process's soft RLIMIT_NOFILE at start and puts it
	// back in syscall.Exec alone, before its execve: the failing Exec
	// of "" does that here, so that a job with no RLIMIT_NOFILE of its
	// own gets the limit the shim started with, as one exec'd by
	// syscall.Exec does.
	syscall.Exec("", nil, nil)

	// From here on: no allocation, no new thread.
	for _, l := range limits {
		if _, _, e := unix.RawSyscall6(unix.SYS_PRLIMIT64, 0, uintptr(l.res), uintptr(unsafe.Pointer(&l.lim)), 0, 0, 0); e != 0 {
			fail(StatusFailed, "set rlimit ", resourceName(l.res), ": ", e.Error(), " (an unprivileged user can lower limits, not raise them)")
		}
	}
	if filter != nil {
		if err := filter.install(); err != nil {
			fail(StatusFailed, err.Error())
		}
		if dropPrivs {
			if err := dropPrivileges(false, privs, root); err != nil {
				fail(StatusFailed, err.Error())
			}
		}
	}
	// From here on the filter judges every call.
	_, _, e := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(argv0p)), uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envvp[0])))
	if syncFD >= 0 {
		errnoMsg = strconv.AppendInt(append(errnoMsg, 'E'), int64(e), 10)
		if writeAll(syncFD, errnoMsg) == nil {
			os.Exit(StatusNotExecutable)
		}
	}
	fail(StatusNotExecutable, execError(argv[0], e).Error())
}

// resourceName is the name of resource res, a static string for those
// that process.rlimits may name (no allocation; see RunRlimitShim).
func resourceName(res int) string {
	for name, n := range rlimitNumbers {
		if n == res {
			return name
		}
	}
	return "(unknown)"
}

// writeAll writes b to fd, whole, with write(2) alone: no poller, and
// no allocation (the shim calls it under its limits).
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
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
