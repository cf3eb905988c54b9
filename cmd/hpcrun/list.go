package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// newListCommand lists the containers under the state root.
func newListCommand(so *stateOptions) *cobra.Command {
	var list struct {
		quiet  bool
		format string
	}
	listCmd := verb(so, "list [-q] [--format table|json]", "List your containers on this node",
		`list shows the containers under --root: named runs (--name, and every run
under Slurm or PBS), detached ones and those of the OCI verbs (create, run),
with the image each runs in, how long ago it was made, and its owner. JSON
gives the raw fields (created as a time, owner as a uid) and the image.
A stopped one of --name or --detach stays, with its log and exit status
(hpcrun state ID), until hpcrun delete ID, as an OCI container does; the
next hpcrun sweeps a stopped run that only the batch system named.

`+helptext.ExitStatus(helptext.Done("the list was printed (no containers lists none)"),
			helptext.Failed("a bad flag or --format, a state root that cannot be read")),
		`  hpcrun list
  hpcrun list -q
  hpcrun list --format json`,
		cobra.NoArgs, func(c *runtime.Containers, _ []string) error {
			all, err := c.List()
			if err != nil {
				return err
			}
			switch {
			case list.format == "json":
				return runtime.WriteStatesJSON(os.Stdout, all)
			case list.format != "table" && list.format != "":
				return launch.UsageError{Err: fmt.Errorf("--format %q: want table or json", list.format)}
			case list.quiet:
				for _, s := range all {
					fmt.Println(termsafe.Escape(s.ID))
				}
				return nil
			}
			return runtime.WriteStates(os.Stdout, all)
		})
	listCmd.Flags().BoolVarP(&list.quiet, "quiet", "q", false, "print only the IDs")
	listCmd.Flags().StringVarP(&list.format, "format", "f", "table", "`table` or json")
	return listCmd
}
