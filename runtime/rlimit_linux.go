package runtime

import (
	"os"
	goruntime "runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// process.rlimits apply to the job and every process started in the
// container, but not to the init: a Go runtime under a low RLIMIT_AS or
// RLIMIT_DATA cannot even start its threads. Go's ForkExec has no hook
// between fork and exec, so a process with limits is started through a
// shim: the hpcrun binary again (/proc/self/exe works after pivot_root),
// as RlimitArg0, which sets the limits and execs the command at once.
// The same shim fences in a process that may hold CAP_SYS_PTRACE (a
// pseudo-limit of resource fenceResource; see ocicaps_linux.go).

// RlimitArg0 is argv[0] of the rlimit shim; cmd/hpcrun hands control to
// RunRlimitShim as soon as it sees it.
const RlimitArg0 = "hpcrun-rlimit"

// withRlimits returns the path and argv that start path with args under
// limits: path itself when there are none.
func withRlimits(limits []rlimit, path string, args []string) (string, []string) {
	if len(limits) == 0 {
		return path, args
	}
	argv := []string{RlimitArg0, strconv.Itoa(len(limits))}
	for _, r := range limits {
		argv = append(argv, strconv.Itoa(r.Resource), strconv.FormatUint(r.Soft, 10), strconv.FormatUint(r.Hard, 10))
	}
	return "/proc/self/exe", append(append(argv, path), args...)
}

// forkExec starts path with args, under limits when there are any.
func forkExec(limits []rlimit, path string, args []string, attr *syscall.ProcAttr) (int, error) {
	path, args = withRlimits(limits, path, args)
	return syscall.ForkExec(path, args, attr)
}

// RunRlimitShim sets the limits in os.Args and execs the command. It
// never returns; a failure exits 125 (126 when the exec fails).
func RunRlimitShim() {
	// The fence is the calling thread's, and must be the execve's.
	goruntime.LockOSThread()
	fail := func(code int, msg string) {
		os.Stderr.WriteString("hpcrun: " + msg + "\n")
		os.Exit(code)
	}
	a := os.Args[1:]
	n, err := strconv.Atoi(first(a))
	if err != nil || len(a) < 1+3*n+2 {
		fail(StatusFailed, "rlimit shim: bad arguments")
	}
	for i := 0; i < n; i++ {
		res, _ := strconv.Atoi(a[1+3*i])
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
	err = syscall.Exec(rest[0], rest[1:], os.Environ())
	fail(StatusNotExecutable, execError(rest[1], err).Error())
}

func first(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return a[0]
}
