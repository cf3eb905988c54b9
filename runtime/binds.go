package runtime

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Bind is one host path made visible inside the container.
type Bind struct {
	Source   string // absolute host path
	Dest     string // absolute path inside the container
	ReadOnly bool
}

// ParseBind parses the bind syntax SRC[:DST[:ro|rw]], the one of --bind,
// HPCRUN_BINDS and a config file's binds. A relative SRC is taken relative
// to cwd; DST defaults to SRC.
func ParseBind(s, cwd string) (Bind, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return Bind{}, bindError(s, "too many ':'")
	}
	var dst string
	if len(parts) > 1 && parts[0] != "" { // an empty source is named first
		if dst = parts[1]; dst == "" {
			return Bind{}, bindError(s, "empty destination")
		}
	}
	ro := false
	if len(parts) > 2 {
		switch parts[2] {
		case "ro":
			ro = true
		case "rw":
		default:
			return Bind{}, bindError(s, fmt.Sprintf("unknown option %q (ro or rw)", parts[2]))
		}
	}
	return makeBind(s, parts[0], dst, ro, cwd)
}

// NewBind is ParseBind for a bind given in parts, as a config file's
// {src, dst, ro} gives it: a path may hold a ':', and an empty dst is src.
func NewBind(src, dst string, readOnly bool, cwd string) (Bind, error) {
	s := src
	if dst != "" {
		s += ":" + dst
	}
	if readOnly {
		s += ":ro"
	}
	return makeBind(s, src, dst, readOnly, cwd)
}

// makeBind checks and cleans the parts of the bind s.
func makeBind(s, src, dst string, readOnly bool, cwd string) (Bind, error) {
	if src == "" {
		return Bind{}, bindError(s, "empty source")
	}
	if !filepath.IsAbs(src) {
		src = filepath.Join(cwd, src)
	}
	b := Bind{Source: filepath.Clean(src), ReadOnly: readOnly}
	b.Dest = b.Source
	if dst != "" {
		if !filepath.IsAbs(dst) {
			return Bind{}, bindError(s, "the destination must be an absolute path")
		}
		b.Dest = filepath.Clean(dst)
	}
	if b.Dest == "/" {
		return Bind{}, bindError(s, "cannot bind over the container's /")
	}
	return b, nil
}

func bindError(s, why string) error {
	return fmt.Errorf("bad bind %q: %s; the form is SRC[:DST[:ro]]", s, why)
}

// MountOptions are the host paths a job sees, before they become spec mounts.
type MountOptions struct {
	Home   string // the job's $HOME; "" or "/" binds none
	NoHome bool   // give the job an empty private $HOME instead of the real one
	// HomeSource is the host directory bound as the home (--home SRC);
	// "" for Home itself.
	HomeSource string
	// Contain gives the job a private /tmp and /var/tmp, each an empty
	// tmpfs, in place of the host's (--contain).
	Contain bool
	// PrivateIPC gives the job a /dev/shm of its own, as its private IPC
	// namespace (--containall) has its own System V objects.
	PrivateIPC bool
	Cwd        string              // the caller's working directory on the host, symlinks resolved
	Exists     func(p string) bool // whether a host path exists, for the optional default mounts; nil: none does
	Binds      []Bind              // --bind, in command-line order; last, so they win
}

// need is what a default mount does when its host path is missing.
type need uint8

const (
	// required: the mount is always listed, and the init fails to open a
	// missing source: the job does not start without it.
	required need = iota
	// optional: left out when MountOptions.Exists does not find it.
	optional
)

