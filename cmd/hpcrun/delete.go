package main

import (
	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/runtime"
)

// newDeleteCommand removes a stopped container.
func newDeleteCommand(so *stateOptions) *cobra.Command {
	var force bool
	deleteCmd := verb(so, "delete [--force] ID", "Delete a stopped container's state",
		`delete removes container ID, which must be stopped; with --force a created
or running one is killed first. The bundle's poststop hooks run then; one
that fails is a warning.

`+helptext.ExitStatus(helptext.Done("the container's state was removed"),
			helptext.Failed("no such container, or a created, running or paused one without --force")),
		`  hpcrun delete job1
  hpcrun delete --force job1       # kill it first if it runs`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Delete(args[0], force) })
	deleteCmd.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")
	return deleteCmd
}
