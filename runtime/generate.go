package runtime

import (
	"errors"
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Options are the resolved settings of one job: what the command line, the
// config files and the image left once every default was applied.
type Options struct {
	Rootfs   string        // absolute path of the root filesystem
	Args     []string      // the job's argv; Args[0] is looked up in the job's PATH
	Env      []string      // the job's final environment, K=V
	Cwd      string        // the job's working directory inside the container
	UID, GID uint32        // the caller's ids on the host
	Fakeroot bool          // map the caller to uid/gid 0 instead of keeping its ids
	Mounts   []specs.Mount // in order; see Mounts for the defaults
	Terminal bool          // the job's stdin is a terminal
}

// SpecVersion is the ociVersion of generated specs: the oldest version
// whose fields they use. Older runtimes check it; crun 1.8 (Debian 12)
// accepts only 1.0.x.
const SpecVersion = "1.0.2"

// DefaultPath is the PATH a job gets when its image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// fakerootCaps is the capability set a --fakeroot job keeps inside its user
// namespace: the default set of Docker and runc, so package managers and
// chown-happy install scripts behave, and nothing that reaches the host.
var fakerootCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Generate turns resolved options into a rootless runtime spec. It is pure:
// it reads no files and makes no system calls.
func Generate(o Options) (*specs.Spec, error) {
	switch {
	case !filepath.IsAbs(o.Rootfs):
		return nil, fmt.Errorf("rootfs %q is not an absolute path", o.Rootfs)
	case len(o.Args) == 0 || o.Args[0] == "":
		return nil, errors.New("no command given")
	case !filepath.IsAbs(o.Cwd):
		return nil, fmt.Errorf("working directory %q is not an absolute path", o.Cwd)
	}
	inUID, inGID := o.UID, o.GID
	caps := &specs.LinuxCapabilities{}
	if o.Fakeroot {
		inUID, inGID = 0, 0
		caps = &specs.LinuxCapabilities{
			Bounding:  fakerootCaps,
			Effective: fakerootCaps,
			Permitted: fakerootCaps,
		}
	}
	return &specs.Spec{
		Version: SpecVersion,
		Root:    &specs.Root{Path: filepath.Clean(o.Rootfs), Readonly: true},
		Process: &specs.Process{
			Terminal:        o.Terminal,
			User:            specs.User{UID: inUID, GID: inGID},
			Args:            append([]string(nil), o.Args...),
			Env:             append([]string(nil), o.Env...),
			Cwd:             filepath.Clean(o.Cwd),
			Capabilities:    caps,
			NoNewPrivileges: true,
		},
		Mounts: append([]specs.Mount(nil), o.Mounts...),
		Linux: &specs.Linux{
			// An unprivileged process may write a single-id map of its own
			// uid and gid, and nothing else: no newuidmap, no subuid ranges.
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: inUID, HostID: o.UID, Size: 1}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: inGID, HostID: o.GID, Size: 1}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.UserNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.PIDNamespace},
			},
		},
	}, nil
}