// defaultMounts are the mounts every job gets, in the order the init
// applies them, before the binds. A row with a job function stands for
// a path of the job's own, which that function places (or not).
var defaultMounts = []struct {
	mount specs.Mount
	need  need
	job   func(o MountOptions, earlier []specs.Mount) (specs.Mount, bool)
}{
	{mount: specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}}},
	{mount: bindMount("/sys", "/sys", "nosuid", "noexec", "nodev", "ro")},
	// The host's /dev with its submounts: GPUs, InfiniBand, /dev/shm
	// and /dev/pts work as they do outside.
	{mount: bindMount("/dev", "/dev")},
	{job: shmMount},
	{job: tmpMount("/tmp")},
	{job: tmpMount("/var/tmp")},
	{job: homeMount},
	{job: cwdMount},
	// Name resolution inside matches the node's, in either network mode.
	{mount: hostFile("/etc/hosts"), need: optional},
	{mount: hostFile("/etc/resolv.conf"), need: optional},
}

// Mounts returns the default mount list followed by the user's binds, in
// the order the init applies them. Later mounts may land inside earlier ones
// (a --bind under $HOME), never the reverse.
func Mounts(o MountOptions) []specs.Mount {
	var ms []specs.Mount
	for _, d := range defaultMounts {
		m, ok := d.mount, true
		switch {
		case d.job != nil:
			m, ok = d.job(o, ms)
		case d.need == optional:
			ok = o.Exists != nil && o.Exists(m.Source)
		}
		if ok {
			m.Options = slices.Clone(m.Options) // the table's own stay as they are
			ms = append(ms, m)
		}
	}
	for _, b := range o.Binds {
		if b.ReadOnly {
			ms = append(ms, bindMount(b.Source, b.Dest, "ro"))
		} else {
			ms = append(ms, bindMount(b.Source, b.Dest))
		}
	}
	return ms
}

// tmpMount is the host's dir bound, or with Contain an empty tmpfs that
// anyone may write to, as the host's.
func tmpMount(dir string) func(MountOptions, []specs.Mount) (specs.Mount, bool) {
	return func(o MountOptions, _ []specs.Mount) (specs.Mount, bool) {
		if o.Contain {
			return specs.Mount{Destination: dir, Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "nodev", "mode=1777"}}, true
		}
		return bindMount(dir, dir), true
	}
}

// shmMount is a private /dev/shm, with PrivateIPC.
func shmMount(o MountOptions, _ []specs.Mount) (specs.Mount, bool) {
	return specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
		Options: []string{"nosuid", "nodev", "noexec", "mode=1777"}}, o.PrivateIPC
}

// homeMount is the caller's $HOME, or with NoHome an empty private one,
// or HomeSource bound at Home.
func homeMount(o MountOptions, earlier []specs.Mount) (specs.Mount, bool) {
	switch {
	case o.Home == "" || o.Home == "/":
		return specs.Mount{}, false
	case o.NoHome:
		return specs.Mount{Destination: o.Home, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=700"}}, true
	case o.HomeSource != "" && o.HomeSource != o.Home:
		return bindMount(o.HomeSource, o.Home), true
	}
	// A $HOME under /tmp or /var/tmp is there already.
	return bindMount(o.Home, o.Home), !HostPathVisible(o.Home, earlier)
}

// cwdMount is the caller's working directory, where bindsCwd says so.
func cwdMount(o MountOptions, earlier []specs.Mount) (specs.Mount, bool) {
	return bindMount(o.Cwd, o.Cwd), bindsCwd(o.Cwd, earlier)
}

// hostFile is a read-only bind of one of the host's files.
func hostFile(path string) specs.Mount {
	return specs.Mount{Destination: path, Type: "bind", Source: path, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}
}

func bindMount(src, dst string, opts ...string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
}

// bindsCwd says whether the working directory needs a bind of its own: not
// when it is /, a system directory, or already visible at the same path
// through an earlier bind.
func bindsCwd(cwd string, earlier []specs.Mount) bool {
	if cwd == "" || HostPathVisible(cwd, earlier) {
		return false
	}
	return !hostDirRule(cwd, func(d hostDir) reach { return d.noCwdBind })
}

// HostPathVisible reports whether a host path is visible at the same path
// inside the container through one of the mounts.
func HostPathVisible(path string, mounts []specs.Mount) bool {
	for _, m := range mounts {
		if m.Type == "bind" && m.Source == m.Destination && within(path, m.Destination) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
