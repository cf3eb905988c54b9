package termsafe

import "testing"

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"linux/amd64", "linux/amd64"},
		{"héllo wörld ✓ 日本", "héllo wörld ✓ 日本"},
		{"\x1b[2Jcleared", `\x1b[2Jcleared`},
		{"bell\a", `bell\x07`},
		{"\x1b]0;title\x07", `\x1b]0;title\x07`},
		{"tab\tnl\ncr\r", `tab\tnl\ncr\r`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"c1 csi \u009b2J nel \u0085", `c1 csi \u009b2J nel \u0085`},
		{"lone \x9b and \xff", `lone \x9b and \xff`},
		{`back\slash`, `back\slash`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"one line", "one line"},
		{"  spaced   out\t", "spaced out"},
		{"first\nsecond\r\nthird", "first; second; third"},
		{"registry said: \x1b[31mdenied\x1b[0m\a", `registry said: \x1b[31mdenied\x1b[0m\x07`},
		{"platform \"linux/\x1b[2J\"", `platform "linux/\x1b[2J"`},
		{"\u009b6n", `\u009b6n`},
	} {
		if got := Line(tc.in); got != tc.want {
			t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
