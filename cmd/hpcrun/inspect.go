package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
)

func newInspectCommand(g *globalOptions) *cobra.Command {
	var o cacheOptions
	var reg registryOptions
	r := launch.InspectRequest{}
	cmd := &cobra.Command{
		Use:   "inspect [--format table|json] [--platform OS/ARCH] REF",
		Short: "Show an image's digest, layers and config without unpacking it",
		Long: `inspect shows what an image is: its digest, platform, creation time, layers
and their sizes, Entrypoint, Cmd, Env, WorkingDir, User and labels, and where
this node's cache holds it unpacked, with its size on disk. It reads only the
image's manifest and config, and unpacks nothing.

REF is what --image takes: an OCI or docker archive, an OCI layout DIR[:TAG],
or docker://REF (read from the cache when a pull or a run fetched it, else
from the registry: two small requests); or the digest of a cached image, 6
hex digits or more (see hpcrun images). --platform picks an image of a
multi-platform index (default: this node's). --format json prints the same as
one JSON object for scripts; its field names stay as they are. Text from the
image (labels, Env) is printed with control characters escaped.

` + helptext.ExitStatus(helptext.Done("the image was described"),
			helptext.Failed("a missing or unreadable file, not an image, no such cached digest, a registry that "+
				"refused or could not be reached, a bad flag")),
		Example: `  hpcrun inspect py3.tar
  hpcrun inspect --format json docker://python:3.12 | jq -r .digest
  hpcrun inspect sha256:d6e51c10`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Ref, r.Cache, r.Insecure, r.CAFile = args[0], o.dir, reg.insecure(), reg.caFile
			return launch.Inspect(cmd.Context(), r, launch.HostFacts(), os.Stdout, g.log())
		},
	}
	o.AddFlags(cmd)
	cmd.Flags().StringVar(&r.Format, "format", "table", "the output `FORMAT`: table or json")
	cmd.Flags().StringVar(&r.Platform, "platform", "", "take `OS/ARCH[/VARIANT]` from a multi-platform image (default: this node's)")
	reg.AddFlags(cmd.Flags())
	return cmd
}
