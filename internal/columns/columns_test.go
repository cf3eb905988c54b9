package columns

import (
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
)

// Write lays out a table as text/tabwriter does with the same padding.
func TestWriteMatchesTabwriter(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  int
		rows [][]string
	}{
		{"empty", 2, nil},
		{"header only", 3, [][]string{{"ID", "PID", "STATUS"}}},
		{"states", 3, [][]string{{"ID", "PID", "STATUS"}, {"a-long-name", "12", "running"}, {"b", "12345", "stopped"}}},
		{"empty cells", 2, [][]string{{"A", "", "C"}, {"", "bb", ""}}},
		{"wide runes", 2, [][]string{{"naïve", "x"}, {"é", "yy"}}},
		{"ragged last column", 2, [][]string{{"PID", "COMMAND"}, {"1", "sh -c 'a  b'"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want strings.Builder
			tw := tabwriter.NewWriter(&want, 0, 0, tc.gap, ' ', 0)
			for _, r := range tc.rows {
				fmt.Fprintln(tw, strings.Join(r, "\t"))
			}
			tw.Flush()
			var got strings.Builder
			if err := Write(&got, tc.gap, tc.rows); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("got\n%q\nwant (tabwriter)\n%q", got.String(), want.String())
			}
		})
	}
}
