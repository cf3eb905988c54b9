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

func TestStagePlan(t *testing.T) {
	image := map[string]bool{"/r": true, "/r/etc": true, "/r/usr": true, "/r/usr/local": true, "/r/proc": true, "/r/dev": true}
	exists := func(p string) bool { return image[p] }
	tests := []struct {
		name    string
		targets []string
		want    []string
	}{
		{"all present", []string{"/r/proc", "/r/dev", "/r/etc"}, nil},
		{"missing at the top", []string{"/r/proc", "/r/data"}, []string{"/r"}},
		{"missing deep", []string{"/r/usr/local/new/x"}, []string{"/r/usr/local"}},
		{"shallowest first, each once", []string{"/r/usr/local/a", "/r/data", "/r/usr/local/b", "/r/opt/x"}, []string{"/r", "/r/usr/local"}},
		{"below an earlier target: made in that mount", []string{"/r/a", "/r/a/b/c"}, []string{"/r"}},
		{"below an earlier present target", []string{"/r/dev", "/r/dev/fuse", "/r/dev/pts"}, nil},
		{"below a later target: staged still", []string{"/r/usr/local/new", "/r/usr/local"}, []string{"/r/usr/local"}},
		{"the root itself", []string{"/r"}, nil},
	}
	for _, tc := range tests {
		if got := stagePlan("/r", tc.targets, exists); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: stagePlan(%v) = %v, want %v", tc.name, tc.targets, got, tc.want)
		}
	}
}

func TestBindUnapplied(t *testing.T) {
	const relatimeRO = unix.ST_RELATIME | unix.ST_RDONLY
	tests := []struct {
		name string
		opts []string
		src  int64
		want []string
	}{
		{"restrictions apply", []string{"rbind", "ro", "nosuid", "nodev", "noexec", "rprivate", "rro"}, unix.ST_RELATIME, nil},
		{"the source's atime", []string{"bind", "relatime"}, unix.ST_RELATIME, nil},
		{"strictatime on a strictatime source", []string{"bind", "strictatime"}, 0, nil},
		{"filesystem options", []string{"bind", "mode=755", "size=1k"}, unix.ST_RELATIME, []string{"options mode=755,size=1k of the bind at /mnt (a bind takes no filesystem options)"}},
		{"another atime", []string{"bind", "nosuid", "strictatime"}, unix.ST_RELATIME, []string{"strictatime on the bind at /mnt (it keeps the flags of /src)"}},
		{"nodiratime", []string{"bind", "nodiratime"}, unix.ST_RELATIME, []string{"nodiratime on the bind at /mnt (it keeps the flags of /src)"}},
		{"rw of a read-only source", []string{"bind", "rw"}, relatimeRO, []string{"rw on the bind at /mnt (it keeps the flags of /src)"}},
		{"rw of a writable source", []string{"bind", "rw", "exec"}, unix.ST_RELATIME, nil},
		{"rw then ro", []string{"bind", "rw", "ro"}, relatimeRO, nil},
		{"suid, dev, exec", []string{"bind", "suid", "dev", "exec"}, unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_RELATIME, []string{"suid,dev,exec on the bind at /mnt (it keeps the flags of /src)"}},
		{"sync", []string{"bind", "sync", "dirsync"}, unix.ST_RELATIME, []string{"sync,dirsync on the bind at /mnt (it keeps the flags of /src)"}},
	}
	for _, tc := range tests {
		got := bindUnapplied(specs.Mount{Destination: "/mnt", Source: "/src", Type: "bind", Options: tc.opts}, tc.src)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRecursiveAttrs(t *testing.T) {
	if a := recursiveAttrsOf([]string{"rbind", "rro", "rnosuid", "ro"}); a != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID {
		t.Errorf("recursiveAttrsOf = %#x", a)
	}
	if _, _, data := parseMountOptions([]string{"rro", "rnoexec", "size=1k"}); data != "size=1k" {
		t.Errorf("recursive options passed as data: %q", data)
	}
}

func TestMountLabelUnapplied(t *testing.T) {
	const l = "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811"
	for _, tc := range []struct {
		label   string
		selinux bool
		want    int
	}{{"", true, 0}, {l, false, 0}, {l, true, 1}} {
		if got := mountLabelUnapplied(tc.label, tc.selinux); len(got) != tc.want {
			t.Errorf("mountLabelUnapplied(%q, %v) = %q", tc.label, tc.selinux, got)
		}
	}
}
