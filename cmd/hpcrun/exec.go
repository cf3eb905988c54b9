package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// newExecCommand runs a process in a running container.
func newExecCommand(so *stateOptions) *cobra.Command {
	var ex struct {
		tty bool
		env []string
		cwd string
	}
	execCmd := verb(so, "exec [-t] [--env K=V]... [--cwd DIR] ID CMD [ARGS...]", "Run a process in a running container",
		`exec runs CMD inside container ID, in its namespaces, as its process's user,
with your stdio, and exits with CMD's status. Signals to exec go to CMD.
-t gives CMD a terminal of its own. In a container that hpcrun runs from an
image with Apptainer's /.singularity.d/env scripts (a SIF), CMD gets the
environment they make, as the job did.

`+helptext.JobStatus("CMD", "CMD", "no such container, or one that is not running, a bad flag"),
		`  hpcrun exec db sh -c 'ps; df -h /tmp'
  hpcrun exec -t db sh
  hpcrun exec --env OMP_NUM_THREADS=4 --cwd /data job1 ./post.sh
  srun --overlap --jobid=1234 hpcrun exec slurm-1234.0.0 nvidia-smi`,
		cobra.MinimumNArgs(2), func(c *runtime.Containers, args []string) error {
			if _, err := c.Load(args[0]); err != nil && launch.IsImageFile(args[0]) {
				return launch.ExecHint(args[0], args[1:]) // apptainer exec IMG CMD
			}
			code, err := launch.ExecIn(c, args[0], runtime.Process{Args: args[1:], Env: ex.env, Cwd: ex.cwd, TTY: ex.tty},
				runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, launch.IsTerminal(os.Stdin))
			if err != nil {
				return err
			}
			return exitError{code}
		})
	execCmd.Flags().SetInterspersed(false)
	execCmd.Flags().BoolVarP(&ex.tty, "tty", "t", false, "give the process a terminal")
	execCmd.Flags().StringArrayVarP(&ex.env, "env", "e", nil, "set `K=V` for the process (repeatable)")
	execCmd.Flags().StringVar(&ex.cwd, "cwd", "", "the process's working `DIR` (default: the container's)")
	return execCmd
}
