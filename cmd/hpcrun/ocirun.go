package main

import (
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// newOCIRunCommand is runc's run: create and start a container from a
// bundle, and by default wait for it.
func newOCIRunCommand(so *stateOptions) *cobra.Command {
	var run struct {
		bundleOptions
		detach, keep bool
	}
	runCmd := verb(so, "run [--bundle DIR] [-d] [--pid-file FILE] ID", "Create and start a container from an OCI bundle",
		`run creates container ID from the bundle and starts it. Without -d it waits
for the process, passes on signals, deletes the container and exits with the
process's status; with -d it returns at once.

`+helptext.JobStatus("the process", "its command", "a bad flag, a bundle without a usable config.json or rootfs, an "+
			"ID that exists already or is not a valid name, user namespaces disabled",
			helptext.Status("0", "with -d: the process was started")),
		`  hpcrun run --bundle bundle job1
  hpcrun run -d --bundle bundle --pid-file job1.pid job1
  hpcrun --root /tmp/hpcrun-oci-$UID run --keep --bundle bundle job1   # as examples/slurm/oci.conf does`,
		func(cmd *cobra.Command, args []string) error {
			if err := launch.RunHint(run.bundle, args); err != nil && !cmd.Flags().Changed("bundle") {
				return err
			}
			return exactID(cmd, args)
		}, func(c *runtime.Containers, args []string) error {
			id := args[0]
			// Caught from the start: a signal before the process runs is
			// passed on once it does, not the end of hpcrun.
			var sigs chan os.Signal
			if !run.detach {
				sigs = make(chan os.Signal, 8)
				signal.Notify(sigs, runtime.ForwardedSignals...)
				defer signal.Stop(sigs)
			}
			if err := run.create(c, id); err != nil {
				return err
			}
			if err := c.Start(id); err != nil {
				c.Delete(id, true)
				return err
			}
			if run.detach {
				return nil
			}
			code, err := c.WaitForeground(id, !run.keep, sigs)
			if err != nil {
				return err
			}
			return exitError{code}
		})
	run.AddFlags(runCmd.Flags())
	runCmd.Flags().BoolVarP(&run.detach, "detach", "d", false, "return once the container runs")
	runCmd.Flags().BoolVar(&run.keep, "keep", false, "leave the stopped container for delete, as Slurm's oci.conf wants (it queries and deletes it itself)")
	return runCmd
}
