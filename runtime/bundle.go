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
// rootless as uid (gid): see AdaptSpec. added names what the adapting
// adds that config.json did not ask for, for CreateBundle's warning.
func LoadBundle(bundle string, uid, gid uint32) (_ *specs.Spec, added []string, err error) {
	s, err := loadBundle(bundle, uid, gid, &added)
	return s, added, err
}

func loadBundle(bundle string, uid, gid uint32, added *[]string) (*specs.Spec, error) {
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
	*added = addedNamespaces(&s)
	if err := AdaptSpec(&s, abs, uid, gid); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	if fi, err := os.Stat(s.Root.Path); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: root.path %s is not a directory", bundle, s.Root.Path)
	}
	return &s, nil
}

// alwaysNamespaces are the namespaces hpcrun makes whatever the spec
// says: a user namespace, without which nothing is rootless; a mount
// namespace, without which the rootfs cannot be set up; a pid namespace,
// whose PID 1 is hpcrun's init, which serves the container.
var alwaysNamespaces = []specs.LinuxNamespaceType{specs.UserNamespace, specs.MountNamespace, specs.PIDNamespace}

// hasNamespace says whether s asks for a namespace of type t.
func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	return s.Linux != nil && slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}

// addedNamespaces names, for a warning, the namespaces of
// alwaysNamespaces that s does not ask for: it asks the process to share
// the caller's, and AdaptSpec gives it its own.
func addedNamespaces(s *specs.Spec) []string {
	var missing []string
	for _, t := range alwaysNamespaces {
		if !hasNamespace(s, t) {
			missing = append(missing, string(t))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []string{"the caller's " + strings.Join(missing, "/") + " namespace (hpcrun gives every container its own user, mount and pid namespaces: rootless needs the first two, and its init is the container's PID 1)"}
}

// AdaptSpec makes a bundle's spec, written for runc (rootful or rootless),
// one that hpcrun's init runs without privileges, as rootless runc would
// have it: a user, mount and pid namespace always; the process's uid and
// gid mapped to the caller's when the spec maps none; no cgroup mounts
// (there is no cgroup to mount); /sys bound rather than mounted, since
// sysfs cannot be mounted without a network namespace of one's own; no
// mqueue without an ipc namespace; devpts without a gid that is not
// mapped. The process's uid and gid must be ones the maps map. Its
// supplementary groups stay in the spec, for CreateBundle to warn of: an
// unprivileged user namespace cannot set them.
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
	for _, t := range alwaysNamespaces {
		if !hasNamespace(s, t) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
	}
	if len(s.Linux.UIDMappings) == 0 {
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: s.Process.User.UID, HostID: uid, Size: 1}}
	}
	if len(s.Linux.GIDMappings) == 0 {
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: s.Process.User.GID, HostID: gid, Size: 1}}
	}
	if err := checkUserMapped(s.Process.User, s.Linux, uid, gid); err != nil {
		return err
	}
	ipc := hasNamespace(s, specs.IPCNamespace)
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
	ownDev := slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev" && m.Type == "tmpfs" })
	if ownDev {
		for _, d := range providedDevices {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/" + d, Type: "bind", Source: "/dev/" + d, Options: []string{"bind", "nosuid", "noexec"}})
		}
	}
	// linux.devices come last, as runc makes them after the mounts.
	devs, err := deviceMounts(s.Linux.Devices, ownDev, hostStat)
	if err != nil {
		return err
	}
	s.Mounts = append(s.Mounts, devs...)
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

// checkUserMapped refuses a process.user that the id maps leave out, which
// setuid would refuse at start: rootless, a map can hold only the
// caller's own uid (gid), at one container id.
func checkUserMapped(u specs.User, l *specs.Linux, uid, gid uint32) error {
	for _, c := range []struct {
		what, field string
		id, own     uint32
		maps        []specs.LinuxIDMapping
	}{
		{"uid", "uidMappings", u.UID, uid, l.UIDMappings},
		{"gid", "gidMappings", u.GID, gid, l.GIDMappings},
	} {
		if mapped(c.maps, c.id) {
			continue
		}
		to := ""
		if len(c.maps) > 0 {
			to = fmt.Sprintf(" (%d)", c.maps[0].ContainerID)
		}
		return fmt.Errorf("process.user.%s %d is not mapped by linux.%s: rootless, only your own %s (%d) can be mapped, to one id in the container; set process.user.%s to that id%s, or remove linux.%s",
			c.what, c.id, c.field, c.what, c.own, c.what, to, c.field)
	}
	return nil
}
