package first

import (
	"slices"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"hpcrun\x00", []string{"hpcrun"}},
		{"hpcrun\x00--rootfs\x00r\x00true\x00", []string{"hpcrun", "--rootfs", "r", "true"}},
		{"a\x00\x00b\x00", []string{"a", "", "b"}},
		{"no-nul", []string{"no-nul"}},
	} {
		got, ok := split([]byte(c.in), true)
		if !ok || !slices.Equal(got, c.want) {
			t.Errorf("split(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	if _, ok := split(nil, false); ok {
		t.Error("split of a failed read succeeded")
	}
}

func TestTestSwitch(t *testing.T) {
	env := []string{"HOME=/h", "HPCRUN_TEST_FALLBACKX=1", "HPCRUN_TEST_FALLBACK=openat2,pidfd", "PATH=/bin"}
	if got := testSwitch(env); !slices.Equal(got, []string{"HPCRUN_TEST_FALLBACK=openat2,pidfd"}) {
		t.Errorf("testSwitch = %q", got)
	}
	if got := testSwitch([]string{"HOME=/h"}); got != nil {
		t.Errorf("testSwitch without the switch = %q", got)
	}
}

func TestWords(t *testing.T) {
	for _, c := range []struct {
		args                  []string
		version, test, mayRun bool
	}{
		{[]string{"--version"}, true, false, false},
		{[]string{"--version", "x"}, false, false, false},
		{[]string{"--rootfs", "r", "true"}, false, false, true},
		{[]string{"-test.run=X"}, false, true, true},
		{[]string{"--root", "/r", "state", "x"}, false, false, false},
		{[]string{"--root=/r", "python3"}, false, false, true},
		{nil, false, false, false},
	} {
		if got := IsVersion(c.args); got != c.version {
			t.Errorf("IsVersion(%q) = %v", c.args, got)
		}
		if got := IsTest(c.args); got != c.test {
			t.Errorf("IsTest(%q) = %v", c.args, got)
		}
		if got := MayRunJob(c.args); got != c.mayRun {
			t.Errorf("MayRunJob(%q) = %v", c.args, got)
		}
	}
	if VersionLine() != "hpcrun "+Version+"\n" {
		t.Errorf("VersionLine() = %q", VersionLine())
	}
}

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		args              []string
		terminal          bool
		version, job, ask bool // ask: whether stdin's terminal is asked about
	}{
		{nil, false, false, false, false},
		{[]string{"hpcrun-init"}, false, false, false, false},
		{[]string{"hpcrun-rlimit", "--rootfs", "r", "true"}, false, false, false, false},
		{[]string{"hpcrun", "--version"}, true, true, false, false},
		{[]string{"hpcrun", "--rootfs", "r", "true"}, false, false, true, true},
		{[]string{"hpcrun", "--rootfs", "r", "true"}, true, false, false, true},
		{[]string{"hpcrun", "spec", "--rootfs", "r"}, false, false, false, false},
		{[]string{"hpcrun.test", "-test.run=X"}, false, false, false, false},
	} {
		asked := false
		version, job := Decide(c.args, func() bool { asked = true; return c.terminal })
		if version != c.version || job != c.job || asked != c.ask {
			t.Errorf("Decide(%q, terminal %v) = %v, %v (asked %v); want %v, %v (asked %v)",
				c.args, c.terminal, version, job, asked, c.version, c.job, c.ask)
		}
	}
}
