package runtime

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGenerate(t *testing.T) {
	base := Options{
		Rootfs: "/cache/rootfs/", Args: []string{"python3", "x.py"}, Env: []string{"PATH=/bin"},
		Cwd: "/home/alice/run/", UID: 1000, GID: 100,
		Mounts: []specs.Mount{{Destination: "/tmp", Type: "bind", Source: "/tmp", Options: []string{"rbind"}}},
	}
	tests := []struct {
		name     string
		mutate   func(*Options)
		uid, gid uint32
		caps     []string
		wantErr  string
	}{
		{name: "keeps the caller's ids", uid: 1000, gid: 100},
		{name: "fakeroot maps the caller to 0", mutate: func(o *Options) { o.Fakeroot = true }, uid: 0, gid: 0, caps: fakerootCaps},
		{name: "relative rootfs", mutate: func(o *Options) { o.Rootfs = "rootfs" }, wantErr: "not an absolute path"},
		{name: "no command", mutate: func(o *Options) { o.Args = nil }, wantErr: "no command"},
		{name: "empty command", mutate: func(o *Options) { o.Args = []string{""} }, wantErr: "no command"},
		{name: "relative cwd", mutate: func(o *Options) { o.Cwd = "run" }, wantErr: "working directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			if tc.mutate != nil {
				tc.mutate(&o)
			}
			s, err := Generate(o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Root.Path != "/cache/rootfs" || !s.Root.Readonly {
				t.Errorf("root = %+v, want read-only /cache/rootfs", s.Root)
			}
			if s.Process.User.UID != tc.uid || s.Process.User.GID != tc.gid {
				t.Errorf("user = %+v, want %d:%d", s.Process.User, tc.uid, tc.gid)
			}
			wantU := []specs.LinuxIDMapping{{ContainerID: tc.uid, HostID: 1000, Size: 1}}
			wantG := []specs.LinuxIDMapping{{ContainerID: tc.gid, HostID: 100, Size: 1}}
			if !reflect.DeepEqual(s.Linux.UIDMappings, wantU) || !reflect.DeepEqual(s.Linux.GIDMappings, wantG) {
				t.Errorf("maps = %v %v, want %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings, wantU, wantG)
			}
			var ns []specs.LinuxNamespaceType
			for _, n := range s.Linux.Namespaces {
				ns = append(ns, n.Type)
			}
			if want := []specs.LinuxNamespaceType{"user", "mount", "pid"}; !reflect.DeepEqual(ns, want) {
				t.Errorf("namespaces = %v, want %v", ns, want)
			}
			if !s.Process.NoNewPrivileges {
				t.Error("no_new_privs is off")
			}
			if !reflect.DeepEqual(s.Process.Capabilities.Bounding, tc.caps) || !reflect.DeepEqual(s.Process.Capabilities.Effective, tc.caps) {
				t.Errorf("caps = %+v, want %v", s.Process.Capabilities, tc.caps)
			}
			if s.Process.Cwd != "/home/alice/run" {
				t.Errorf("cwd = %q", s.Process.Cwd)
			}
			if !reflect.DeepEqual(s.Mounts, base.Mounts) {
				t.Errorf("mounts = %v", s.Mounts)
			}
			if s.Version != SpecVersion {
				t.Errorf("ociVersion = %q", s.Version)
			}
		})
	}
}

func TestGenerateDoesNotAlias(t *testing.T) {
	o := Options{Rootfs: "/r", Args: []string{"a"}, Env: []string{"A=1"}, Cwd: "/"}
	s, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Process.Args[0], s.Process.Env[0] = "b", "B=2"
	if o.Args[0] != "a" || o.Env[0] != "A=1" {
		t.Fatal("the spec shares slices with its options")
	}
}

