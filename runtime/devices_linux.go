package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// providedDevices are the nodes that a /dev of the spec's own (a tmpfs)
// gets from the host in any case (see AdaptSpec).
var providedDevices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// statFunc stats a host path, following symlinks: unix.Stat, or a test's.
type statFunc func(path string) (*unix.Stat_t, error)

func hostStat(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// deviceFormats maps linux.devices types to the file type they name.
var deviceFormats = map[string]uint32{"c": unix.S_IFCHR, "u": unix.S_IFCHR, "b": unix.S_IFBLK, "p": unix.S_IFIFO}

// deviceMounts turns linux.devices into binds of the host's nodes, as
// rootless runc makes them: an unprivileged user cannot make a device
// node, only bind one. A device must exist on the host at its path, of
// its type and (for c and b) its major and minor numbers; else the bundle
// cannot run, and the error says so. ownDev: /dev is a tmpfs of the
// spec's own, which gets providedDevices anyway; those are skipped.
func deviceMounts(devs []specs.LinuxDevice, ownDev bool, stat statFunc) ([]specs.Mount, error) {
	var out []specs.Mount
	for _, d := range devs {
		if !filepath.IsAbs(d.Path) {
			return nil, fmt.Errorf("linux.devices: path %q is not absolute; give the device's path in the container, such as /dev/fuse", d.Path)
		}
		p := filepath.Clean(d.Path)
		if ownDev && filepath.Dir(p) == "/dev" && slices.Contains(providedDevices, filepath.Base(p)) {
			continue
		}
		format, ok := deviceFormats[d.Type]
		if !ok {
			return nil, fmt.Errorf("linux.devices: %s has type %q; use c, u, b or p", p, d.Type)
		}
		st, err := stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("linux.devices: %s does not exist on this host, and an unprivileged user cannot make device nodes, only bind the host's; remove it from config.json or run where the host has it", p)
		} else if err != nil {
			return nil, fmt.Errorf("linux.devices: %w", err)
		}
		if st.Mode&unix.S_IFMT != format || (format != unix.S_IFIFO && (unix.Major(st.Rdev) != uint32(d.Major) || unix.Minor(st.Rdev) != uint32(d.Minor))) {
			return nil, fmt.Errorf("linux.devices: config.json asks for %s as %s, and the host's is %s; an unprivileged user can only bind the host's node: fix the type and numbers in config.json",
				p, deviceName(d.Type, format, uint64(d.Major), uint64(d.Minor)), deviceName("", st.Mode&unix.S_IFMT, uint64(unix.Major(st.Rdev)), uint64(unix.Minor(st.Rdev))))
		}
		out = append(out, specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"bind", "nosuid", "noexec"}})
	}
	return out, nil
}

// deviceName says what a node is: "c 10:229", "p", "a directory".
func deviceName(typ string, format uint32, major, minor uint64) string {
	switch format {
	case unix.S_IFCHR, unix.S_IFBLK:
		if typ == "" {
			typ = map[uint32]string{unix.S_IFCHR: "c", unix.S_IFBLK: "b"}[format]
		}
		return fmt.Sprintf("%s %d:%d", typ, major, minor)
	case unix.S_IFIFO:
		return "p (a fifo)"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFREG:
		return "a regular file"
	}
	return "not a device"
}

// deviceUnapplied lists what linux.devices asks for that a bind of the
// host's node cannot give: a fileMode, uid or gid other than the node's
// own. The node keeps its host mode, and its owner shows as the id that
// the host's owner maps to in the container (65534 when unmapped).
func deviceUnapplied(s *specs.Spec, stat statFunc) []string {
	if s.Linux == nil {
		return nil
	}
	var out []string
	for _, d := range s.Linux.Devices {
		st, err := stat(filepath.Clean(d.Path))
		if err != nil {
			continue
		}
		if d.FileMode != nil && uint32(d.FileMode.Perm()) != st.Mode&0o777 {
			out = append(out, fmt.Sprintf("fileMode %o of device %s (the host's node is %o)", d.FileMode.Perm(), d.Path, st.Mode&0o777))
		}
		if d.UID != nil && *d.UID != containerID(s.Linux.UIDMappings, st.Uid) {
			out = append(out, fmt.Sprintf("uid %d of device %s (it shows the host owner's, %d)", *d.UID, d.Path, containerID(s.Linux.UIDMappings, st.Uid)))
		}
		if d.GID != nil && *d.GID != containerID(s.Linux.GIDMappings, st.Gid) {
			out = append(out, fmt.Sprintf("gid %d of device %s (it shows the host group's, %d)", *d.GID, d.Path, containerID(s.Linux.GIDMappings, st.Gid)))
		}
	}
	return out
}

// containerID is the id that host id hid shows as in a user namespace
// with maps: the kernel's overflow id, 65534, when it is not mapped.
func containerID(maps []specs.LinuxIDMapping, hid uint32) uint32 {
	for _, m := range maps {
		if hid >= m.HostID && hid-m.HostID < m.Size {
			return m.ContainerID + hid - m.HostID
		}
	}
	return 65534
}
