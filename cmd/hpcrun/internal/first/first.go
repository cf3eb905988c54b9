// Package first is the first of hpcrun's packages that Go initializes: it
// imports only package rawclone, which imports nothing, and the Go
// runtime, so its init
// function runs before the standard library's packages (os, crypto,
// encoding/json) and the rest of hpcrun's (see rawclone). From there it
// answers --version, and for a command line that runs a job it clones the
// job's container init, whose start then overlaps the initialization of
// everything else. Package early adopts the clone; where this package
// cannot clone (rawclone.Supported is false, or /proc/self/cmdline cannot
// be read), package early clones instead, a little later.
//
// What it reads of the command line (MayRunJob, IsVersion, IsTest) is a
// first guess, which cmd/hpcrun's classify settles: a wrong guess costs
// an aborted clone.
package first

import (
	goruntime "runtime"

	"github.com/hpcrun/hpcrun/runtime/initclone/rawclone"
)

// Version is hpcrun's version, stamped by the Makefile.
var Version = "dev"

// The clone made here, for package early to adopt.
var (
	// Tried is set when this package cloned an init, or failed to.
	Tried bool
	// Pid is the init's pid; Errno why the clone failed, if it did.
	Pid   int
	Errno uintptr
	// Control and Status are our ends of the init's pipes, -1 if none.
	Control, Status = -1, -1
	// Started is when this package was initialized, and At when the
	// clone returned, as rawclone.Now reads the monotonic clock; 0 where
	// rawclone.Supported is false.
	Started, At int64
)

// maxCmdline bounds what is read of /proc/self/cmdline and environ; a
// longer command line or environment leaves the clone to package early.
const maxCmdline = 4 << 20

func init() {
	if !rawclone.Supported {
		return
	}
	Started = rawclone.Now()
	args, ok := split(rawclone.ReadFile("/proc/self/cmdline", maxCmdline))
	if !ok {
		return
	}
	version, job := Decide(args, func() bool { return rawclone.IsTerminal(0) })
	if version {
		rawclone.WriteExit(1, VersionLine(), 0)
	}
	if !job {
		return
	}
	env, ok := split(rawclone.ReadFile("/proc/self/environ", maxCmdline))
	if !ok {
		return
	}
	Tried = true
	JobFront()
	cfgR, cfgW, errno := rawclone.Pipe()
	if errno != 0 {
		Errno = errno
		return
	}
	statR, statW, errno := rawclone.Pipe()
	if errno != 0 {
		rawclone.Close(cfgR)
		rawclone.Close(cfgW)
		Errno = errno
		return
	}
	// Only the main goroutine runs yet, and nothing else opens
	// descriptors that the child could inherit (syscall.ForkLock's
	// purpose).
	Pid, Errno = rawclone.Spawn(rawclone.InitAttr([]int{0, 1, 2, cfgR, statW}, testSwitch(env), rawclone.InitCaps, false))
	At = rawclone.Now()
	rawclone.Close(cfgR)
	rawclone.Close(statW)
	if Errno != 0 {
		rawclone.Close(cfgW)
		rawclone.Close(statR)
		return
	}
	Control, Status = cfgW, statR
}

// JobFront sets up the Go runtime for the front of a job, which waits for
// it: one P. Its work is sequential, and an idle P would only start
// threads and spin them, which takes CPU time from the container's init
// on a small node (measured: 5% of a warm start on 2 CPUs). What needs
// parallel work, unpacking and pulling, runs in hpcrun-unpack. Done as
// early as here, it is also cheaper: the P given up has cached little.
func JobFront() { goruntime.GOMAXPROCS(1) }

// split cuts the NUL-terminated strings of /proc/self/cmdline or environ.
func split(b []byte, ok bool) ([]string, bool) {
	if !ok {
		return nil, false
	}
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out, true
}

// testSwitch is the caller's internal/fallback test switch, which the init
// gets too, from env.
func testSwitch(env []string) []string {
	for _, e := range env {
		if hasPrefix(e, rawclone.TestSwitchEnv+"=") {
			return []string{e}
		}
	}
	return nil
}

// Decide says what the command line args (argv[0] first) asks of this
// package, or of package early where this one cannot clone: the version
// alone, or the clone of a job's init. Not for a re-executed stage, nor a
// test binary, nor a job at a terminal (stdinTerminal), which gets a pty
// of its own that package runtime makes before it clones the init.
func Decide(args []string, stdinTerminal func() bool) (version, job bool) {
	if len(args) == 0 || rawclone.IsStage(args[0]) {
		return false, false
	}
	if IsVersion(args[1:]) {
		return true, false
	}
	return false, MayRunJob(args[1:]) && !IsTest(args[1:]) && !stdinTerminal()
}

// IsVersion reports whether args (after argv[0]) ask for the version alone.
func IsVersion(args []string) bool { return len(args) == 1 && args[0] == "--version" }

// VersionLine is what `hpcrun --version` prints: cobra's version template.
func VersionLine() string { return "hpcrun " + Version + "\n" }

// IsTest reports whether args are a test binary's (go test passes -test.*
// flags), which must not clone itself as an init.
func IsTest(args []string) bool {
	for _, a := range args {
		if hasPrefix(a, "-test.") {
			return true
		}
	}
	return false
}

// notJobs are the first words that never run a job: the subcommands and
// help (cmd/hpcrun's TestNotJobsListsEverySubcommand keeps the list whole).
var notJobs = map[string]bool{
	"spec": true, "images": true, "rmi": true, "prune": true, "config": true, "pull": true, "login": true, "logout": true, "check": true,
	"create": true, "start": true, "state": true, "kill": true, "checkpoint": true, "delete": true, "run": true, "list": true,
	"exec": true, "ps": true, "pause": true, "resume": true, "events": true, "shell": true, "inspect": true,
	"help": true, "completion": true, "-h": true, "--help": true, "--version": true,
	// cobra's hidden commands that completion scripts run, and the man
	// pages' of a gendocs build.
	"__complete": true, "__completeNoDesc": true, "__gendocs": true,
}

// globalFlags are the flags that may come before a subcommand (runc's
// command lines put --root first), with whether each takes a value.
var globalFlags = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--rootless": true,
	"--debug": false, "--systemd-cgroup": false, "-v": false, "--verbose": false, "-q": false, "--quiet": false,
}

// MayRunJob is a cheap first guess that args run a job: the first word
// after the global flags is not a subcommand. A wrong guess costs an
// aborted clone, as for `hpcrun --rootfs r` with no command.
func MayRunJob(args []string) bool {
	for len(args) > 0 {
		name, hasValue := args[0], false
		if i := index(name, '='); i >= 0 {
			name, hasValue = name[:i], true
		}
		takesValue, global := globalFlags[name]
		if !global {
			break
		}
		args = args[1:]
		if takesValue && !hasValue && len(args) > 0 {
			args = args[1:]
		}
	}
	return len(args) > 0 && !notJobs[args[0]]
}

// IsSubcommandOrHelp reports whether a first word is in the list.
func IsSubcommandOrHelp(word string) bool { return notJobs[word] }

// Words is the list, for the test that keeps it equal to the command
// tree's.
func Words() []string {
	w := make([]string, 0, len(notJobs))
	for k := range notJobs {
		w = append(w, k)
	}
	return w
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

func index(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
