//go:build gendocs

package main

// `make docs` builds hpcrun with this file (go build -tags gendocs) and runs
// `hpcrun __gendocs DIR` to write the man pages and the shell completion
// scripts from the command tree. Release builds leave it out: cobra/doc
// pulls in go-md2man and blackfriday, whose initialisation (their tables,
// 0.7 ms measured here) every start of hpcrun would pay.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/internal/manpage"
)

func init() {
	buildTagCommands = append(buildTagCommands, newGendocsCommand)
}

func newGendocsCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "__gendocs DIR",
		Short:  "Write the man pages and completion scripts under DIR, laid out as PREFIX/share is",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE:   func(_ *cobra.Command, args []string) error { return gendocs(root, args[0]) },
	}
}

// gendocs writes, under dir:
//
//	man/man1/hpcrun.1, man/man1/hpcrun-COMMAND.1, ...
//	bash-completion/completions/hpcrun
//	zsh/site-functions/_hpcrun
//	fish/vendor_completions.d/hpcrun.fish
func gendocs(root *cobra.Command, dir string) error {
	man := filepath.Join(dir, "man", "man1")
	if err := os.MkdirAll(man, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true // no HISTORY section with today's date
	if err := genMan(root, man); err != nil {
		return err
	}
	for _, c := range []struct {
		path string
		gen  func(*bytes.Buffer) error
	}{
		{"bash-completion/completions/hpcrun", func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) }},
		{"zsh/site-functions/_hpcrun", func(b *bytes.Buffer) error { return root.GenZshCompletion(b) }},
		{"fish/vendor_completions.d/hpcrun.fish", func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) }},
	} {
		var b bytes.Buffer
		if err := c.gen(&b); err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
		if err := manpage.WriteFile(filepath.Join(dir, c.path), b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// genMan writes a page for root and one for each command under it that
// --help lists, with the Long texts made into Markdown for go-md2man.
func genMan(root *cobra.Command, dir string) error {
	var pages []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		c.Long = manpage.Markdown(c.Long)
		// "[flags] (--image ...)" would read as a Markdown link.
		c.Use = strings.ReplaceAll(c.Use, "(", `\(`)
		pages = append(pages, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, c := range pages {
		var b bytes.Buffer
		header := &doc.GenManHeader{Section: "1", Source: "hpcrun " + version, Manual: "hpcrun manual"}
		if err := doc.GenMan(c, header, &b); err != nil {
			return fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		page := manpage.ArgNames(manpage.MoveExitStatus(b.Bytes()), manFlags(c))
		if c == root {
			page = manpage.AddSections(page, manpage.Section{Title: "ENVIRONMENT", Entries: manpage.Environment},
				manpage.Section{Title: "FILES", Entries: manpage.Files})
		}
		if err := manpage.WriteFile(filepath.Join(dir, name), page); err != nil {
			return err
		}
	}
	return nil
}

// manFlags are c's flags, its own and inherited, with their argument
// names as --help gives them (the backquoted word of the usage, else the
// type).
func manFlags(c *cobra.Command) []manpage.Flag {
	var out []manpage.Flag
	add := func(f *pflag.Flag) {
		arg, _ := pflag.UnquoteUsage(f)
		out = append(out, manpage.Flag{Name: f.Name, Arg: arg, Default: f.DefValue})
	}
	c.NonInheritedFlags().VisitAll(add)
	c.InheritedFlags().VisitAll(add)
	return out
}
