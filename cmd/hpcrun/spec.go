package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
)

func newSpecCommand(g *globalOptions) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "spec (--image REF | --rootfs DIR) [flags] [-- CMD [ARGS...]]",
		Short: "Print the OCI runtime config (config.json) of a job",
		Long: `spec prints the OCI runtime-spec config.json that hpcrun generates for a job,
with the same flags as a run. CMD defaults to the image's Entrypoint and Cmd,
else sh. With --image, the image is unpacked into the cache (or found there)
and root.path is its rootfs; spec does not keep it in use, so hpcrun rmi or
prune may remove it while runc runs the bundle.

runc and crun can run it as is from a bundle (a directory with config.json and
the rootfs), rootless. Those runtimes insist on mapping uid 0, so the printed
config maps you to root inside, as --fakeroot does; hpcrun itself keeps your
uid unless you ask for --fakeroot. The generated /etc/passwd and /etc/group
are hpcrun's own and are not part of the config.

` + helptext.ExitStatus(helptext.Done("the config was printed"),
			helptext.Failed("a bad flag, --writable-tmpfs, no --image or --rootfs, an image that cannot be "+
				"opened or unpacked, a missing bind source, a bad config file")),
		Example: `  mkdir -p bundle && cp -a ./rootfs bundle/rootfs
  hpcrun spec --rootfs bundle/rootfs -- sh -c 'echo hello' > bundle/config.json
  runc --root /tmp/runc-$UID run --bundle bundle demo`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			spec, err := launch.Spec(ctx, o.request(cmd.Flags(), args), g.log())
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "\t")
			return enc.Encode(spec)
		},
	}
	cmd.Flags().SetInterspersed(false)
	o.AddFlags(cmd.Flags())
	cmd.Flags().MarkHidden("fakeroot")
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}
