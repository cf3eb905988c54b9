package main

import (
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// newKillCommand signals a container's process, or all of them.
func newKillCommand(so *stateOptions) *cobra.Command {
	var killAll bool
	killCmd := verb(so, "kill [--all] ID [SIGNAL]", "Send a signal to a container's process",
		`kill sends SIGNAL (default TERM; a name, with or without SIG, or a number) to
the process of container ID, or with --all to every process in it. A created
container, whose process has not started, ends.

`+helptext.ExitStatus(helptext.Done("the signal was sent"),
			helptext.Failed("no such container, one that has stopped, an unknown signal")),
		`  hpcrun kill job1                 # TERM
  hpcrun kill job1 USR1
  hpcrun kill --all job1 KILL      # every process in it`,
		cobra.RangeArgs(1, 2), func(c *runtime.Containers, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = runtime.ParseSignal(args[1]); err != nil {
					return launch.UsageError{Err: err}
				}
			}
			return c.Kill(args[0], sig, killAll)
		})
	killCmd.Flags().BoolVarP(&killAll, "all", "a", false, "signal every process in the container")
	return killCmd
}
