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

func TestMountsBelow(t *testing.T) {
	const mi = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:30 / /stage/root ro,nosuid,nodev master:1 - ext4 /dev/sda1 rw
41 40 0:31 / /stage/root/opt rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw
42 40 0:32 / /stage/root/my\040dir rw - tmpfs tmpfs rw
43 22 0:33 / /stage/rootfs2 rw - tmpfs tmpfs rw
44 41 0:34 / /stage/root/opt/deep rw - tmpfs tmpfs rw
`
	tests := []struct {
		path string
		want []mountInfo
	}{
		{"/stage/root", []mountInfo{{40, "/stage/root"}, {41, "/stage/root/opt"}, {42, "/stage/root/my dir"}, {44, "/stage/root/opt/deep"}}},
		{"/stage/root/opt", []mountInfo{{41, "/stage/root/opt"}, {44, "/stage/root/opt/deep"}}},
		{"/", []mountInfo{{22, "/"}, {40, "/stage/root"}, {41, "/stage/root/opt"}, {42, "/stage/root/my dir"}, {43, "/stage/rootfs2"}, {44, "/stage/root/opt/deep"}}},
		{"/stage/ro", nil},
	}
	for _, tc := range tests {
		if got := mountsBelow(mi, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("mountsBelow(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestFdinfoMountID(t *testing.T) {
	id, ok := fdinfoMountID("pos:\t0\nflags:\t012100000\nmnt_id:\t41\nino:\t2\n")
	if !ok || id != 41 {
		t.Errorf("fdinfoMountID = %d, %v", id, ok)
	}
	if _, ok := fdinfoMountID("pos:\t0\n"); ok {
		t.Error("fdinfoMountID found a mnt_id in none")
	}
}
