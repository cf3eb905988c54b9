package runtime

import (
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// fakeHost is a host /dev for deviceMounts and deviceUnapplied.
func fakeHost(path string) (*unix.Stat_t, error) {
	nodes := map[string]unix.Stat_t{
		"/dev/fuse": {Mode: unix.S_IFCHR | 0o666, Rdev: unix.Mkdev(10, 229)},
		"/dev/sda":  {Mode: unix.S_IFBLK | 0o660, Rdev: unix.Mkdev(8, 0), Gid: 6},
		"/dev/null": {Mode: unix.S_IFCHR | 0o666, Rdev: unix.Mkdev(1, 3)},
		"/dev/fifo": {Mode: unix.S_IFIFO | 0o600, Uid: 1000},
		"/dev/dir":  {Mode: unix.S_IFDIR | 0o755},
	}
	if st, ok := nodes[path]; ok {
		return &st, nil
	}
	return nil, &os.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
}

func TestDeviceMounts(t *testing.T) {
	bind := func(p string) specs.Mount {
		return specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"bind", "nosuid", "noexec"}}
	}
	tests := []struct {
		name    string
		devs    []specs.LinuxDevice
		ownDev  bool
		want    []specs.Mount
		wantErr string
	}{
		{"none", nil, true, nil, ""},
		{"a matching char device", []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}, true, []specs.Mount{bind("/dev/fuse")}, ""},
		{"u is a char device", []specs.LinuxDevice{{Path: "/dev/fuse", Type: "u", Major: 10, Minor: 229}}, true, []specs.Mount{bind("/dev/fuse")}, ""},
		{"a block device, path cleaned", []specs.LinuxDevice{{Path: "/dev//sda", Type: "b", Major: 8}}, false, []specs.Mount{bind("/dev/sda")}, ""},
		{"a fifo has no numbers", []specs.LinuxDevice{{Path: "/dev/fifo", Type: "p", Major: 8, Minor: 666}}, true, []specs.Mount{bind("/dev/fifo")}, ""},
		{"provided in a /dev of our own", []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}}, true, nil, ""},
		{"provided, even with other numbers", []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 9, Minor: 9}}, true, nil, ""},
		{"not provided without one", []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}}, false, []specs.Mount{bind("/dev/null")}, ""},
		{"missing on the host", []specs.LinuxDevice{{Path: "/dev/test1", Type: "c", Major: 10, Minor: 666}}, true, nil, "/dev/test1 does not exist on this host"},
		{"other numbers", []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 666}}, true, nil, "asks for /dev/fuse as c 10:666, and the host's is c 10:229"},
		{"other type", []specs.LinuxDevice{{Path: "/dev/sda", Type: "c", Major: 8}}, true, nil, "and the host's is b 8:0"},
		{"not a device", []specs.LinuxDevice{{Path: "/dev/dir", Type: "c"}}, true, nil, "the host's is a directory"},
		{"unknown type", []specs.LinuxDevice{{Path: "/dev/fuse", Type: "x"}}, true, nil, `type "x"`},
		{"relative path", []specs.LinuxDevice{{Path: "dev/fuse", Type: "c"}}, true, nil, "not absolute"},
	}
	for _, tc := range tests {
		got, err := deviceMounts(tc.devs, tc.ownDev, fakeHost)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: want one line with %q, got %v", tc.name, tc.wantErr, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestDeviceUnapplied(t *testing.T) {
	mode := func(m os.FileMode) *os.FileMode { return &m }
	id := func(n uint32) *uint32 { return &n }
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
	tests := []struct {
		name string
		dev  specs.LinuxDevice
		want []string
	}{
		{"nothing asked", specs.LinuxDevice{Path: "/dev/fuse"}, nil},
		{"the host's mode", specs.LinuxDevice{Path: "/dev/fuse", FileMode: mode(0o666)}, nil},
		{"another mode", specs.LinuxDevice{Path: "/dev/fuse", FileMode: mode(0o600)}, []string{"fileMode 600 of device /dev/fuse (the host's node is 666)"}},
		{"an owner that maps", specs.LinuxDevice{Path: "/dev/fifo", UID: id(0)}, nil},
		{"root's node shows as the overflow id", specs.LinuxDevice{Path: "/dev/sda", UID: id(0), GID: id(0)},
			[]string{"uid 0 of device /dev/sda (it shows the host owner's, 65534)", "gid 0 of device /dev/sda (it shows the host group's, 65534)"}},
		{"missing: refused elsewhere", specs.LinuxDevice{Path: "/dev/test1", UID: id(0)}, nil},
	}
	for _, tc := range tests {
		s := &specs.Spec{Linux: &specs.Linux{UIDMappings: maps, GIDMappings: maps, Devices: []specs.LinuxDevice{tc.dev}}}
		if got := deviceUnapplied(s, fakeHost); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
