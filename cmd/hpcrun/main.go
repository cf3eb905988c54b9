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

	// Imported for their init functions: see the packages.
	"github.com/hpcrun/hpcrun/cmd/hpcrun/internal/early"
	"github.com/hpcrun/hpcrun/cmd/hpcrun/internal/first"
	_ "github.com/hpcrun/hpcrun/cmd/hpcrun/internal/stage"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// version is hpcrun's version, stamped by the Makefile into package first.
var version = first.Version

// started is when hpcrun began (package early's init); -v times every
// phase from it.
var started time.Time

// buildTagCommands make the hidden commands of optional build tags: the
// man pages and completion scripts of `make docs` (gendocs.go). A release
// build has none.
var buildTagCommands []func(root *cobra.Command) *cobra.Command

func main() {
	started = early.Started
	os.Exit(execute(os.Args[1:], os.Stderr, runtime.Adopt(early.Clone)))
}

// exitError carries the job's own exit status out of cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// execute runs one command line and returns hpcrun's exit status. pre is
// the container init that package early cloned for it, or nil.
func execute(args []string, stderr io.Writer, pre *runtime.Init) int {
	defer pre.Abort()
	runForm, subcommand := classify(args)
	if subcommand {
		// Cloned on a guess (global flags came first): no job will use it,
		// and until it is gone a signal would end hpcrun with it.
		pre.Abort()
	}
	var root *cobra.Command
	if runForm {
		// `hpcrun [flags] CMD ARGS...`: CMD may be named like a subcommand
		// (`hpcrun --rootfs r spec`), so there are none to find.
		root, _, _ = newRunCommand(pre)
	} else {
		root = newRootCommand(pre)
	}
	root.SetArgs(args)
	code, msg := exitStatusOf(root.Execute())
	if msg != "" {
		fmt.Fprintf(stderr, "hpcrun: %s\n", termsafe.Line(msg))
	}
	return code
}

// exitStatusOf is hpcrun's exit status for how a command ended, and the
// line to print for it, if any: the job's own status passes through;
// hpcrun's failures are 125 (126 and 127 for a command that cannot run),
// and a bad command line says where to look.
func exitStatusOf(err error) (int, string) {
	var ee exitError
	switch {
	case err == nil:
		return 0, ""
	case errors.As(err, &ee):
		return ee.code, ""
	}
	return runtime.ExitStatus(err), launch.Message(err)
}

// isRunForm reports whether args run a job rather than a subcommand: the
// first word is not a subcommand, and a CMD follows the flags.
func isRunForm(args []string) bool {
	runForm, _ := classify(args)
	return runForm
}

// classify says whether args run a job (`hpcrun [flags] CMD ...`) or a
// subcommand, after global flags or not; neither, for bare flags (`hpcrun
// --image i`, whose image names the command). `hpcrun --root R create ID`
// runs a subcommand after global flags; `hpcrun --rootfs r create` runs a
// command named create.
func classify(args []string) (runForm, subcommand bool) {
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		// The shell's completion script asks what may follow the words
		// after it: the whole tree, subcommands included.
		return false, true
	}
	sub, fs, ok := parseProbe(args)
	if !ok {
		return false, false
	}
	job := fs.Changed("image") || fs.Changed("rootfs")
	return fs.NArg() > 0 && (!sub || job), sub && !job
}

// parseProbe parses args' leading flags as the root command would, and
// says whether the first word (the first after the flags) is a
// subcommand. ok is false when args are empty or the flags do not parse.
func parseProbe(args []string) (sub bool, fs *pflag.FlagSet, ok bool) {
	if len(args) == 0 {
		return false, nil, false
	}
	probe, _, _ := newRunCommand(nil)
	fs = pflag.NewFlagSet("probe", pflag.ContinueOnError)
	fs.AddFlagSet(probe.Flags())
	fs.AddFlagSet(probe.PersistentFlags())
	fs.SetInterspersed(false)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if isSubcommand(args[0]) {
		return true, fs, true
	}
	if fs.Parse(args) != nil {
		return false, fs, false
	}
	return fs.NArg() > 0 && isSubcommand(fs.Arg(0)), fs, true
}

// isSubcommand reports whether word names one of hpcrun's subcommands
// (help and completion included), from early's list, which
// TestNotJobsListsEverySubcommand keeps equal to the command tree's.
func isSubcommand(word string) bool {
	return !strings.HasPrefix(word, "-") && first.IsSubcommandOrHelp(word)
}

func flagError(_ *cobra.Command, err error) error { return launch.UsageError{Err: err} }