func TestParseBind(t *testing.T) {
	tests := []struct {
		in      string
		want    Bind
		wantErr string
	}{
		{in: "/data", want: Bind{Source: "/data", Dest: "/data"}},
		{in: "/data/", want: Bind{Source: "/data", Dest: "/data"}},
		{in: "/data:/mnt", want: Bind{Source: "/data", Dest: "/mnt"}},
		{in: "/data:/mnt:ro", want: Bind{Source: "/data", Dest: "/mnt", ReadOnly: true}},
		{in: "/data:/mnt:rw", want: Bind{Source: "/data", Dest: "/mnt"}},
		{in: "rel/dir:/mnt", want: Bind{Source: "/work/rel/dir", Dest: "/mnt"}},
		{in: "../up", want: Bind{Source: "/up", Dest: "/up"}},
		{in: "", wantErr: "empty source"},
		{in: ":", wantErr: "empty source"},
		{in: ":/mnt", wantErr: "empty source"},
		{in: "/data:", wantErr: "empty destination"},
		{in: "/data:mnt", wantErr: "absolute"},
		{in: "/data:/mnt:rx", wantErr: "unknown option"},
		{in: "/a:/b:ro:x", wantErr: "too many"},
		{in: "/data:/", wantErr: "container's /"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBind(tc.in, "/work")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "SRC[:DST[:ro]]") {
					t.Fatalf("err = %v, want %q and the syntax", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// NewBind follows ParseBind's rules for a bind given in parts.
func TestNewBind(t *testing.T) {
	tests := []struct {
		src, dst string
		ro       bool
		want     Bind
		wantErr  string
	}{
		{src: "/data", want: Bind{Source: "/data", Dest: "/data"}},
		{src: "/data/", dst: "/mnt/", ro: true, want: Bind{Source: "/data", Dest: "/mnt", ReadOnly: true}},
		{src: "/a:b", dst: "/c", want: Bind{Source: "/a:b", Dest: "/c"}},
		{src: "rel", want: Bind{Source: "/work/rel", Dest: "/work/rel"}},
		{src: "", dst: "/mnt", wantErr: `bad bind ":/mnt": empty source`},
		{src: "/data", dst: "mnt", wantErr: `bad bind "/data:mnt": the destination must be an absolute path`},
		{src: "/data", dst: "/", ro: true, wantErr: `bad bind "/data:/:ro": cannot bind over the container's /`},
	}
	for _, tc := range tests {
		got, err := NewBind(tc.src, tc.dst, tc.ro, "/work")
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("NewBind(%q, %q, %v): err = %v, want %q", tc.src, tc.dst, tc.ro, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NewBind(%q, %q, %v) = %+v, %v; want %+v", tc.src, tc.dst, tc.ro, got, err, tc.want)
		}
	}
}

func TestMounts(t *testing.T) {
	dests := func(ms []specs.Mount) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Destination)
		}
		return out
	}
	defaults := []string{"/proc", "/sys", "/dev", "/tmp", "/var/tmp"}
	tests := []struct {
		name string
		o    MountOptions
		want []string
	}{
		{"home and cwd", MountOptions{Home: "/home/a", Cwd: "/scratch/run"},
			append(defaults[:5:5], "/home/a", "/scratch/run")},
		{"cwd under home is covered", MountOptions{Home: "/home/a", Cwd: "/home/a/run"},
			append(defaults[:5:5], "/home/a")},
		{"cwd is home", MountOptions{Home: "/home/a", Cwd: "/home/a"}, append(defaults[:5:5], "/home/a")},
		{"cwd under /tmp is covered", MountOptions{Cwd: "/tmp/x"}, defaults},
		{"cwd under /var/tmp is covered", MountOptions{Cwd: "/var/tmp/x"}, defaults},
		{"cwd is /", MountOptions{Cwd: "/"}, defaults},
		{"cwd in a system dir", MountOptions{Cwd: "/usr/local/src"}, defaults},
		{"cwd beside a system dir", MountOptions{Cwd: "/usrdata/x"}, append(defaults[:5:5], "/usrdata/x")},
		{"cwd in node-local scratch under /var", MountOptions{Cwd: "/var/scratch/a"}, append(defaults[:5:5], "/var/scratch/a")},
		{"cwd under /run", MountOptions{Cwd: "/run/user/1000"}, append(defaults[:5:5], "/run/user/1000")},
		{"cwd in the host's package db", MountOptions{Cwd: "/var/lib/dpkg"}, defaults},
		{"cwd is /var", MountOptions{Cwd: "/var"}, defaults},
		{"cwd is /home", MountOptions{Cwd: "/home"}, defaults},
		{"no home", MountOptions{Home: "/home/a", NoHome: true, Cwd: "/home/a/run"},
			append(defaults[:5:5], "/home/a", "/home/a/run")},
		{"binds come last", MountOptions{Home: "/home/a", Cwd: "/home/a",
			Binds: []Bind{{Source: "/data", Dest: "/home/a/data", ReadOnly: true}}},
			append(defaults[:5:5], "/home/a", "/home/a/data")},
		{"home / binds nothing", MountOptions{Home: "/", Cwd: "/"}, defaults},
		{"home under /tmp is there already", MountOptions{Home: "/tmp/u/home", Cwd: "/tmp/u/home"}, defaults},
		{"home is /var/tmp", MountOptions{Home: "/var/tmp", Cwd: "/var/tmp"}, defaults},
		{"no home under /tmp still hides it", MountOptions{Home: "/tmp/u", NoHome: true}, append(defaults[:5:5], "/tmp/u")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := Mounts(tc.o)
			if got := dests(ms); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("mounts = %v, want %v", got, tc.want)
			}
		})
	}
	ms := Mounts(MountOptions{Home: "/h", NoHome: true, Binds: []Bind{{Source: "/d", Dest: "/m", ReadOnly: true}}})
	byDest := map[string]specs.Mount{}
	for _, m := range ms {
		byDest[m.Destination] = m
	}
	if m := byDest["/proc"]; m.Type != "proc" {
		t.Errorf("/proc = %+v", m)
	}
	if m := byDest["/sys"]; !reflect.DeepEqual(m.Options, []string{"rbind", "nosuid", "noexec", "nodev", "ro"}) {
		t.Errorf("/sys is not a read-only rbind: %+v", m)
	}
	if m := byDest["/dev"]; m.Source != "/dev" || m.Type != "bind" {
		t.Errorf("/dev is not the host's: %+v", m)
	}
	if m := byDest["/h"]; m.Type != "tmpfs" {
		t.Errorf("--no-home gives %+v, want a tmpfs", m)
	}
	if m := byDest["/m"]; m.Source != "/d" || !reflect.DeepEqual(m.Options, []string{"rbind", "ro"}) {
		t.Errorf("read-only bind = %+v", m)
	}
}
