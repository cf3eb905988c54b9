package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// LoadBundle reads an OCI bundle's config.json and adapts it to run
// rootless as uid (gid): see AdaptSpec.
func LoadBundle(bundle string, uid, gid uint32) (*specs.Spec, error) {
	abs, err := filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(abs, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w; a bundle is a directory with config.json and the rootfs (hpcrun spec writes one)", bundle, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %w", bundle, err)
	}
	if err := checkOCIVersion(s.Version); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	if err := AdaptSpec(&s, abs, uid, gid); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	if fi, err := os.Stat(s.Root.Path); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: root.path %s is not a directory", bundle, s.Root.Path)
	}
	return &s, nil
}

// AdaptSpec makes a bundle's spec, written for runc (rootful or rootless),
// one that hpcrun's init runs without privileges, as rootless runc would
// have it: a user, mount and pid namespace always; the process's uid and
// gid mapped to the caller's when the spec maps none; no cgroup mounts
// (there is no cgroup to mount); /sys bound rather than mounted, since
// sysfs cannot be mounted without a network namespace of one's own; no
// mqueue without an ipc namespace; devpts without a gid that is not
// mapped; no supplementary groups, which an unprivileged user namespace
// cannot set.
func AdaptSpec(s *specs.Spec, bundle string, uid, gid uint32) error {
	switch {
	case s.Process == nil || len(s.Process.Args) == 0:
		return errors.New("config.json has no process.args")
	case s.Root == nil || s.Root.Path == "":
		return errors.New("config.json has no root.path")
	}
	if !filepath.IsAbs(s.Root.Path) {
		s.Root.Path = filepath.Join(bundle, s.Root.Path)
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	for _, t := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.MountNamespace, specs.PIDNamespace} {
		if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t }) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
	}
	if len(s.Linux.UIDMappings) == 0 {
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: s.Process.User.UID, HostID: uid, Size: 1}}
	}
	if len(s.Linux.GIDMappings) == 0 {
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: s.Process.User.GID, HostID: gid, Size: 1}}
	}
	s.Process.User.AdditionalGids = nil
	ipc := slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.IPCNamespace })
	mounts := s.Mounts[:0]
	for _, m := range s.Mounts {
		switch m.Type {
		case "cgroup", "cgroup2":
			continue
		case "mqueue":
			if !ipc {
				continue
			}
		case "sysfs":
			m = specs.Mount{Destination: m.Destination, Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case "devpts":
			m.Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool {
				v, ok := strings.CutPrefix(o, "gid=")
				n, err := strconv.ParseUint(v, 10, 32)
				return ok && (err != nil || !mapped(s.Linux.GIDMappings, uint32(n)))
			})
		}
		mounts = append(mounts, m)
	}
	s.Mounts = mounts
	// A /dev of the spec's own (a tmpfs) gets the devices the runtime
	// spec promises, bound from the host's, as rootless runc does: an
	// unprivileged user cannot make device nodes.
	if slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev" && m.Type == "tmpfs" }) {
		for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/" + d, Type: "bind", Source: "/dev/" + d, Options: []string{"bind", "nosuid", "noexec"}})
		}
	}
	return nil
}

// mapped reports whether container id id is in the maps.
func mapped(maps []specs.LinuxIDMapping, id uint32) bool {
	for _, m := range maps {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return true
		}
	}
	return false
}
