// Package rawclone clones the container's init with system calls of its
// own and imports no package at all. Go initializes packages in
// dependency order and, among those ready, in the order of their import
// paths; a package with no imports is ready from the start, so one that
// clones from its init function through this package does so before the
// standard library's packages and hpcrun's are initialized (measured: a
// third of a millisecond sooner than after os, crypto and encoding/json),
// and the init's own start overlaps theirs.
//
// The clone shares the caller's memory until the child's exec (CLONE_VM |
// CLONE_VFORK), as vfork does: syscall.ForkExec copies every page table
// of the caller for a child that clones a user namespace, which costs the
// child's exec and then a copy-on-write fault on every page the caller
// writes afterwards. The child runs a prepared list of system calls
// (clone_linux_amd64.s) and no Go code.
//
// Where Supported is false (other architectures), callers use
// syscall.ForkExec instead.
package rawclone

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

// InitCaps are the capabilities the init holds inside its user namespace,
// as ambient capabilities: without them the re-executed init runs as the
// caller's uid and execve drops every capability, so the first mount fails
// with EPERM. They act only on the caller's own files. The init drops
// them all before a job that keeps the caller's uid; a --fakeroot job keeps
// its spec's set, which must be among these: with no_new_privs, execve
// grants a root job no capability its parent did not have.
//
// CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE are criu's, which the init
// runs for hpcrun checkpoint and --restore; the latter only where the
// kernel knows it (Linux 5.9), or the clone's capset would fail.
var InitCaps = initCaps(capKnown(capCheckpointRestore))

func initCaps(checkpointRestore bool) []uintptr {
	caps := []uintptr{
		capSysAdmin, capSetpcap, capNetAdmin, capDacOverride,
		capFowner, capSetuid, capSetgid,
		// The rest of package runtime's fakerootCaps.
		capChown, capFsetid, capMknod, capNetRaw, capSetfcap,
		capNetBindService, capSysChroot, capKill, capAuditWrite,
		capSysPtrace,
	}
	if checkpointRestore {
		caps = append(caps, capCheckpointRestore)
	}
	return caps
}

// The kernel's numbers (linux/capability.h, linux/sched.h, signal.h):
// this package imports neither syscall nor x/sys/unix, whose tests check
// them (rawclone_test.go).
const (
	capChown             = 0
	capDacOverride       = 1
	capFowner            = 3
	capFsetid            = 4
	capKill              = 5
	capSetgid            = 6
	capSetuid            = 7
	capSetpcap           = 8
	capNetBindService    = 10
	capNetAdmin          = 12
	capNetRaw            = 13
	capSysChroot         = 18
	capSysPtrace         = 19
	capSysAdmin          = 21
	capMknod             = 27
	capAuditWrite        = 29
	capSetfcap           = 31
	capCheckpointRestore = 40

	CloneNewNS   = 0x20000
	CloneNewUser = 0x10000000
	CloneNewPID  = 0x20000000
	SIGKILL      = 9
)

// Attr is a clone: Path exec'd with Argv and Env in a child cloned with
// Flags (namespaces), with Files as its descriptors 0, 1, 2, ..., Caps as
// ambient capabilities and Pdeathsig as its parent-death signal. The
// child leads a session of its own.
type Attr struct {
	Path      string
	Argv, Env []string
	Files     []int
	Flags     uintptr
	Caps      []uintptr
	Pdeathsig int
}

// TestSwitchEnv is the variable of internal/fallback's test switch
// (fallback.Env, which this package cannot import), which the init gets
// as the caller has it.
const TestSwitchEnv = "HPCRUN_TEST_FALLBACK"

// InitAttr is the clone of a container's init: hpcrun's own binary, as
// InitArg0, in new user, mount and pid namespaces, with files as its
// descriptors 0, 1, 2, ..., env added to its environment, and caps. The id
// maps are written once the job's are known; until then the init waits for
// its config. Further namespaces (network, uts, ipc) the init unshares
// itself. If hpcrun dies, so does the init, and with it the pid
// namespace; unless it is detached.
func InitAttr(files []int, env []string, caps []uintptr, detached bool) *Attr {
	a := &Attr{
		Path: "/proc/self/exe",
		Argv: []string{InitArg0},
		// The init's work is sequential: one P spares the Go runtime
		// idle threads at start.
		Env:       append([]string{"GOMAXPROCS=1"}, env...),
		Files:     files,
		Flags:     CloneNewUser | CloneNewNS | CloneNewPID,
		Caps:      caps,
		Pdeathsig: SIGKILL,
	}
	if detached {
		a.Pdeathsig = 0
	}
	return a
}

// cstring is s as the kernel reads it.
func cstring(s string) ([]byte, bool) {
	b := make([]byte, len(s)+1)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return nil, false
		}
		b[i] = s[i]
	}
	return b, true
}
