package manpage

import (
	"strings"
	"testing"
)

func TestArgNames(t *testing.T) {
	page := ".SH OPTIONS\n\\fB--cache\\fP=\"\"\n\tthe cache\n.PP\n\\fB-o\\fP, \\fB--output\\fP=\"\"\n\tout\n.PP\n" +
		"\\fB--format\\fP=\"table\"\n\tf\n.PP\n\\fB--quiet\\fP[=false]\n\tq\n"
	got := string(ArgNames([]byte(page), []Flag{{Name: "cache", Arg: "DIR"}, {Name: "output", Arg: "FILE"},
		{Name: "format", Arg: "FORMAT", Default: "table"}, {Name: "quiet"}}))
	for _, want := range []string{"\\fB--cache\\fP \\fIDIR\\fP\n", "\\fB-o\\fP, \\fB--output\\fP \\fIFILE\\fP\n",
		"\\fB--format\\fP \\fIFORMAT\\fP (default: table)\n", "\\fB--quiet\\fP[=false]\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
}

func TestAddSections(t *testing.T) {
	page := ".SH NAME\nx\n.SH EXIT STATUS\n0\n.SH EXAMPLE\ne\n.SH SEE ALSO\ns\n"
	got := string(AddSections([]byte(page), Section{"ENVIRONMENT", []Entry{{"A_B", `a\b .c`}}}, Section{"FILES", Files[:1]}))
	want := ".SH NAME\nx\n.SH EXIT STATUS\n0\n.SH ENVIRONMENT\n.TP\n\\fBA_B\\fR\na\\eb .c\n.SH FILES\n.TP\n\\fB/etc/hpcrun/config.yaml\\fR\n"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "\n.SH EXAMPLE\ne\n.SH SEE ALSO\ns\n") {
		t.Errorf("AddSections:\n%s", got)
	}
}
