package manpage

import "testing"

func TestMarkdown(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain *prose* with [links]", `plain \*prose\* with \[links\]`},
		{"text\n  a  b\n\n  c  d\nmore", "text\n```\na  b\n\nc  d\n```\nmore"},
		{"EXIT STATUS\n  0  done", "# EXIT STATUS\n```\n0  done\n```"},
		{"\tcobra's tab", "```\ncobra's tab\n```"},
	} {
		if got := Markdown(tc.in); got != tc.want {
			t.Errorf("Markdown(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMoveExitStatus(t *testing.T) {
	page := ".SH NAME\nx\n.SH DESCRIPTION\nd\n.SH EXIT STATUS\n0 done\n.SH OPTIONS\no\n.SH EXAMPLE\ne\n"
	want := ".SH NAME\nx\n.SH DESCRIPTION\nd\n.SH OPTIONS\no\n.SH EXIT STATUS\n0 done\n.SH EXAMPLE\ne\n"
	if got := string(MoveExitStatus([]byte(page))); got != want {
		t.Errorf("MoveExitStatus:\n%s\nwant:\n%s", got, want)
	}
	if got := string(MoveExitStatus([]byte(".SH NAME\nx\n"))); got != ".SH NAME\nx\n" {
		t.Errorf("a page without the section changed: %q", got)
	}
}
