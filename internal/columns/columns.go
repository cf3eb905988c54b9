// Package columns writes a table in aligned columns, as text/tabwriter
// does with a blank for padding: each cell but a line's last is padded to
// its column's widest cell, plus the gap. Package runtime's tables use it
// because text/tabwriter, whose path sorts late, would make Go initialize
// regexp and yaml.v3 before the container's init stage (see package
// stage in cmd/hpcrun).
package columns

import (
	"io"
	"strings"
	"unicode/utf8"
)

// Write writes rows, each a line of cells, with gap blanks at least
// between columns.
func Write(w io.Writer, gap int, rows [][]string) error {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+gap))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
