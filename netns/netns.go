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

// hostFiles are bound read-only from the host when they exist there, so
// name resolution inside matches the node's.
var hostFiles = []string{"/etc/hosts", "/etc/resolv.conf"}

// Apply adds the network mode to a spec: a network namespace for None.
func Apply(spec *specs.Spec, mode Mode) {
	if mode == None {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
}

// HostFiles are the read-only binds of the host's name-resolution files,
// for both modes; exists reports whether a host path exists, and a missing
// one is left out.
func HostFiles(exists func(string) bool) []specs.Mount {
	var ms []specs.Mount
	for _, f := range hostFiles {
		if exists(f) {
			ms = append(ms, specs.Mount{
				Destination: f, Type: "bind", Source: f,
				Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
			})
		}
	}
	return ms
}
