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
// RLIMIT_DATA cannot even start its threads. Nor may the init filter its
// own calls (linux.seccomp): it serves the container after the job
// starts. Go's ForkExec has no hook between fork and exec, so a process
// with limits or a filter is started through a shim: the hpcrun binary
// again (/proc/self/exe works after pivot_root), as RlimitArg0, which
// sets the limits, installs the filter and execs the command at once.

// RlimitArg0 is argv[0] of the pre-exec shim; cmd/hpcrun hands control
// to RunRlimitShim as soon as it sees it.
const RlimitArg0 = "hpcrun-rlimit"

// withShim returns the path and argv that start path with args under
// cfg's rlimits and seccomp filter: path itself when there are none.
func withShim(cfg *initConfig, path string, args []string) (string, []string) {
	if len(cfg.Rlimits) == 0 && cfg.Seccomp == "" {
		return path, args
	}
	argv := []string{RlimitArg0, strconv.Itoa(len(cfg.Rlimits))}
	for _, r := range cfg.Rlimits {
		argv = append(argv, strconv.Itoa(r.Resource), strconv.FormatUint(r.Soft, 10), strconv.FormatUint(r.Hard, 10))
	}
	argv = append(argv, cfg.Seccomp, cfg.shimPrivileges())
	return "/proc/self/exe", append(append(argv, path), args...)
}

// forkExec starts path with args, under cfg's limits and filter.
func forkExec(cfg *initConfig, path string, args []string, attr *syscall.ProcAttr) (int, error) {
	path, args = withShim(cfg, path, args)
	return syscall.ForkExec(path, args, attr)
}

// RunRlimitShim sets the limits in os.Args, installs the seccomp filter
// there, if any (then drops privileges, where the init left that to it),
// and execs the command. It never returns; a failure exits
// 125 (126 when the exec fails).
func RunRlimitShim() {
	// The filter is the calling thread's: it must be the one that execs.
	goruntime.LockOSThread()
	fail := func(code int, msg string) {
		os.Stderr.WriteString("hpcrun: " + msg + "\n")
		os.Exit(code)
	}
	a := os.Args[1:]
	n, err := strconv.Atoi(first(a))
	if err != nil || len(a) < 1+3*n+4 {
		fail(StatusFailed, "rlimit shim: bad arguments")
	}
	for i := 0; i < n; i++ {
		res, _ := strconv.Atoi(a[1+3*i])
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
	fail(StatusNotExecutable, execError(rest[1], err).Error())
}

func first(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return a[0]
}
