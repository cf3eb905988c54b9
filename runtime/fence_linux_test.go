package runtime

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCheckCwd(t *testing.T) {
	for _, tc := range []struct {
		cwd string
		ok  bool
	}{
		{"/", true}, {"/work", true}, {"/proc", true}, {"/proc/sys/kernel", true}, {"/procfs/self", true},
		{"/proc/self/fd/7", false}, {"/proc/self/cwd", false}, {"/proc/thread-self/fd/8", false},
		{"/proc/1/root", false}, {"/proc/42", false}, {"/x/../proc/self/fd/7", false}, {"proc/self/fd/7", false},
		{"//proc//1/fd/3/..", false},
	} {
		if err := checkCwd(tc.cwd, "--pwd"); (err == nil) != tc.ok {
			t.Errorf("checkCwd(%q) = %v, want ok %v", tc.cwd, err, tc.ok)
		}
	}
}

func TestHiddenPaths(t *testing.T) {
	bind := func(src, dst string) specs.Mount {
		return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind"}}
	}
	mounts := []specs.Mount{
		{Source: "proc", Destination: "/proc", Type: "proc"},
		bind("/tmp", "/tmp"),
		bind("/tmp", "/scratch"),
		bind("/home/u", "/home/u"),
		bind("/tmp/hpcrun-1/run/c1", "/c1"),
		bind("/tmpx", "/tmpx"),
	}
	got := hiddenPaths([]string{"/tmp/hpcrun-1/run", "/home/u/state"}, mounts, func(s string) string { return s })
	want := []string{"/tmp/hpcrun-1/run", "/scratch/hpcrun-1/run", "/home/u/state", "/c1"}
	if !slices.Equal(got, want) {
		t.Errorf("hiddenPaths = %q, want %q", got, want)
	}
}

func TestStatParent(t *testing.T) {
	for _, tc := range []struct {
		line  string
		ppid  int
		state byte
		ok    bool
	}{
		{"12 (sleep) S 7 12 1 0", 7, 'S', true},
		{"13 (a) b) (c) Z 1 13", 1, 'Z', true},
		{"14 (x", 0, 0, false},
		{"15 (x) S", 0, 0, false},
	} {
		ppid, state, ok := statParent([]byte(tc.line))
		if ppid != tc.ppid || state != tc.state || ok != tc.ok {
			t.Errorf("statParent(%q) = %d %c %v", tc.line, ppid, state, ok)
		}
	}
}
