package runtime

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// bundleUnapplied checks what a bundle's spec asks for beyond what
// AdaptSpec adapts, for a kernel whose last capability is lastCap and
// that can fence a process off the init or not (see ocicaps_linux.go). It
// removes from s what cannot be granted and returns each thing it does
// not apply, for CreateBundle's one warning line; an error is a spec that
// cannot be run as it is.
func bundleUnapplied(s *specs.Spec, lastCap int, fence bool) ([]string, error) {
	not, err := checkBundleCaps(s.Process.Capabilities, lastCap, fence)
	if err != nil {
		return nil, err
	}
	// The init starts every process with NoSetGroups: setgroups is denied
	// in the user namespace before the gid map can be written, so not even
	// a mapped gid can be added. The process's own gid needs no saying.
	var gids []string
	for _, g := range s.Process.User.AdditionalGids {
		if g != s.Process.User.GID && !slices.Contains(gids, fmt.Sprint(g)) {
			gids = append(gids, fmt.Sprint(g))
		}
	}
	if len(gids) > 0 {
		not = append(not, "process.user.additionalGids "+strings.Join(gids, "/")+" (an unprivileged user namespace cannot set supplementary groups)")
	}
	// The limits are applied, where they can be, by prepareCgroups.
	if r := s.Linux.Resources; r != nil {
		if len(r.Devices) > 0 {
			not = append(not, "linux.resources.devices (a device cgroup takes root to enforce)")
		}
	}
	return not, nil
}

// cgroupLimits names the cgroup controllers linux.resources sets, but
// for the device list: those that are there and not empty.
func cgroupLimits(r *specs.LinuxResources) []string {
	var names []string
	for _, c := range []struct {
		name string
		v    any
	}{
		{"memory", r.Memory}, {"cpu", r.CPU}, {"pids", r.Pids}, {"blockIO", r.BlockIO},
		{"hugepageLimits", r.HugepageLimits}, {"network", r.Network}, {"rdma", r.Rdma}, {"unified", r.Unified},
	} {
		if b, err := json.Marshal(c.v); err == nil && !slices.Contains([]string{"null", "{}", "[]"}, string(b)) {
			names = append(names, c.name)
		}
	}
	return names
}
