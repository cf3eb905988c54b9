package launch

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/runtime"
)

func TestRootfsDigest(t *testing.T) {
	for in, want := range map[string]string{
		"/var/tmp/hpcrun-1000/images/sha256-abc/rootfs": "sha256:abc",
		"/home/u/rootfs":                 "",
		"/var/tmp/x/images/sha256-abc/r": "",
	} {
		if got := rootfsDigest(in); got != want {
			t.Errorf("rootfsDigest(%q) = %q, want %q", in, got, want)
		}
	}
}

// A restore is refused where the image or a bind differs, or the CPU
// lacks a flag the checkpoint's had.
func TestRestoreChecks(t *testing.T) {
	cfg := func(binds ...string) *runtime.Config {
		s := &specs.Spec{Root: &specs.Root{Path: ""}}
		for _, b := range binds {
			d, src, _ := strings.Cut(b, "<-")
			s.Mounts = append(s.Mounts, specs.Mount{Destination: d, Source: src})
		}
		return &runtime.Config{Spec: s}
	}
	cp := func(digest string, flags []string, binds ...string) *Checkpoint {
		return &Checkpoint{Digest: digest, CPUFlags: flags, CheckpointInfo: runtime.CheckpointInfo{Binds: binds}}
	}
	have := cpuFlags()
	for _, tc := range []struct {
		name string
		cp   *Checkpoint
		cfg  *runtime.Config
		err  string
	}{
		{"same", cp("sha256:a", have, "/d<-/s"), cfg("/d<-/s"), ""},
		{"another image", cp("sha256:a", have), cfg(), "restore it with the same image"},
		{"a bind gone", cp("", have, "/d<-/s", "/e<-/t"), cfg("/d<-/s"), "/e bound from /t, which this one lacks"},
		{"a bind more", cp("", have), cfg("/d<-/s"), "/d bound from /s, which the checkpoint's lacked"},
		{"another CPU", cp("", append([]string{"no_such_flag"}, have...)), cfg(), "lacks no_such_flag"},
		{"another rootfs", &Checkpoint{CPUFlags: have, CheckpointInfo: runtime.CheckpointInfo{Rootfs: "/a"}}, cfg(), "same --rootfs"},
	} {
		err := restoreChecks(tc.cp, tc.cfg, map[bool]string{true: "sha256:a"}[tc.name == "same"])
		if tc.name == "another image" {
			err = restoreChecks(tc.cp, tc.cfg, "sha256:b")
		}
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}
