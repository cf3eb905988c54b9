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
