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

func TestNamespaceFlags(t *testing.T) {
	s, err := Generate(Options{Rootfs: "/r", Args: []string{"true"}, Cwd: "/", UID: 1000, GID: 100})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ns      []specs.LinuxNamespace
		want    uintptr
		wantErr bool
	}{
		{"user, mount, pid are the clone's", s.Linux.Namespaces, 0, false},
		{"network is unshared by the init", append(s.Linux.Namespaces[:3:3], specs.LinuxNamespace{Type: "network"}), unix.CLONE_NEWNET, false},
		{"uts and ipc too", append(s.Linux.Namespaces[:3:3], specs.LinuxNamespace{Type: "uts"}, specs.LinuxNamespace{Type: "ipc"}), unix.CLONE_NEWUTS | unix.CLONE_NEWIPC, false},
		{"joining is refused", append(s.Linux.Namespaces[:3:3], specs.LinuxNamespace{Type: "network", Path: "/proc/1/ns/net"}), 0, true},
		{"no user namespace", []specs.LinuxNamespace{{Type: "mount"}, {Type: "pid"}}, 0, true},
		{"unknown type", append(s.Linux.Namespaces[:3:3], specs.LinuxNamespace{Type: "time2"}), 0, true},
	}
	for _, tc := range tests {
		s.Linux.Namespaces = tc.ns
		got, err := namespaceFlags(s)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %#x, %v", tc.name, got, err)
		}
	}
}
