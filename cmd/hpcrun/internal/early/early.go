// Package early hands the container init that package first cloned, for a
// command line that runs a job, to package runtime (runtime.Adopt), and
// clones it itself where package first could not (see there).
//
// Go initializes packages in dependency order and, among those ready, in
// the order of their import paths (fixed when the binary is linked). This
// package imports os, os/signal and package initclone, and its path sorts
// before the rest of hpcrun's: its init function runs after the standard
// library's early packages (crypto, encoding/json, runtime-spec's types)
// but before package runtime, cobra, pflag, yaml.v3, regexp and net
// (TestInitOrder in cmd/hpcrun keeps it so). The stages that the binary
// runs when re-executed (the init itself, the pre-exec shim) start from
// package stage, which needs package runtime.
package early

import (
	"os"
	"syscall"
	"time"

	"github.com/hpcrun/hpcrun/cmd/hpcrun/internal/first"
	"github.com/hpcrun/hpcrun/runtime/initclone"
	"github.com/hpcrun/hpcrun/runtime/initclone/rawclone"
)

// Clone is the container init cloned for this command line, for package
// runtime to adopt; nil for none. The clone waits for the child's exec:
// done from another thread, beside the rest of the start, it was slower
// (the fork and the start's page faults contend for the same memory).
var Clone *initclone.Clone

// Started is the origin of -v's clock: when package first was
// initialized, before the clone of the init.
var Started time.Time

func init() {
	// first's times are of the monotonic clock, as time.Now's monotonic
	// reading is.
	now, mono := time.Now(), rawclone.Now()
	Started = now
	if first.Started != 0 {
		Started = now.Add(time.Duration(first.Started - mono))
	}
	if first.Tried {
		var err error
		if first.Errno != 0 {
			err = syscall.Errno(first.Errno)
		}
		at := now.Add(time.Duration(first.At - mono))
		Clone = initclone.Adopt(first.Pid, err, first.Control, first.Status, at)
		return
	}
	version, job := first.Decide(os.Args, func() bool { return initclone.IsTerminal(os.Stdin) })
	if version {
		os.Stdout.WriteString(first.VersionLine())
		os.Exit(0)
	}
	if job {
		first.JobFront()
		Clone = initclone.Start(initclone.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, false, initclone.InitCaps, nil)
	}
}
