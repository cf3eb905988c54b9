// Package early starts what must not wait for the rest of hpcrun to
// initialize: for a command line that runs a job, the clone of its
// container init.
//
// Go initializes packages in dependency order and, among those ready, in
// the order of their import paths (fixed when the binary is linked). This
// package imports os, strings and package initclone, which needs little
// more (os/signal, x/sys/unix, internal/fallback), and its path sorts
// before the rest of hpcrun's: its init function runs after the standard
// library's early packages (crypto, encoding/json, runtime-spec's types)
// but before package runtime, cobra, pflag, yaml.v3, regexp and net, so
// the init's start overlaps their initialization (TestInitOrder in
// cmd/hpcrun keeps it so). The stages that the binary runs when
// re-executed (the init itself, the pre-exec shim) start from package
// stage, which needs package runtime.
package early

import (
	"os"
	"strings"
	"time"

	"github.com/hpcrun/hpcrun/runtime/initclone"
)

// Clone is the container init cloned for this command line, for package
// runtime to adopt; nil for none. The clone waits for the child's exec:
// done from another thread, beside the rest of the start, it was slower
// (the fork and the start's page faults contend for the same memory).
var Clone *initclone.Clone

// notJobs are the first words that never run a job: the subcommands and
// help (cmd/hpcrun's TestNotJobsListsEverySubcommand keeps the list whole).
var notJobs = map[string]bool{
	"spec": true, "images": true, "rmi": true, "prune": true, "config": true, "pull": true, "login": true, "logout": true, "check": true,
	"create": true, "start": true, "state": true, "kill": true, "delete": true, "run": true, "list": true,
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
		name, _, hasValue := strings.Cut(args[0], "=")
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

// Version is hpcrun's version, stamped by the Makefile.
var Version = "dev"

// Started is when this package was initialized: the origin of -v's clock,
// before the clone of the init.
var Started time.Time

func init() {
	Started = time.Now()
	if len(os.Args) == 0 || initclone.IsStage(os.Args[0]) {
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		// What cobra's version template prints, before the packages
		// that the rest of hpcrun needs are initialized.
		os.Stdout.WriteString("hpcrun " + Version + "\n")
		os.Exit(0)
	}
	// A job at a terminal gets a pty of its own, which package runtime
	// makes before it clones the init.
	if MayRunJob(os.Args[1:]) && !isTest(os.Args[1:]) && !initclone.IsTerminal(os.Stdin) {
		Clone = initclone.Start(initclone.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, false, initclone.InitCaps, nil)
	}
}

// isTest reports whether this is a test binary (go test passes -test.*
// flags), which must not clone itself as an init.
func isTest(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-test.") {
			return true
		}
	}
	return false
}
