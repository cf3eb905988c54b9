package launch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// TestOpenImagePlain: the flags that choose the image, with a plain
// directory for a rootfs (nothing is unpacked, no cache is needed).
func TestOpenImagePlain(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	tests := []struct {
		name  string
		r     Request
		want  string // the rootfs
		err   string
		usage bool
	}{
		{name: "--rootfs", r: Request{Rootfs: rootfs}, want: rootfs},
		{name: "--rootfs, relative", r: Request{Rootfs: "rootfs/"}, want: rootfs},
		{name: "--image of a directory, relative", r: Request{Image: "rootfs"}, want: rootfs},
		{name: "--image of a directory with no /bin", r: Request{Image: "junk"},
			err: filepath.Join(dir, "junk") + " is no image: it has no index.json (an OCI layout) and no /bin (a root filesystem)"},
		{name: "--rootfs with a platform", r: Request{Rootfs: rootfs, Platform: "linux/arm64"}, want: rootfs},
		{name: "--image and --rootfs", r: Request{Image: "x", Rootfs: rootfs},
			err: "--image and --rootfs cannot be used together", usage: true},
		{name: "neither", r: Request{},
			err: "no image: give --image REF or --rootfs DIR", usage: true},
		{name: "--gpu and --rocm", r: Request{Rootfs: rootfs, GPU: true, ROCm: true},
			err: "--gpu and --rocm cannot be used together", usage: true},
		{name: "a bad --platform", r: Request{Rootfs: rootfs, Platform: "linux/"},
			err: `platform "linux/": want OS/ARCH[/VARIANT], such as linux/arm64`, usage: true},
		{name: "--rootfs missing", r: Request{Rootfs: "none"},
			err: "--rootfs: rootfs " + filepath.Join(dir, "none") + " does not exist; give the directory of an unpacked image"},
		{name: "--rootfs of a file", r: Request{Rootfs: "file"},
			err: "--rootfs: rootfs " + filepath.Join(dir, "file") + " is not a directory; give the directory of an unpacked image"},
		{name: "--rootfs /", r: Request{Rootfs: "/"},
			err: "--rootfs: the host's / cannot be a rootfs; give the directory of an unpacked image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			h := Host{Cwd: dir, PhysCwd: dir, UID: testUID, GID: testUID}
			st := &Settings{Conf: jobs.Defaults()}
			im, err := OpenImage(context.Background(), &tc.r, h, st, &Log{W: &out})
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			defer im.Release()
			if im.Rootfs != tc.want || im.Digest != "" || im.Hold() != nil || im.Env != nil {
				t.Errorf("image %+v, want the plain directory %s", im, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("unexpected output: %s", out.String())
			}
		})
	}
}

// TestCommand: the command line's command, else the image's Entrypoint
// and Cmd; --run gives the ARGS to the Entrypoint, --entrypoint replaces
// it.
func TestCommand(t *testing.T) {
	e := func(s string) *string { return &s }
	both := store.ImageConfig{Entrypoint: []string{"/e", "-v"}, Cmd: []string{"c"}}
	cmdOnly := store.ImageConfig{Cmd: []string{"bash"}}
	const none = "no command given, and the image names none; usage: hpcrun --image REF CMD [ARGS...]"
	tests := []struct {
		name string
		r    Request
		cfg  store.ImageConfig
		want []string
		err  string
	}{
		{"given", Request{Args: []string{"sh", "-c", "x"}}, both, []string{"sh", "-c", "x"}, ""},
		{"the image's Entrypoint and Cmd", Request{}, both, []string{"/e", "-v", "c"}, ""},
		{"the image's Cmd", Request{}, cmdOnly, []string{"bash"}, ""},
		{"none", Request{}, store.ImageConfig{}, nil, none},
		{"--run: ARGS to the Entrypoint", Request{Run: true, Args: []string{"a", "b"}}, both, []string{"/e", "-v", "a", "b"}, ""},
		{"--run without ARGS: Entrypoint and Cmd", Request{Run: true}, both, []string{"/e", "-v", "c"}, ""},
		{"--run, no Entrypoint: ARGS replace Cmd", Request{Run: true, Args: []string{"python3", "-V"}}, cmdOnly, []string{"python3", "-V"}, ""},
		{"--run, nothing at all", Request{Run: true}, store.ImageConfig{}, nil, none},
		{"--entrypoint alone drops Cmd", Request{Entrypoint: e("/x")}, both, []string{"/x"}, ""},
		{"--entrypoint with ARGS", Request{Entrypoint: e("/x"), Args: []string{"a"}}, both, []string{"/x", "a"}, ""},
		{"--entrypoint and --run", Request{Entrypoint: e("/x"), Run: true, Args: []string{"a"}}, both, []string{"/x", "a"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Command(&tc.r, tc.cfg)
			if !checkErr(t, err, tc.err, true) {
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("command %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBuildFlags: the flags Build passes on to the config as they are.
func TestBuildFlags(t *testing.T) {
	yes, no := true, false
	netNS := specs.LinuxNamespace{Type: specs.NetworkNamespace}
	tests := []struct {
		name     string
		tweak    func(*job)
		keyring  bool
		writable bool
		netns    bool
		terminal bool
		err      string
		usage    bool
	}{
		{name: "defaults"},
		{name: "--net none", tweak: func(j *job) { j.st.Conf.Network.Value = "none" }, netns: true},
		{name: "a bad --net", tweak: func(j *job) { j.st.Conf.Network = jobs.Setting[string]{Value: "bridge", From: "--net"} },
			err: `--net: unknown network mode "bridge": want host or none`, usage: true},
		{name: "a fresh keyring from the config", tweak: func(j *job) { j.st.Conf.NewKeyring.Value = true }, keyring: true},
		{name: "--new-keyring=false over the config", tweak: func(j *job) {
			j.st.Conf.NewKeyring.Value = true
			j.r.NewKeyring = &no
		}},
		{name: "--new-keyring", tweak: func(j *job) { j.r.NewKeyring = &yes }, keyring: true},
		{name: "--writable-tmpfs", tweak: func(j *job) { j.r.WritableTmpfs = true }, writable: true},
		{name: "a terminal", tweak: func(j *job) { j.h.TTY = true }, terminal: true},
		{name: "no command", tweak: func(j *job) { j.r.Args = nil },
			err: "no command given, and the image names none; usage: hpcrun --image REF CMD [ARGS...]", usage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			if tc.tweak != nil {
				tc.tweak(j)
			}
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			s := cfg.Spec
			if cfg.NewKeyring != tc.keyring || cfg.WritableTmpfs != tc.writable || s.Process.Terminal != tc.terminal ||
				slices.Contains(s.Linux.Namespaces, netNS) != tc.netns {
				t.Errorf("keyring %v, writable %v, terminal %v, namespaces %v", cfg.NewKeyring, cfg.WritableTmpfs, s.Process.Terminal, s.Linux.Namespaces)
			}
			if !slices.Equal(s.Process.Args, []string{"true"}) || s.Root.Path != j.im.Rootfs {
				t.Errorf("args %q, root %s", s.Process.Args, s.Root.Path)
			}
		})
	}
}
