package netns

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mode is how a job reaches the network.
type Mode string

const (
	// Host shares the host's network namespace: MPI, Lustre and license
	// servers work as they do outside.
	Host Mode = "host"
	// None gives the job a namespace of its own with only loopback.
	None Mode = "none"
)

// ParseMode reads a network mode: --net's value, or the config's network.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Host, None:
		return m, nil
	}
	return "", fmt.Errorf("unknown network mode %q: want host or none", s)
}

// Apply adds the network mode to a spec: a network namespace for None.
func Apply(spec *specs.Spec, mode Mode) {
	if mode == None {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
}
