package runtime

// A bundle's process.capabilities, granted as rootless runc grants them:
// all of them, acting only inside the container's user namespace, on
// what that namespace owns. hpcrun's own jobs ask for none (or, with
// --fakeroot, fakerootCaps), and keep what they ask for.
//
// The init holds, as ambient capabilities from its clone, initCaps and
// every capability the spec names; it lowers its main thread to the
// spec's sets before it forks the job (see dropPrivileges), so no process
// of the container gets more than its spec grants.
//
// A process that holds CAP_SYS_PTRACE in the container's user namespace
// passes the kernel's ptrace check on the init, whose memory belongs to
// that namespace too: being undumpable does not stop such a process. Such
// a process is therefore started in a Landlock domain of its own (see
// fenceSelf), and Landlock lets no process in a domain ptrace one outside
// it, whatever its capabilities. Where the kernel has no Landlock that can
// do this without also refusing mounts, CAP_SYS_PTRACE is not granted.

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capSetsOf lists a spec's capability sets with their names, in the
// order the runtime-spec gives them.
func capSetsOf(c *specs.LinuxCapabilities) []struct {
	name  string
	names *[]string
} {
	return []struct {
		name  string
		names *[]string
	}{
		{"bounding", &c.Bounding}, {"effective", &c.Effective}, {"inheritable", &c.Inheritable},
		{"permitted", &c.Permitted}, {"ambient", &c.Ambient},
	}
}

// checkBundleCaps checks a bundle's process.capabilities for a kernel
// whose last capability is last, and removes what cannot be granted: a
// capability this kernel does not have (a warning, as runc gives), and
// CAP_SYS_PTRACE where fence is false (the kernel cannot keep such a
// process off the init). A name that is no capability at all is an
// error. It returns what is not granted, for CreateBundle's warning.
func checkBundleCaps(c *specs.LinuxCapabilities, last int, fence bool) ([]string, error) {
	if c == nil {
		return nil, nil
	}
	var lacking []string
	ptrace := false
	for _, set := range capSetsOf(c) {
		kept := (*set.names)[:0:0]
		for _, n := range *set.names {
			num, ok := capNames[strings.ToUpper(n)]
			switch {
			case !ok:
				return nil, fmt.Errorf("process.capabilities.%s: unknown capability %q; use the names of capabilities(7), such as CAP_NET_ADMIN", set.name, n)
			case num > last:
				if !slices.Contains(lacking, strings.ToUpper(n)) {
					lacking = append(lacking, strings.ToUpper(n))
				}
			case num == unix.CAP_SYS_PTRACE && !fence:
				ptrace = true
			default:
				kept = append(kept, n)
			}
		}
		*set.names = kept
	}
	var warns []string
	if len(lacking) > 0 {
		warns = append(warns, strings.Join(lacking, "/")+" (not in this kernel)")
	}
	if ptrace {
		warns = append(warns, "CAP_SYS_PTRACE (this kernel cannot fence a process that holds it off the init: that takes Landlock ABI 6, Linux 6.12)")
	}
	return warns, nil
}

// lastCap is the kernel's last capability number.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	return n
}

// initCapsFor is what the init of a container for spec holds: initCaps,
// and every capability the spec asks for, which it must hold to grant.
func initCapsFor(s *specs.Spec) []uintptr {
	if s == nil || s.Process == nil || s.Process.Capabilities == nil {
		return initCaps
	}
	var want uint64
	for _, set := range capSetsOf(s.Process.Capabilities) {
		m, _ := capMask(*set.names)
		want |= m
	}
	caps := slices.Clone(initCaps)
	for _, c := range initCaps {
		want &^= 1 << c
	}
	for n := uintptr(0); n < 64; n++ {
		if want&(1<<n) != 0 {
			caps = append(caps, n)
		}
	}
	return caps
}

// needsFence reports whether a process with these sets may hold
// CAP_SYS_PTRACE, and so must start fenced off from the init.
func needsFence(c capSets) bool {
	return (c.Bounding|c.Effective|c.Permitted|c.Inheritable|c.Ambient)&(1<<unix.CAP_SYS_PTRACE) != 0
}

// fenceResource is the pseudo-limit in an init's rlimits that makes the
// process shim fence the process in (see rlimit_linux.go).
const fenceResource = -1

// landlockScopeABI is the first Landlock ABI with scopes: a domain that
// restricts no file access (which would refuse the process every mount),
// only signals to processes outside it.
const landlockScopeABI = 6

// fenceAvailable reports whether this kernel can fence a process in.
func fenceAvailable() bool {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	return errno == 0 && int(abi) >= landlockScopeABI
}

// fenceSelf puts the calling thread, which is about to execve the
// process, in a Landlock domain of its own. Landlock then refuses it, and
// everything it starts, ptrace of any process outside the domain (the
// init, hpcrun's reapers), and the reads of /proc/PID/mem, environ and fd
// that take the same check, whatever capabilities it holds. The domain
// restricts nothing else but signals to processes outside it. Landlock
// wants no_new_privs or CAP_SYS_ADMIN; without the latter, no_new_privs is
// set.
func fenceSelf() error {
	attr := unix.LandlockRulesetAttr{Scoped: unix.LANDLOCK_SCOPE_SIGNAL}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), 24, 0)
	if errno != 0 {
		return fmt.Errorf("create a Landlock domain to fence the process off the init: %w", errno)
	}
	defer unix.Close(int(fd))
	_, _, errno = unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0)
	if errno == unix.EPERM {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
		_, _, errno = unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0)
	}
	if errno != 0 {
		return fmt.Errorf("fence the process off the init (Landlock): %w", errno)
	}
	return nil
}
