package main

import (
	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/runtime"
)

// newStartCommand starts the process of a created container.
func newStartCommand(so *stateOptions) *cobra.Command {
	startCmd := verb(so, "start ID", "Start the process of a created container",
		`start runs the process of container ID, created by hpcrun create, and returns
without waiting for it; hpcrun state ID tells when it has stopped. The
bundle's startContainer hooks run in the container first, its poststart hooks
once the process runs; a poststart hook that fails is a warning.

`+helptext.ExitStatus(helptext.Done("the process was started"),
			helptext.Failed("no such container, or one that is not created (started already, or stopped), or a "+
				"startContainer hook that failed or timed out (the process never runs, and the container stops)"),
			helptext.Status("126", "the process's command exists in the container but cannot be executed; the "+
				"container stays created"),
			helptext.Status("127", "the process's command was not found in the container; the container stays created")),
		`  hpcrun create --bundle bundle job1
  hpcrun start job1`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Start(args[0]) })
	return startCmd
}
