// Package manpage turns hpcrun's --help texts, written for a terminal,
// into man pages: the Markdown that go-md2man takes, and the page's
// sections in the order man pages have them. make docs uses it (see
// cmd/hpcrun/gendocs.go).
package manpage

import (
	"os"
	"path/filepath"
	"strings"
)

// Markdown turns a Long text, written for a terminal, into Markdown that
// says the same: indented lines (tables, lists, the exit statuses) are kept
// as they are, in a block; the rest is prose, its Markdown characters
// escaped; the EXIT STATUS line becomes a section of the page.
func Markdown(long string) string {
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

// MoveExitStatus moves the EXIT STATUS section, which the Long text put
// inside DESCRIPTION, to after the options, where man pages have it.
func MoveExitStatus(page []byte) []byte {
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

// WriteFile replaces path whole, mode 0644.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
