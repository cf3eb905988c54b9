package main

// The parts of the help that every command shares: the EXIT STATUS section
// at the end of each Long text, and the examples and statuses of cobra's
// own help and completion commands. TestHelpTexts checks that no command
// goes without them.

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// status is one row of an EXIT STATUS section.
type status struct{ code, meaning string }

// statusDone is success: what the command did.
func statusDone(what string) status { return status{"0", what} }

// statusFailed is hpcrun's own failure (runtime.StatusFailed), with what it
// may be for the command at hand.
func statusFailed(examples string) status {
	return status{"125", "hpcrun itself failed and said why on stderr: " + examples}
}

// exitStatus renders an EXIT STATUS section: a heading and a table whose
// meanings wrap under themselves.
func exitStatus(rows ...status) string {
	w := 3 // the meanings of every section line up
	for _, r := range rows {
		w = max(w, len(r.code))
	}
	var b strings.Builder
	b.WriteString("EXIT STATUS")
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  %-*s  ", w, r.code)
		col, indent := 4+w, strings.Repeat(" ", 4+w)
		for i, word := range strings.Fields(r.meaning) {
			if i > 0 && col+1+len(word) > 79 {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else if i > 0 {
				b.WriteString(" ")
				col++
			}
			b.WriteString(word)
			col += len(word)
		}
	}
	return b.String()
}

// jobStatus is the section of the commands that end with the status of a
// process they ran: a run, hpcrun run and hpcrun exec. proc names the
// process, cmd its command; extra rows come after the process's status.
func jobStatus(proc, cmd, failed string, extra ...status) string {
	rows := []status{{"N", proc + "'s own exit status; 128+N when signal N ended it (143 for TERM, 137 for KILL)"}}
	rows = append(rows, extra...)
	return exitStatus(append(rows, statusFailed(failed),
		status{"126", cmd + " exists in the container but cannot be executed"},
		status{"127", cmd + " was not found in the container"})...)
}

// finishCommandTree adds cobra's help and completion commands to root now,
// rather than when it executes, so that the help, the man pages and the
// completion scripts describe the same tree, and gives them their examples
// and exit statuses.
func finishCommandTree(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Long = `help prints the help of a command: what it does, its flags, examples and exit
statuses. hpcrun COMMAND --help does the same. The same texts are installed
as man pages: man hpcrun, man hpcrun-COMMAND.

` + exitStatus(statusDone("the help was printed; also for an unknown COMMAND, after which the usage of hpcrun follows"))
			c.Example = "  hpcrun help\n  hpcrun help images\n  hpcrun images --help"
		case "completion":
			finishCompletion(c)
		}
	}
}

// finishCompletion documents cobra's completion command and makes a shell
// it does not know an error, as an unknown subcommand is elsewhere.
func finishCompletion(c *cobra.Command) {
	c.Long = `completion prints a script that makes your shell complete hpcrun's commands
and flags: hpcrun completion bash, zsh, fish or powershell. make install puts
the bash, zsh and fish scripts where those shells look for them:
PREFIX/share/bash-completion/completions/hpcrun,
PREFIX/share/zsh/site-functions/_hpcrun and
PREFIX/share/fish/vendor_completions.d/hpcrun.fish. See each shell's command
for how to load its script yourself.

` + exitStatus(statusDone("the script (or, with no SHELL, this help) was printed"),
		statusFailed("a SHELL that hpcrun does not know"))
	c.Example = `  source <(hpcrun completion bash)            # in this bash session
  hpcrun completion bash > ~/.local/share/bash-completion/completions/hpcrun
  hpcrun completion zsh > ~/.zfunc/_hpcrun     # with fpath+=(~/.zfunc) before compinit
  hpcrun completion fish > ~/.config/fish/completions/hpcrun.fish`
	c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	c.SetFlagErrorFunc(flagError)
	load := map[string]string{
		"bash":       "source <(hpcrun completion bash)",
		"zsh":        "source <(hpcrun completion zsh)",
		"fish":       "hpcrun completion fish | source",
		"powershell": "hpcrun completion powershell | Out-String | Invoke-Expression",
	}
	for _, sh := range c.Commands() {
		name := sh.Name()
		if load[name] == "" {
			load[name] = "hpcrun completion " + name
		}
		sh.Long = strings.TrimRight(sh.Long, "\n") + "\n\n" + exitStatus(statusDone("the script was printed"),
			statusFailed("a bad flag, or an argument"))
		sh.Example = fmt.Sprintf("  %s\n  hpcrun completion %s --no-descriptions > hpcrun.%s", load[name], name, name)
		sh.SetFlagErrorFunc(flagError)
	}
}
