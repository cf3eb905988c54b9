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
	// `hpcrun [flags] CMD ARGS...` needs the root command alone: CMD may
	// be named like a subcommand (`hpcrun --rootfs r spec`), so there are
	// none to find. classifyWith reads the flags from its definitions.
	root, _, _ := newRunCommand(pre)
	runForm, subcommand := classifyWith(root, args)
	if subcommand {
		// Cloned on a guess (global flags came first): no job will use it,
		// and until it is gone a signal would end hpcrun with it.
		pre.Abort()
	}
	if !runForm {
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
	run, _, _ := newRunCommand(nil)
	return classifyWith(run, args)
}

// classifyWith is classify with run, the root command of newRunCommand,
// whose flags it reads but does not set: execute goes on to run it.
func classifyWith(run *cobra.Command, args []string) (runForm, subcommand bool) {
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		// The shell's completion script asks what may follow the words
		// after it: the whole tree, subcommands included.
		return false, true
	}
	if len(args) == 0 {
		return false, false
	}
	if isSubcommand(args[0]) {
		return false, true
	}
	changed, rest, ok := scanFlags(run, args)
	if !ok {
		return false, false
	}
	sub := len(rest) > 0 && isSubcommand(rest[0])
	job := changed["image"] || changed["rootfs"]
	return len(rest) > 0 && (!sub || job), sub && !job
}

// scanFlags parses args' leading flags as run's flag set does with
// interspersed flags off (pflag's grammar: --name=value, --name value,
// -abc, -fvalue, -f=value, -- ends the flags; unknown flags and --help
// fail; go test's -test.* are skipped), from the flags' definitions alone:
// no value is set, nor checked (a bad one, --cleanenv=maybe, fails when
// the command chosen parses it, with pflag's message). It returns the
// names of the flags given and the words after the flags; ok is false
// where pflag's grammar fails.
func scanFlags(run *cobra.Command, args []string) (changed map[string]bool, rest []string, ok bool) {
	flags, persistent := run.Flags(), run.PersistentFlags()
	lookup := func(name string) *pflag.Flag {
		if f := flags.Lookup(name); f != nil {
			return f
		}
		return persistent.Lookup(name)
	}
	short := func(c byte) *pflag.Flag {
		if f := flags.ShorthandLookup(string(c)); f != nil {
			return f
		}
		return persistent.ShorthandLookup(string(c))
	}
	changed = map[string]bool{}
	for len(args) > 0 {
		s := args[0]
		if len(s) < 2 || s[0] != '-' {
			return changed, args, true
		}
		args = args[1:]
		if s == "--" {
			return changed, args, true
		}
		if s[1] == '-' {
			name, _, hasValue := strings.Cut(s[2:], "=")
			f := lookup(name)
			if name == "" || name[0] == '-' || f == nil {
				return nil, nil, false
			}
			if !hasValue && f.NoOptDefVal == "" {
				// --name value
				if len(args) == 0 {
					return nil, nil, false
				}
				args = args[1:]
			}
			changed[f.Name] = true
			continue
		}
		// Shorthands, each of which may take the rest of the word, or the
		// next word, as its value. As pflag does, every one of them looks
		// at the words after this one as they were before it.
		next := args
		for shorts := s[1:]; shorts != "" && !strings.HasPrefix(shorts, "test."); {
			f := short(shorts[0])
			if f == nil {
				return nil, nil, false
			}
			changed[f.Name] = true
			switch {
			case len(shorts) > 2 && shorts[1] == '=', f.NoOptDefVal == "" && len(shorts) > 1:
				shorts = ""
			case f.NoOptDefVal != "":
				shorts = shorts[1:]
			case len(args) > 0:
				next, shorts = args[1:], ""
			default:
				return nil, nil, false
			}
		}
		args = next
	}
	return changed, nil, true
}

// isSubcommand reports whether word names one of hpcrun's subcommands
// (help and completion included), from early's list, which
// TestNotJobsListsEverySubcommand keeps equal to the command tree's.
func isSubcommand(word string) bool {
	return !strings.HasPrefix(word, "-") && first.IsSubcommandOrHelp(word)
}

func flagError(_ *cobra.Command, err error) error { return launch.UsageError{Err: err} }
