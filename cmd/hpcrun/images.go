package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// cacheOptions are the flags of the commands that manage the image cache.
type cacheOptions struct{ dir string }

// AddFlags registers --cache on a cache command, which reports bad flags
// as every hpcrun command does.
func (o *cacheOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.dir, "cache", "", "the cache `DIR` (default: as for a run; see hpcrun config)")
	cmd.SetFlagErrorFunc(flagError)
}

func (o *cacheOptions) open() (*store.Store, error) {
	s, _, err := launch.OpenStore(launch.HostFacts(), o.dir)
	return s, err
}

func newImagesCommand() *cobra.Command {
	var o cacheOptions
	var format string
	cmd := &cobra.Command{
		Use:   "images [--cache DIR] [--format table|json]",
		Short: "List the images unpacked in this node's cache",
		Long: `images lists the images in the cache: digest, size on disk, the size of the
blobs a pulled image was fetched as (kept for hpcrun pull -o; rmi and prune
remove them), last use and the reference they were first unpacked from, or
that a temp cleaner damaged the image (its next use unpacks it again).
--format json prints them as a JSON array, sizes in bytes.

` + helptext.ExitStatus(helptext.Done("the list was printed (an empty cache lists nothing)"),
			helptext.Failed("a bad flag, a bad config file, a cache that cannot be made or read, or that another "+
				"user could change")),
		Example: "  hpcrun images\n  HPCRUN_CACHE=/scratch/$USER/hpcrun hpcrun images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.open()
			if err != nil {
				return err
			}
			if format != "table" && format != "json" {
				return launch.UsageError{Err: fmt.Errorf("--format %q: want table or json", format)}
			}
			entries, err := c.List()
			if err != nil {
				return err
			}
			if format == "json" {
				return store.WriteEntriesJSON(os.Stdout, entries)
			}
			return store.WriteEntries(os.Stdout, entries)
		},
	}
	o.AddFlags(cmd)
	cmd.Flags().StringVar(&format, "format", "table", "the output `FORMAT`: table or json")
	return cmd
}

func newRmiCommand() *cobra.Command {
	var o cacheOptions
	cmd := &cobra.Command{
		Use:   "rmi [--cache DIR] DIGEST|REF...",
		Short: "Remove images from this node's cache",
		Long: `rmi removes cached images, named by digest (or a unique prefix of it) or by the
reference they were unpacked from (a pulled one as pulled, with or without
docker://), and the blobs a pulled image was fetched as that no other image
uses. An image that a job is using is not removed. Each removed image's digest
is printed.

` + helptext.ExitStatus(helptext.Done("every image named was removed"),
			helptext.Failed("an image that is not cached, a digest prefix that names several, an image that a "+
				"job is using, a cache that cannot be opened; the other images named are still removed")),
		Example: "  hpcrun rmi sha256:d6e51c10\n  hpcrun rmi /scratch/images/py3.tar\n  hpcrun rmi registry.example.org/app:1.2",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h := launch.HostFacts()
			c, _, err := launch.OpenStore(h, o.dir)
			if err != nil {
				return err
			}
			entries, err := c.List()
			if err != nil {
				return err
			}
			var failed []string
			for _, a := range args {
				e, err := store.Pick(entries, a, h.Cwd)
				if err == nil {
					err = c.Remove(e.Digest)
				}
				if err != nil {
					failed = append(failed, err.Error())
					continue
				}
				fmt.Println(e.Digest)
			}
			if failed != nil {
				return errors.New(strings.Join(failed, "; "))
			}
			return nil
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func newPruneCommand() *cobra.Command {
	var o cacheOptions
	var age store.Age
	var all bool
	cmd := &cobra.Command{
		Use:   "prune [--cache DIR] --older-than AGE | --all",
		Short: "Remove cached images not used for a while",
		Long: `prune removes the cached images whose last use is older than AGE, or with --all
every one, except those that jobs are using, which are skipped; the blobs of
pulled images not used for AGE; and what killed unpacks left behind. Each
removed image's digest is printed. AGE is days or weeks (7d, 2w) or a duration
(36h, 90m). Without --older-than, prune asks at a terminal before it removes
every image, and elsewhere wants --all.

` + helptext.ExitStatus(helptext.Done("the images were removed, or there were none to remove, or the question was "+
			"answered no"),
			helptext.Failed("a bad flag, neither --older-than nor --all without a terminal, a cache that cannot be "+
				"opened, an image that could not be removed")),
		Example: "  hpcrun prune --older-than 7d      # not used for a week\n  hpcrun prune --all                 # every image no job is using",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.open()
			if err != nil {
				return err
			}
			if !all && !cmd.Flags().Changed("older-than") {
				if !launch.IsTerminal(os.Stdin) {
					return launch.UsageError{Err: errors.New("prune without --older-than removes every cached image: give --all to do that, or --older-than AGE")}
				}
				fmt.Fprintf(os.Stderr, "Remove every cached image in %s that no job is using? [y/N] ", c.Dir)
				answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return nil
				}
			}
			removed, err := c.Prune(time.Duration(age))
			for _, d := range removed {
				fmt.Println(d)
			}
			return err
		},
	}
	o.AddFlags(cmd)
	cmd.Flags().Var(&age, "older-than", "remove only images last used longer than `AGE` ago (7d, 2w, 36h)")
	cmd.Flags().BoolVar(&all, "all", false, "remove every image no job is using")
	cmd.MarkFlagsMutuallyExclusive("older-than", "all")
	return cmd
}
