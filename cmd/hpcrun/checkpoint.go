package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// newCheckpointCommand saves a running job with criu.
func newCheckpointCommand(so *stateOptions) *cobra.Command {
	var leave bool
	cmd := verb(so, "checkpoint [--leave-running] ID DIR", "Save a running job to DIR, to go on later with --restore",
		`checkpoint saves the job of container ID (a --name, a detached container, or a
run under Slurm, slurm-JOB.STEP.TASK) with criu, into DIR, which must not
exist, and ends it; with --leave-running the job goes on. hpcrun --restore DIR
continues it, in the same image with the same binds, on this node or one of the
same CPU type:

  hpcrun --restore DIR

criu runs inside the container, in its namespaces, with no root and nothing
installed by the admin: the image's own criu (4.1 or newer; Debian 13's criu
package), or a static build that the config's criu key or `+launch.CriuEnv+` names.
It needs Linux 5.9 or newer (hpcrun check says). Not saved: TCP connections,
SysV shared memory, GPU state, an MPI step's tasks; a job at a terminal or
under a seccomp filter is refused. Besides its stdout and stderr, which may
grow, a job's open files must be unchanged at a restore: a periodic checkpoint
(--leave-running) of a job that goes on writing another file may not restore.
DIR holds criu's images and hpcrun.json, what the restore checks; it appears
only once complete.

`+helptext.ExitStatus(helptext.Done("the job was saved (and ended, without --leave-running)"),
			helptext.Failed("no such container, one not running, DIR exists, no criu or an old one, an old kernel, a job criu cannot dump")),
		`  hpcrun checkpoint job1 ckpt
  hpcrun checkpoint --leave-running slurm-1234.0.0 $SCRATCH/ckpt.$(date +%s)`,
		cobra.ExactArgs(2), func(c *runtime.Containers, args []string) error {
			cp, size, err := launch.CheckpointContainer(c, args[0], args[1], leave)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "hpcrun: checkpointed %s (pid %d, criu %s) to %s: %.1f MiB\n", args[0], cp.Pid, cp.Criu, args[1], float64(size)/(1<<20))
			return nil
		})
	cmd.Flags().BoolVar(&leave, "leave-running", false, "keep the job running after the checkpoint")
	return cmd
}
