package runtime

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		opts  []string
		flags uintptr
		prop  []uintptr
		data  string
	}{
		{nil, 0, nil, ""},
		{[]string{"rbind", "ro"}, unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, nil, ""},
		{[]string{"ro", "rw"}, 0, nil, ""},
		{[]string{"nosuid", "nodev", "noexec", "mode=755", "size=64m"}, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, nil, "mode=755,size=64m"},
		{[]string{"bind", "rprivate"}, unix.MS_BIND, []uintptr{unix.MS_PRIVATE | unix.MS_REC}, ""},
		{[]string{"suid", "nosuid"}, unix.MS_NOSUID, nil, ""},
	}
	for _, tc := range tests {
		f, p, d := parseMountOptions(tc.opts)
		if f != tc.flags || !reflect.DeepEqual(p, tc.prop) || d != tc.data {
			t.Errorf("%v: got %#x %v %q, want %#x %v %q", tc.opts, f, p, d, tc.flags, tc.prop, tc.data)
		}
	}
}

func TestIsBindAndAttrs(t *testing.T) {
	if !isBind(specs.Mount{Type: "none", Options: []string{"rbind"}}) || !isBind(specs.Mount{Type: "bind"}) {
		t.Error("binds not recognised")
	}
	if isBind(specs.Mount{Type: "proc"}) || isBind(specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}) {
		t.Error("non-binds taken for binds")
	}
	if a := attrsOf(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_BIND); a != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID {
		t.Errorf("attrsOf = %#x", a)
	}
}

func TestSysProcAttr(t *testing.T) {
	s, err := Generate(Options{Rootfs: "/r", Args: []string{"true"}, Cwd: "/", UID: 1000, GID: 100})
	if err != nil {
		t.Fatal(err)
	}
	a, err := sysProcAttr(s)
	if err != nil {
		t.Fatal(err)
	}
	if a.Cloneflags != unix.CLONE_NEWUSER|unix.CLONE_NEWNS|unix.CLONE_NEWPID {
		t.Errorf("cloneflags = %#x", a.Cloneflags)
	}
	if len(a.UidMappings) != 1 || a.UidMappings[0].HostID != 1000 || a.GidMappingsEnableSetgroups {
		t.Errorf("maps = %+v", a)
	}
	if a.Pdeathsig != unix.SIGKILL {
		t.Error("no parent-death signal")
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "network", Path: "/proc/1/ns/net"})
	if _, err := sysProcAttr(s); err == nil {
		t.Error("joining a namespace was accepted")
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "mount"}}
	if _, err := sysProcAttr(s); err == nil {
		t.Error("a spec without a user namespace was accepted")
	}
}
