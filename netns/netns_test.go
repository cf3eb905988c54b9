package netns

import (
	"strconv"
	"strings"
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
		if _, err := ParseMode(bad); err == nil || !strings.Contains(err.Error(), strconv.Quote(bad)+": want host or none") {
			t.Errorf("%q: err = %v, want one naming it and the modes", bad, err)
		}
	}
}

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		mode  Mode
		netns bool
	}{{Host, false}, {None, true}} {
		s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "user"}}}}
		Apply(s, tc.mode)
		hasNet := false
		for _, ns := range s.Linux.Namespaces {
			hasNet = hasNet || ns.Type == specs.NetworkNamespace
		}
		if hasNet != tc.netns || len(s.Mounts) != 0 {
			t.Errorf("%s: network namespace = %v, mounts %v", tc.mode, hasNet, s.Mounts)
		}
	}
}
