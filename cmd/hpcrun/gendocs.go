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
		if err := writeFile(filepath.Join(dir, c.path), b.Bytes()); err != nil {
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
		c.Long = manMarkdown(c.Long)
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
		if err := writeFile(filepath.Join(dir, name), moveExitStatus(b.Bytes())); err != nil {
			return err
		}
	}
	return nil
}

// manMarkdown turns a Long text, written for a terminal, into Markdown that
// says the same: indented lines (tables, lists, the exit statuses) are kept
// as they are, in a block; the rest is prose, its Markdown characters
// escaped; the EXIT STATUS line becomes a section of the page.
func manMarkdown(long string) string {
	var out []string
	lines := strings.Split(long, "\n")
	for i, l := range lines {
		// cobra's own texts (completion) indent with tabs.
		rest := strings.TrimLeft(l, "\t")
		lines[i] = strings.Repeat("    ", len(l)-len(rest)) + rest
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case l == "EXIT STATUS":
			out = append(out, "# EXIT STATUS")
		case strings.HasPrefix(l, " "):
			// A block: indented lines, and the blank lines between them.
			j := i
			for j < len(lines) && (strings.HasPrefix(lines[j], " ") ||
				lines[j] == "" && j+1 < len(lines) && strings.HasPrefix(lines[j+1], " ")) {
				j++
			}
			out = append(out, "```")
			out = append(out, dedent(lines[i:j])...)
			out = append(out, "```")
			i = j - 1
		default:
			out = append(out, escapeMarkdown(l))
		}
	}
	return strings.Join(out, "\n")
}

// dedent removes the indentation that all non-blank lines share.
func dedent(lines []string) []string {
	n := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if k := len(l) - len(strings.TrimLeft(l, " ")); n < 0 || k < n {
			n = k
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) >= n && n > 0 {
			l = l[n:]
		}
		out[i] = l
	}
	return out
}

var markdownEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`, `<`, `\<`, `>`, `\>`, `#`, `\#`)

func escapeMarkdown(s string) string { return markdownEscaper.Replace(s) }

// moveExitStatus moves the EXIT STATUS section, which the Long text put
// inside DESCRIPTION, to after the options, where man pages have it.
func moveExitStatus(page []byte) []byte {
	s := string(page)
	start := strings.Index(s, "\n.SH EXIT STATUS\n")
	if start < 0 {
		return page
	}
	end := strings.Index(s[start+1:], "\n.SH ")
	if end < 0 {
		return page
	}
	end += start + 1
	section, rest := s[start:end], s[:start]+s[end:]
	at := strings.Index(rest, "\n.SH EXAMPLE")
	if at < 0 {
		at = strings.Index(rest, "\n.SH SEE ALSO")
	}
	if at < 0 {
		return page
	}
	return []byte(rest[:at] + section + rest[at:])
}

// writeFile replaces path whole, mode 0644.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
