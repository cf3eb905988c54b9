package netns

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseMode(t *testing.T) {
	for _, ok := range []string{"host", "none"} {
		if m, err := ParseMode(ok); err != nil || string(m) != ok {
			t.Errorf("%q: %v %v", ok, m, err)
		}
	}
	for _, bad := range []string{"", "bridge", "HOST"} {
		if _, err := ParseMode(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		mode     Mode
		existing map[string]bool
		netns    bool
		mounts   []string
	}{
		{Host, map[string]bool{"/etc/hosts": true, "/etc/resolv.conf": true}, false, []string{"/etc/hosts", "/etc/resolv.conf"}},
		{None, map[string]bool{"/etc/hosts": true}, true, []string{"/etc/hosts"}},
		{Host, map[string]bool{}, false, nil},
	}
	for _, tc := range tests {
		s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "user"}}}}
		Apply(s, tc.mode, func(p string) bool { return tc.existing[p] })
		hasNet := false
		for _, ns := range s.Linux.Namespaces {
			hasNet = hasNet || ns.Type == specs.NetworkNamespace
		}
		if hasNet != tc.netns {
			t.Errorf("%s: network namespace = %v", tc.mode, hasNet)
		}
		var got []string
		for _, m := range s.Mounts {
			got = append(got, m.Destination)
			if m.Source != m.Destination || m.Options[1] != "ro" {
				t.Errorf("%s: mount %+v is not a read-only host file", tc.mode, m)
			}
		}
		if len(got) != len(tc.mounts) {
			t.Errorf("%s: mounts %v, want %v", tc.mode, got, tc.mounts)
		}
	}
}
