package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestSysctlFile(t *testing.T) {
	const net, ipc, uts = unix.CLONE_NEWNET, unix.CLONE_NEWIPC, unix.CLONE_NEWUTS
	for _, c := range []struct {
		key     string
		unshare uintptr
		file    string // "" for an error
		err     string
	}{
		{"net.ipv4.ip_forward", net, "/proc/sys/net/ipv4/ip_forward", ""},
		{"net/ipv4/conf/eth0.100/forwarding", net, "/proc/sys/net/ipv4/conf/eth0.100/forwarding", ""},
		{"net.ipv4.ip_forward", ipc, "", "needs a network namespace"},
		{"kernel.shmmax", ipc, "/proc/sys/kernel/shmmax", ""},
		{"kernel.msgmni", ipc | net, "/proc/sys/kernel/msgmni", ""},
		{"fs.mqueue.msg_max", ipc, "/proc/sys/fs/mqueue/msg_max", ""},
		{"kernel.shmmax", net, "", "needs a ipc namespace"},
		{"kernel.domainname", uts, "/proc/sys/kernel/domainname", ""},
		{"kernel.hostname", uts, "", "not scoped by a namespace"},
		{"kernel.pid_max", net | ipc | uts, "", "not scoped by a namespace"},
		{"vm.overcommit_memory", net | ipc, "", "not scoped by a namespace"},
		{"fs.mqueue", ipc, "", "not scoped by a namespace"},
		// Nothing leads out of /proc/sys, nor anywhere unexpected in it.
		{"net.ipv4..ip_forward", net, "", "not a sysctl key"},
		{"net/ipv4/../../kernel/pid_max", net, "", "not a sysctl key"},
		{"net/./ipv4/ip_forward", net, "", "not a sysctl key"},
		{"net/ipv4//ip_forward", net, "", "not a sysctl key"},
		{"/net/ipv4/ip_forward", net, "", "not a sysctl key"},
		{"net.ipv4.ip forward", net, "", "not a sysctl key"},
		{"net.ipv4.ip_forward\n", net, "", "not a sysctl key"},
		{"", net, "", "not a sysctl key"},
		{".net", net, "", "not a sysctl key"},
	} {
		file, err := sysctlFile(c.key, c.unshare)
		switch {
		case c.err == "" && (err != nil || file != c.file):
			t.Errorf("%q: %q, %v; want %q", c.key, file, err, c.file)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: %q, %v; want an error with %q", c.key, file, err, c.err)
		}
	}
	w, err := sysctlWrites(map[string]string{"net.b": "2", "net.a": "1"}, net)
	if err != nil || !reflect.DeepEqual(w, []string{"/proc/sys/net/a=1", "/proc/sys/net/b=2"}) {
		t.Errorf("sysctlWrites: %q, %v", w, err)
	}
}

func TestRootPropagation(t *testing.T) {
	for _, c := range []struct {
		mode  string
		flags uintptr
		ok    bool
	}{
		{"", 0, true},
		{"private", unix.MS_PRIVATE, true},
		{"rprivate", unix.MS_PRIVATE | unix.MS_REC, true},
		{"slave", unix.MS_SLAVE, true},
		{"rslave", unix.MS_SLAVE | unix.MS_REC, true},
		{"shared", unix.MS_SHARED, true},
		{"rshared", unix.MS_SHARED | unix.MS_REC, true},
		{"unbindable", unix.MS_UNBINDABLE, true},
		{"runbindable", unix.MS_UNBINDABLE | unix.MS_REC, true},
		{"Shared", 0, false},
		{"rec", 0, false},
	} {
		f, err := rootPropagation(c.mode)
		if f != c.flags || (err == nil) != c.ok {
			t.Errorf("%q: %#x, %v", c.mode, f, err)
		}
	}
}

