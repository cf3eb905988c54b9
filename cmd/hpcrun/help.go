package main

// The parts of the help that every command shares: the EXIT STATUS section
// at the end of each Long text, and the examples and statuses of cobra's
// own help and completion commands. TestHelpTexts checks that no command
// goes without them.

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
)

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

` + helptext.ExitStatus(helptext.Done("the help was printed; also for an unknown COMMAND, after which the usage of hpcrun follows"))
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
and flags: hpcrun completion bash, zsh or fish. make install puts
the bash, zsh and fish scripts where those shells look for them:
PREFIX/share/bash-completion/completions/hpcrun,
PREFIX/share/zsh/site-functions/_hpcrun and
PREFIX/share/fish/vendor_completions.d/hpcrun.fish. See each shell's command
for how to load its script yourself.

` + helptext.ExitStatus(helptext.Done("the script (or, with no SHELL, this help) was printed"),
		helptext.Failed("a SHELL that hpcrun does not know"))
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
		// hpcrun runs on Linux only: no page or help for a Windows shell.
		sh.Hidden = name == "powershell"
		if load[name] == "" {
			load[name] = "hpcrun completion " + name
		}
		sh.Long = strings.TrimRight(sh.Long, "\n") + "\n\n" + helptext.ExitStatus(helptext.Done("the script was printed"),
			helptext.Failed("a bad flag, or an argument"))
		sh.Example = fmt.Sprintf("  %s\n  hpcrun completion %s --no-descriptions > hpcrun.%s", load[name], name, name)
		sh.SetFlagErrorFunc(flagError)
	}
}
