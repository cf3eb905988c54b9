// Package helptext writes the parts of hpcrun's help that every command
// shares: the EXIT STATUS section at the end of each Long text, in one
// layout for --help and the man pages.
package helptext

import (
	"fmt"
	"strings"
)

// Row is one row of an EXIT STATUS section.
type Row struct{ Code, Meaning string }

// Status is a row: a status and what it means.
func Status(code, meaning string) Row { return Row{Code: code, Meaning: meaning} }

// Done is success: what the command did.
func Done(what string) Row { return Status("0", what) }

// Failed is hpcrun's own failure (125), with what it
// may be for the command at hand.
func Failed(examples string) Row {
	return Status("125", "hpcrun itself failed and said why on stderr: "+examples)
}

// ExitStatus renders an EXIT STATUS section: a heading and a table whose
// meanings wrap under themselves.
func ExitStatus(rows ...Row) string {
	w := 3 // the meanings of every section line up
	for _, r := range rows {
		w = max(w, len(r.Code))
	}
	var b strings.Builder
	b.WriteString("EXIT STATUS")
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  %-*s  ", w, r.Code)
		col, indent := 4+w, strings.Repeat(" ", 4+w)
		for i, word := range strings.Fields(r.Meaning) {
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

// JobStatus is the section of the commands that end with the status of a
// process they ran: a run, hpcrun run and hpcrun exec. proc names the
// process, cmd its command; extra rows come after the process's status.
func JobStatus(proc, cmd, failed string, extra ...Row) string {
	rows := []Row{Status("N", proc+"'s own exit status; 128+N when signal N ended it (143 for TERM, 137 for KILL)")}
	rows = append(rows, extra...)
	return ExitStatus(append(rows, Failed(failed),
		Status("126", cmd+" exists in the container but cannot be executed"),
		Status("127", cmd+" was not found in the container"))...)
}