func TestCheckBundleCaps(t *testing.T) {
	all := func(n ...string) *specs.LinuxCapabilities {
		return &specs.LinuxCapabilities{Bounding: n, Effective: n, Inheritable: n, Permitted: n, Ambient: n}
	}
	for _, c := range []struct {
		name  string
		caps  *specs.LinuxCapabilities
		last  int
		fence bool
		want  *specs.LinuxCapabilities
		warn  string
		err   string
	}{
		{"none", nil, 40, true, nil, "", ""},
		{"all kept", all("CAP_SYS_ADMIN", "cap_net_admin", "CAP_SYS_PTRACE"), 40, true, all("CAP_SYS_ADMIN", "cap_net_admin", "CAP_SYS_PTRACE"), "", ""},
		{"kernel lacks", all("CAP_BPF", "CAP_KILL", "CAP_CHECKPOINT_RESTORE"), 37, true, all("CAP_KILL"), "CAP_BPF/CAP_CHECKPOINT_RESTORE (not in this kernel)", ""},
		{"no fence", all("CAP_KILL", "CAP_SYS_PTRACE"), 40, false, all("CAP_KILL"), "CAP_SYS_PTRACE (this kernel cannot fence", ""},
		{"unknown", &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Ambient: []string{"CAP_TEST"}}, 40, true, nil, "", `process.capabilities.ambient: unknown capability "CAP_TEST"`},
	} {
		warns, err := checkBundleCaps(c.caps, c.last, c.fence)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.name, err, c.err)
			}
			continue
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(c.caps, c.want) {
			t.Errorf("%s: kept %+v, want %+v", c.name, c.caps, c.want)
		}
		if got := strings.Join(warns, "; "); (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
			t.Errorf("%s: warnings %q, want %q", c.name, got, c.warn)
		}
	}
}

func TestInitCapsFor(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: []string{"CAP_SYS_NICE", "CAP_CHOWN"}, Ambient: []string{"CAP_BPF"}}}}
	got := initCapsFor(s)
	want := append(append([]uintptr(nil), initCaps...), unix.CAP_SYS_NICE, unix.CAP_BPF)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("initCapsFor: %v, want %v", got, want)
	}
	if got := initCapsFor(&specs.Spec{Process: &specs.Process{}}); !reflect.DeepEqual(got, initCaps) {
		t.Errorf("no capabilities: %v", got)
	}
	if !needsFence(capSets{Bounding: 1 << unix.CAP_SYS_PTRACE}) || needsFence(capSets{Bounding: 1<<unix.CAP_SYS_PTRACE - 1}) {
		t.Error("needsFence")
	}
}

func TestCheckUserMapped(t *testing.T) {
	one := func(in, host uint32) []specs.LinuxIDMapping {
		return []specs.LinuxIDMapping{{ContainerID: in, HostID: host, Size: 1}}
	}
	for _, c := range []struct {
		name     string
		uid, gid uint32
		err      string
	}{
		{"mapped", 0, 0, ""},
		{"uid", 10, 0, "process.user.uid 10 is not mapped by linux.uidMappings: rootless, only your own uid (1000) can be mapped, to one id in the container; set process.user.uid to that id (0)"},
		{"gid", 0, 5, "process.user.gid 5 is not mapped by linux.gidMappings: rootless, only your own gid (100)"},
	} {
		err := checkUserMapped(specs.User{UID: c.uid, GID: c.gid}, &specs.Linux{UIDMappings: one(0, 1000), GIDMappings: one(0, 100)}, 1000, 100)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
	}
}

func TestBundleUnapplied(t *testing.T) {
	limit := int64(1 << 30)
	for _, c := range []struct {
		name string
		user specs.User
		res  *specs.LinuxResources
		want []string
	}{
		{"nothing", specs.User{GID: 10, AdditionalGids: []uint32{10}}, &specs.LinuxResources{Memory: &specs.LinuxMemory{}}, nil},
		{"gids", specs.User{GID: 10, AdditionalGids: []uint32{5, 10, 6, 5}}, nil,
			[]string{"process.user.additionalGids 5/6 (an unprivileged user namespace cannot set supplementary groups)"}},
		{"resources", specs.User{}, &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: limit},
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			[]string{"linux.resources.devices (a device cgroup takes root to enforce)"}},
	} {
		s := &specs.Spec{Process: &specs.Process{User: c.user}, Linux: &specs.Linux{Resources: c.res}}
		got, err := bundleUnapplied(s, 40, true)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func TestLookPathChecks(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), nil, 0o644)
	os.Symlink("nowhere", filepath.Join(dir, "dangling"))
	for _, c := range []struct {
		file, wd string
		want     error
	}{
		{filepath.Join(dir, "prog"), "", nil},
		{"./prog", dir, nil},
		{filepath.Join(dir, "none"), "", ErrCommandNotFound},
		{filepath.Join(dir, "dangling"), "", ErrCommandNotFound},
		{filepath.Join(dir, "data/x"), "", ErrCommandNotFound},
		{"./none", dir, ErrCommandNotFound},
		{filepath.Join(dir, "data"), "", ErrNotExecutable},
		{dir + "/", "", ErrNotExecutable},
		{"prog", "", nil}, // found in PATH
		{"none", "", ErrCommandNotFound},
	} {
		_, err := lookPath(c.file, dir, c.wd)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("lookPath(%q, wd %q): %v, want %v", c.file, c.wd, err, c.want)
		}
	}
}
