package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/runtime"
)

// newStateCommand prints a container's OCI state.
func newStateCommand(so *stateOptions) *cobra.Command {
	stateCmd := verb(so, "state ID", "Print a container's state as OCI runtime-spec JSON",
		`state prints the state of container ID: its status (creating, created,
running, paused or stopped), the pid of its init and its bundle; once it has
stopped, the job's exit status (exitStatus), and for a detached run the
path of its log (log).

`+helptext.ExitStatus(helptext.Done("the state was printed, whatever the status"), helptext.Failed("no such container")),
		`  hpcrun state job1
  hpcrun --root /tmp/hpcrun-oci-$UID state job1`,
		exactID, func(c *runtime.Containers, args []string) error {
			s, err := c.Load(args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(s.OCI())
		})
	return stateCmd
}
