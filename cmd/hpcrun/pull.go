package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/internal/unpacker"
	"github.com/hpcrun/hpcrun/launch"
)

// registryOptions are the flags for a registry's certificate.
type registryOptions struct {
	tlsVerify, skipVerify bool
	caFile                string
}

func (o *registryOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.tlsVerify, "tls-verify", true, "check a docker:// registry's TLS certificate; false also allows plain HTTP")
	f.BoolVar(&o.skipVerify, "insecure", false, "the same as --tls-verify=false")
	f.StringVar(&o.caFile, "ca-file", "", "trust the CAs in the PEM `FILE` for a docker:// registry, besides the system's (SSL_CERT_FILE replaces those)")
}

func (o *registryOptions) insecure() bool { return !o.tlsVerify || o.skipVerify }

func newPullCommand(g *globalOptions) *cobra.Command {
	var o cacheOptions
	var reg registryOptions
	var output, platform string
	cmd := &cobra.Command{
		Use:   "pull [--cache DIR] [--platform OS/ARCH] [-o FILE] REF",
		Short: "Pull an image from an OCI or Docker registry",
		Long: `pull fetches REF from its registry into this node's cache and unpacks it, so
that --image docker://REF then starts without the network. REF is
[REGISTRY/]REPOSITORY[:TAG|@DIGEST], with or without docker://; a name
without a registry is Docker Hub's (python:3.12 is
docker.io/library/python:3.12). pull always asks the registry where the tag
points now; --image docker://REF uses what the last pull or run found.

With -o FILE it writes the image as an OCI archive instead, for a cluster
without internet: copy FILE there and run --image FILE. Only the platform's
manifest and blobs are fetched (--platform picks another).

Blobs are checked against their digests and kept in the cache's blobs/
directory; an interrupted pull resumes where it stopped. Credentials come
from $REGISTRY_AUTH_FILE, ~/.docker/config.json (or $DOCKER_CONFIG) and
podman's auth.json; hpcrun login stores them, hpcrun logout removes them.

A registry's TLS certificate is checked against the system's CAs (or those
in $SSL_CERT_FILE, which replaces them); --ca-file adds the CAs of a site's
own registry, and --tls-verify=false (or --insecure) skips the check and
allows plain HTTP. --image docker:// takes the same flags.

` + helptext.ExitStatus(helptext.Done("the image was pulled and unpacked, or written to FILE"),
			helptext.Failed("a bad reference, the registry refused or failed (404, a login needed, a digest mismatch), no network, a full disk; run the pull again to resume")),
		Example: `  hpcrun pull python:3.12
  hpcrun --image docker://python:3.12 python3 -c 'print(1)'
  hpcrun pull -o py312.tar --platform linux/arm64 docker.io/library/python:3.12
  hpcrun pull ghcr.io/org/app@sha256:0b1c...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return launch.Pull(cmd.Context(), launch.PullRequest{Ref: args[0], Cache: o.dir, Platform: platform, Output: output,
				Insecure: reg.insecure(), CAFile: reg.caFile}, launch.HostFacts(), g.log())
		},
	}
	o.AddFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "write an OCI archive to `FILE` instead of unpacking")
	cmd.Flags().StringVar(&platform, "platform", "", "take `OS/ARCH[/VARIANT]` from a multi-platform image (default: this node's)")
	reg.AddFlags(cmd.Flags())
	return cmd
}

func newLoginCommand(g *globalOptions) *cobra.Command {
	var o cacheOptions
	var reg registryOptions
	var user string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "login [-u USER] [--password-stdin] REGISTRY",
		Short: "Store credentials for a registry",
		Long: `login checks a user name and password (or an access token) against REGISTRY
and stores them for pull and --image docker://: in $REGISTRY_AUTH_FILE when
it is set, else in ~/.docker/config.json ($DOCKER_CONFIG/config.json), mode
0600, in the form docker, podman and skopeo read. It asks on the terminal for
what is not given; in a script, pipe the password with --password-stdin.
Docker Hub is docker.io.

` + helptext.ExitStatus(helptext.Done("the registry took the credentials, and they were stored"),
			helptext.Failed("the registry refused them, could not be reached, or no terminal to ask on without --password-stdin")),
		Example: `  hpcrun login ghcr.io
  echo "$TOKEN" | hpcrun login -u alice --password-stdin registry.example.org:5000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return launch.Login(cmd.Context(), launch.LoginRequest{
				Registry: args[0], Cache: o.dir, User: user, PasswordStdin: fromStdin,
				Insecure: reg.insecure(), CAFile: reg.caFile,
			}, launch.HostFacts(), g.log())
		},
	}
	o.AddFlags(cmd)
	cmd.Flags().StringVarP(&user, "username", "u", "", "the user `NAME`")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password or token from stdin")
	reg.AddFlags(cmd.Flags())
	return cmd
}

func newLogoutCommand() *cobra.Command {
	var o cacheOptions
	cmd := &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Remove the stored credentials for a registry",
		Long: `logout removes the credentials that hpcrun login stored for REGISTRY, from the
same file ($REGISTRY_AUTH_FILE, else ~/.docker/config.json), and keeps the
rest of it. Docker Hub is docker.io.

` + helptext.ExitStatus(helptext.Done("the credentials were removed"),
			helptext.Failed("none were stored for REGISTRY, or the file could not be read or written")),
		Example: "  hpcrun logout ghcr.io",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := launch.OpenStore(launch.HostFacts(), o.dir)
			if err != nil {
				return err
			}
			msg, err := unpacker.Logout(cmd.Context(), s.Dir, args[0], os.Stderr)
			if err == nil {
				fmt.Println(msg)
			}
			return err
		},
	}
	o.AddFlags(cmd)
	return cmd
}
