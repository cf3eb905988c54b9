package runtime

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// How Mounts applies defaultMounts when host paths are missing: a required
// mount is listed all the same (the init fails to open it), an optional
// one is left out.
func TestDefaultMounts(t *testing.T) {
	all := []string{"/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/home/a", "/work", "/etc/hosts", "/etc/resolv.conf"}
	tests := []struct {
		name   string
		exists func(string) bool
		want   []string
	}{
		{"everything there", func(string) bool { return true }, all},
		{"nothing there", func(string) bool { return false },
			[]string{"/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/home/a", "/work"}},
		{"no resolv.conf", func(p string) bool { return p != "/etc/resolv.conf" },
			[]string{"/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/home/a", "/work", "/etc/hosts"}},
		{"no /var/tmp is the init's to refuse", func(p string) bool { return p != "/var/tmp" }, all},
		{"no Exists: no optional mounts", nil,
			[]string{"/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/home/a", "/work"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range Mounts(MountOptions{Home: "/home/a", Cwd: "/work", Exists: tc.exists}) {
				got = append(got, m.Destination)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("mounts = %v, want %v", got, tc.want)
			}
		})
	}
}

// The mounts, options included, as they were before the table: a change
// here changes every job's mount table.
func TestDefaultMountsExact(t *testing.T) {
	got := Mounts(MountOptions{Home: "/home/a", Cwd: "/work", Exists: func(string) bool { return true },
		Binds: []Bind{{Source: "/d", Dest: "/m", ReadOnly: true}, {Source: "/e", Dest: "/e"}}})
	bind := func(p string, opts ...string) specs.Mount {
		return specs.Mount{Destination: p, Type: "bind", Source: p, Options: append([]string{"rbind"}, opts...)}
	}
	hostFile := []string{"bind", "ro", "nosuid", "nodev", "noexec"}
	want := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		bind("/sys", "nosuid", "noexec", "nodev", "ro"),
		bind("/dev"),
		bind("/tmp"),
		bind("/var/tmp"),
		bind("/home/a"),
		bind("/work"),
		{Destination: "/etc/hosts", Type: "bind", Source: "/etc/hosts", Options: hostFile},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: "/etc/resolv.conf", Options: hostFile},
		{Destination: "/m", Type: "bind", Source: "/d", Options: []string{"rbind", "ro"}},
		bind("/e"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mounts:\n got %+v\nwant %+v", got, want)
	}
	// A caller that changes what it got leaves the next job's alone.
	got[1].Options[0] = "changed"
	if again := Mounts(MountOptions{}); again[1].Options[0] != "rbind" {
		t.Errorf("the table's options changed through a returned mount: %v", again[1].Options)
	}
}
