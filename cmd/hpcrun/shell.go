package main

import (
	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
)

// newShellCommand is apptainer shell: your shell in the image.
func newShellCommand(g *globalOptions, so *stateOptions) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "shell --image REF [flags]",
		Short: "Start an interactive shell in a container",
		Long: `shell runs your login shell in a container made from the image, as
apptainer shell does: your passwd shell if the image has it, else /bin/bash,
else /bin/sh. bash starts with --norc, so that the prompt says where it runs:
"(hpcrun IMAGE) user@host:dir$". Every run flag applies (--bind, --contain,
--home, --gpu, ...); without a terminal the shell reads commands from stdin.

` + helptext.JobStatus("the shell", "the shell", "no --image or --rootfs, a bad flag, a broken image"),
		Example: `  hpcrun shell --image py3.tar
  hpcrun shell --image py3.tar --containall --bind /scratch/$USER:/data
  echo 'python3 -V' | hpcrun shell --image py3.tar`,
		Args: func(_ *cobra.Command, args []string) error { return launch.ShellHint(args) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A subcommand: no init was cloned ahead for it.
			r := o.request(cmd.Flags(), nil)
			r.Shell = true
			code, err := launch.Run(cmd.Context(), r, launch.Options{Log: g.log(), State: so.open})
			if err != nil {
				return err
			}
			return exitError{code}
		},
	}
	o.AddFlags(cmd.Flags())
	for _, name := range []string{"run", "entrypoint"} {
		cmd.Flags().MarkHidden(name) // the shell is the command
	}
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}
