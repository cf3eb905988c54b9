package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/check"
	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
)

// checkOptions are the flags of hpcrun check.
type checkOptions struct {
	cacheDir string
	json     bool
}

func (o *checkOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.cacheDir, "cache", "", "check this cache `DIR` (default: as for a run; see hpcrun config)")
	f.BoolVar(&o.json, "json", false, "print the results as JSON")
}

func newCheckCommand(so *stateOptions) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check [--cache DIR] [--json]",
		Short: "Diagnose this node: what will and will not work, and the fix for each",
		Long: `check diagnoses this node for hpcrun and prints one line per check: its
status, its name and what it found; under each warning or failure, a line
with the fix. It changes nothing: the namespaces it tries are thrown away,
and a missing cache is not created.

  config           the config files load
  kernel           the running kernel's version
  user namespaces  the sysctls that can block them (user.max_user_namespaces,
                   kernel.unprivileged_userns_clone,
                   kernel.apparmor_restrict_unprivileged_userns,
                   user.max_mnt_namespaces, user.max_pid_namespaces), and a
                   real try: a child in new user, mount and pid namespaces
                   that mounts a tmpfs and a fresh /proc; the errno if not
  overlayfs        an overlay mounted in a user namespace, as --writable-tmpfs
                   needs (Linux 5.11 or later)
  image cache      the cache a run would use (--cache, $HPCRUN_CACHE, the
                   config's, else hpcrun-$UID in node-local scratch): yours,
                   writable, its filesystem, whether node-local, free space
  container state  where named containers keep their state (--root, else
                   $XDG_RUNTIME_DIR/hpcrun, else /tmp/hpcrun-$UID/run): yours
                   and writable, for --name, --detach, exec and the shared
                   container of a step's tasks
  NVIDIA GPU,      the driver that --gpu or --rocm would bind, and the GPU
  AMD GPU          selection variables; a node without one gets one "GPU"
                   info line
  scheduler        the Slurm or PBS job that the environment describes

A status is ok; warn (containers run, but a feature will not work, or works
badly); fail (no container can run here until it is fixed); or info (a fact).
Run it where the jobs run: on a compute node, inside a job.

` + helptext.ExitStatus(helptext.Done("containers can run on this node; there may be warnings"),
			helptext.Status("1", "a check failed: user namespaces, the image cache or the config"),
			helptext.Failed("a bad flag")),
		Example: `  hpcrun check
  srun -N1 hpcrun check                              # on a compute node, in a job
  hpcrun check --cache /scratch/$USER/hpcrun
  hpcrun check --json | jq -r '.results[] | select(.fix) | .fix'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(os.Stdout, launch.CheckEnv(launch.HostFacts(), o.cacheDir, so.root), o.json)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}

// runCheck prints the diagnosis; a failed check ends hpcrun with status 1.
func runCheck(w io.Writer, e check.Env, asJSON bool) error {
	rs := check.Run(e)
	if err := check.Report(w, rs, asJSON); err != nil {
		return err
	}
	if check.Failed(rs) {
		return exitError{1}
	}
	return nil
}
