// Command hpcrun runs HPC jobs in containers without root.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/netns"
	"github.com/hpcrun/hpcrun/runtime"
)

// version is stamped by the Makefile.
var version = "dev"

// started is when main began; -v times every phase from it.
var started time.Time

func main() {
	started = time.Now()
	if len(os.Args) > 0 && os.Args[0] == runtime.InitArg0 {
		runtime.RunInit(runtime.Hooks{LoopbackUp: netns.LoopbackUp})
	}
	os.Exit(execute(os.Args[1:], os.Stderr, true))
}

// exitError carries the job's own exit status out of cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a bad command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() + " (see hpcrun --help)" }
func (e usageError) Unwrap() error { return e.err }

// execute runs one command line and returns hpcrun's exit status. With
// startEarly, a command line that runs a job clones the container's init
// first, so that its start overlaps the parsing and resolving here.
func execute(args []string, stderr io.Writer, startEarly bool) int {
	var early *runtime.Init
	if startEarly && mayRunJob(args) {
		early = runtime.Start(runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
		defer early.Abort()
	}
	runForm := isRunForm(args)
	root := newRootCommand(early)
	if runForm {
		// `hpcrun [flags] CMD ARGS...`: CMD may be named like a subcommand
		// (`hpcrun --rootfs r spec`), so there are none to find.
		root.ResetCommands()
	}
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(stderr, "hpcrun: %s\n", oneLine(err.Error()))
	return runtime.ExitStatus(err)
}

// notJobs are the first words that never run a job: the subcommands
// (TestNotJobsListsEverySubcommand keeps the list whole) and help.
var notJobs = map[string]bool{
	"spec": true, "help": true, "completion": true, "-h": true, "--help": true, "--version": true,
}

// mayRunJob is the cheap first guess of isRunForm, taken before anything
// else so the container's init can be cloned at once. A wrong guess costs
// an aborted clone, as for `hpcrun --rootfs r` with no command.
func mayRunJob(args []string) bool {
	return len(args) > 0 && !notJobs[args[0]]
}

// isRunForm reports whether args run a job rather than a subcommand: the
// first word is not a subcommand, and a CMD follows the flags.
func isRunForm(args []string) bool {
	if len(args) == 0 {
		return false
	}
	probe := newRootCommand(nil)
	probe.InitDefaultHelpCmd()
	probe.InitDefaultCompletionCmd()
	if sub, _, err := probe.Find(args[:1]); err == nil && sub != probe {
		return false
	}
	fs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	fs.AddFlagSet(probe.Flags())
	fs.AddFlagSet(probe.PersistentFlags())
	fs.SetInterspersed(false)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs.Parse(args) == nil && fs.NArg() > 0
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func flagError(_ *cobra.Command, err error) error { return usageError{err} }
