package runtime

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestAdaptSpec(t *testing.T) {
	// A rootful runc spec, trimmed: no user namespace or mappings, sysfs,
	// cgroup, mqueue and devpts with gid=5.
	s := &specs.Spec{
		Process: &specs.Process{Args: []string{"sh"}, User: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{10}}},
		Root:    &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue"},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}}},
	}
	if err := AdaptSpec(s, "/b", 1000, 100); err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != "/b/rootfs" {
		t.Errorf("root.path %q", s.Root.Path)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	if want := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.UserNamespace, specs.MountNamespace}; !reflect.DeepEqual(ns, want) {
		t.Errorf("namespaces %v, want %v", ns, want)
	}
	if m := s.Linux.UIDMappings; len(m) != 1 || m[0] != (specs.LinuxIDMapping{ContainerID: 0, HostID: 1000, Size: 1}) {
		t.Errorf("uid map %v", m)
	}
	if m := s.Linux.GIDMappings; len(m) != 1 || m[0] != (specs.LinuxIDMapping{ContainerID: 0, HostID: 100, Size: 1}) {
		t.Errorf("gid map %v", m)
	}
	if !reflect.DeepEqual(s.Process.User.AdditionalGids, []uint32{10}) {
		t.Error("supplementary groups not kept for CreateBundle's warning")
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination+":"+m.Type)
		if m.Type == "devpts" {
			for _, o := range m.Options {
				if o == "gid=5" {
					t.Error("devpts keeps gid=5, which is not mapped")
				}
			}
		}
	}
	if want := []string{"/proc:proc", "/dev/pts:devpts", "/sys:bind"}; !reflect.DeepEqual(dests, want) {
		t.Errorf("mounts %v, want %v", dests, want)
	}

	for name, bad := range map[string]*specs.Spec{
		"no process": {Root: &specs.Root{Path: "r"}},
		"no args":    {Process: &specs.Process{}, Root: &specs.Root{Path: "r"}},
		"no root":    {Process: &specs.Process{Args: []string{"sh"}}},
	} {
		if err := AdaptSpec(bad, "/b", 1, 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"job-1": true, "slurm-12.0.3": true, "a_b+c": true,
		"": false, ".": false, "..": false, "a/b": false, "../x": false, "a b": false, "é": false,
	} {
		if err := CheckID(id); (err == nil) != ok {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
}

func TestDefaultRoot(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "/tmp/hpcrun-7/run"},
		{[]string{"XDG_RUNTIME_DIR=" + dir}, dir + "/hpcrun"},
		{[]string{"XDG_RUNTIME_DIR=/nonexistent/run/user/7"}, "/tmp/hpcrun-7/run"},
		{[]string{"XDG_RUNTIME_DIR="}, "/tmp/hpcrun-7/run"},
	} {
		if got := DefaultRoot(tc.env, 7); got != tc.want {
			t.Errorf("DefaultRoot(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	in := request{op: opExec, sig: 15, all: true, tty: true, args: []string{"sh", "-c", "x"}, env: []string{"A=1"}, cwd: "/w"}
	b, err := readFrame(bytesReader(in.encode()))
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: %+v != %+v", out, in)
	}
	if _, err := decodeRequest(b[:len(b)-2]); err == nil {
		t.Error("a truncated request decoded")
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func TestAddedNamespaces(t *testing.T) {
	ns := func(types ...specs.LinuxNamespaceType) *specs.Linux {
		l := &specs.Linux{}
		for _, t := range types {
			l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t})
		}
		return l
	}
	for _, c := range []struct {
		name  string
		linux *specs.Linux
		want  string
	}{
		{"all three", ns(specs.PIDNamespace, specs.UserNamespace, specs.MountNamespace, specs.NetworkNamespace), ""},
		{"no linux", nil, "the caller's user/mount/pid namespace"},
		{"no pid", ns(specs.UserNamespace, specs.MountNamespace), "the caller's pid namespace"},
		{"user only", ns(specs.UserNamespace, specs.IPCNamespace), "the caller's mount/pid namespace"},
	} {
		got := strings.Join(addedNamespaces(&specs.Spec{Linux: c.linux}), "")
		if !strings.HasPrefix(got, c.want) || (c.want == "") != (got == "") {
			t.Errorf("%s: %q, want it to start with %q", c.name, got, c.want)
		}
	}
}
