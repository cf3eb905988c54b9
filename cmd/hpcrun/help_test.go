package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
)

// Every command that --help lists, help and completion included, has
// examples and ends its Long text with an EXIT STATUS section whose rows
// are a status and what it means.
func TestHelpTexts(t *testing.T) {
	row := regexp.MustCompile(`^  (\d+|N) +\S`)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Hidden {
			return
		}
		name := c.CommandPath()
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no Example", name)
		}
		head, section, ok := strings.Cut(c.Long, "\nEXIT STATUS\n")
		if !ok || strings.TrimSpace(head) == "" {
			t.Errorf("%s: Long has no EXIT STATUS section after its text:\n%s", name, c.Long)
			return
		}
		lines := strings.Split(strings.TrimRight(section, "\n"), "\n")
		for i, l := range lines {
			if !row.MatchString(l) && (i == 0 || !strings.HasPrefix(l, "      ")) {
				t.Errorf("%s: EXIT STATUS line %q is neither a row nor the rest of one (the section must end Long)", name, l)
			}
		}
		if !strings.Contains(section, "\n  125 ") && c.Name() != "help" {
			t.Errorf("%s: EXIT STATUS does not say when hpcrun fails (125):\n%s", name, section)
		}
	}
	root := newRootCommand(nil)
	walk(root)
	for _, want := range []string{"help", "completion", "images", "exec"} {
		if c, _, err := root.Find([]string{want}); err != nil || c.Name() != want {
			t.Errorf("the tree has no %s command: %v", want, err)
		}
	}
}

func TestExitStatusWraps(t *testing.T) {
	got := helptext.ExitStatus(helptext.Status("0", "done"), helptext.Status("125", strings.Repeat("word ", 30)))
	for _, l := range strings.Split(got, "\n") {
		if len(l) > 79 {
			t.Errorf("line longer than 79: %q", l)
		}
	}
	if !strings.HasPrefix(got, "EXIT STATUS\n  0    done\n  125  word word") {
		t.Errorf("exitStatus = %q", got)
	}
}
