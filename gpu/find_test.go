package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// makeTree builds a fake host under root. Each line is a path, with
//
//	"/a/b"           an empty file (a library, or a device node's stand-in)
//	"/a/b*"          an executable file
//	"/a/b/"          a directory
//	"/a/b -> target" a symbolic link
//	"/a/b = text"    a file holding text
func makeTree(t *testing.T, root string, lines []string) {
	t.Helper()
	for _, l := range lines {
		p, target, link := strings.Cut(l, " -> ")
		p, text, _ := strings.Cut(p, " = ")
		full := filepath.Join(root, strings.TrimSuffix(p, "*"))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case link:
			err = os.Symlink(target, full)
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasSuffix(p, "*"):
			err = os.WriteFile(full, []byte("#!/bin/sh\n"), 0o755)
		default:
			err = os.WriteFile(full, []byte(text), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

const lib64 = "/usr/lib/x86_64-linux-gnu"

// nvidiaHost is a node with NVIDIA driver 550.54.15 installed as Debian's
// packages install it, with its 32-bit libraries, a persistence daemon in
// /usr/bin and two GPUs.
var nvidiaHost = []string{
	lib64 + "/libcuda.so.550.54.15",
	lib64 + "/libcuda.so.1 -> libcuda.so.550.54.15",
	lib64 + "/libcuda.so -> libcuda.so.1",
	lib64 + "/libnvidia-ml.so.550.54.15",
	lib64 + "/libnvidia-ml.so.1 -> libnvidia-ml.so.550.54.15",
	lib64 + "/libnvidia-ptxjitcompiler.so.550.54.15",
	lib64 + "/libnvidia-ptxjitcompiler.so.1 -> libnvidia-ptxjitcompiler.so.550.54.15",
	lib64 + "/libz.so.1.2.13",
	lib64 + "/libz.so.1 -> libz.so.1.2.13",
	"/usr/lib/i386-linux-gnu/libcuda.so.550.54.15",
	"/usr/lib/i386-linux-gnu/libcuda.so.1 -> libcuda.so.550.54.15",
	"/usr/bin/nvidia-smi*",
	"/usr/bin/nvidia-persistenced*",
	"/usr/bin/nvidia-debugdump", // not executable: passed over
	"/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
	"/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2", "/dev/null",
	"/sys/module/nvidia/version = 550.54.15\n",
}

var nvidiaCache = []Entry{
	{"libz.so.1", lib64 + "/libz.so.1", x8664, 0},
	{"libnvidia-ptxjitcompiler.so.1", lib64 + "/libnvidia-ptxjitcompiler.so.1", x8664, 0},
	{"libnvidia-ml.so.1", lib64 + "/libnvidia-ml.so.1", x8664, 0},
	{"libcuda.so.1", lib64 + "/libcuda.so.1", x8664, 0},
	{"libcuda.so.1", "/usr/lib/i386-linux-gnu/libcuda.so.1", i386, 0},
}

// nvidiaLibs are the names Find gives nvidiaHost's libraries inside, and
// their real files.
var nvidiaLibs = []string{
	"libcuda.so=" + lib64 + "/libcuda.so.550.54.15",
	"libcuda.so.1=" + lib64 + "/libcuda.so.550.54.15",
	"libnvidia-ml.so.1=" + lib64 + "/libnvidia-ml.so.550.54.15",
	"libnvidia-ptxjitcompiler.so.1=" + lib64 + "/libnvidia-ptxjitcompiler.so.550.54.15",
}

var nvidiaDevices = []string{
	"/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl",
	"/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2",
}

var rocmHost = []string{
	"/opt/rocm -> /etc/alternatives/rocm",
	"/etc/alternatives/rocm -> /opt/rocm-6.2.0",
	"/opt/rocm-6.2.0/lib/libhsa-runtime64.so.1.14.60200",
	"/opt/rocm-6.2.0/lib/libhsa-runtime64.so.1 -> libhsa-runtime64.so.1.14.60200",
	"/opt/rocm-6.2.0/lib/libamdhip64.so.6.2.60200",
	"/opt/rocm-6.2.0/lib/libamdhip64.so.6 -> libamdhip64.so.6.2.60200",
	"/opt/rocm-6.2.0/lib/libamdhip64.so -> libamdhip64.so.6",
	lib64 + "/libdrm_amdgpu.so.1.0.0",
	lib64 + "/libdrm_amdgpu.so.1 -> libdrm_amdgpu.so.1.0.0",
	"/opt/rocm-6.2.0/bin/rocminfo*",
	"/dev/kfd", "/dev/dri/card0", "/dev/dri/card1", "/dev/dri/renderD128", "/dev/dri/renderD129",
	"/dev/dri/by-path/",
}

var rocmCache = []Entry{
	{"libhsa-runtime64.so.1", "/opt/rocm/lib/libhsa-runtime64.so.1", x8664, 0},
	{"libamdhip64.so.6", "/opt/rocm/lib/libamdhip64.so.6", x8664, 0},
	{"libamdhip64.so", "/opt/rocm/lib/libamdhip64.so", x8664, 0},
	{"libdrm_amdgpu.so.1", lib64 + "/libdrm_amdgpu.so.1", x8664, 0},
}

// without returns list less the lines that start with any of drop.
func without(list []string, drop ...string) []string {
	var out []string
next:
	for _, l := range list {
		for _, d := range drop {
			if strings.HasPrefix(l, d) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func TestFind(t *testing.T) {
	type want struct {
		libs    []string // NAME=host path below the root
		bins    []string // NAME=host path below the root
		devices []string
		binding []string
		version string
		skipped []string // substrings, one per skipped library
	}
	nvidiaWant := want{
		libs:    nvidiaLibs,
		bins:    []string{"nvidia-smi=/usr/bin/nvidia-smi", "nvidia-persistenced=/usr/bin/nvidia-persistenced"},
		devices: nvidiaDevices,
		version: "550.54.15",
	}
	tests := []struct {
		name   string
		vendor Vendor
		tree   []string
		cache  []Entry // nil: no cache file
		host   Host    // Root and LdCache are filled in
		want   want
		err    []string // substrings of the error; nil for none
		noDrv  bool     // the error is ErrNoDriver
	}{
		{name: "NVIDIA", vendor: NVIDIA, tree: nvidiaHost, cache: nvidiaCache, want: nvidiaWant},
		{name: "Slurm's binding passes, empty values too", vendor: NVIDIA, tree: nvidiaHost, cache: nvidiaCache,
			host: Host{Env: []string{"HOME=/h", "CUDA_VISIBLE_DEVICES=0", "GPU_DEVICE_ORDINAL=0", "SLURM_JOB_GPUS=1",
				"ROCR_VISIBLE_DEVICES=3", "NVIDIA_VISIBLE_DEVICES=", "CUDA_VISIBLE_DEVICES=1"}},
			want: want{libs: nvidiaLibs, bins: nvidiaWant.bins, devices: nvidiaDevices, version: "550.54.15",
				binding: []string{"CUDA_VISIBLE_DEVICES=1", "NVIDIA_VISIBLE_DEVICES=", "GPU_DEVICE_ORDINAL=0"}}},
		{name: "absolute links are taken inside the root", vendor: NVIDIA,
			tree: append(without(nvidiaHost, lib64+"/libcuda.so.1", lib64+"/libcuda.so "),
				lib64+"/libcuda.so.1 -> "+lib64+"/libcuda.so.550.54.15", lib64+"/libcuda.so -> /usr/lib/x86_64-linux-gnu/libcuda.so.1"),
			cache: nvidiaCache, want: nvidiaWant},
		{name: "the cache names the unversioned link", vendor: NVIDIA, tree: nvidiaHost,
			cache: append([]Entry{{"libcuda.so", lib64 + "/libcuda.so", x8664, 0}}, nvidiaCache...), want: nvidiaWant},
		{name: "an unversioned link to another file is left out", vendor: NVIDIA,
			tree:  append(without(nvidiaHost, lib64+"/libcuda.so "), lib64+"/libcuda.so -> libz.so.1"),
			cache: nvidiaCache,
			want:  want{libs: nvidiaLibs[1:], bins: nvidiaWant.bins, devices: nvidiaDevices, version: "550.54.15"}},
		{name: "a library of an older driver is left out", vendor: NVIDIA,
			tree: append(without(nvidiaHost, lib64+"/libnvidia-ml.so.1"),
				lib64+"/libnvidia-ml.so.535.104.05", lib64+"/libnvidia-ml.so.1 -> libnvidia-ml.so.535.104.05"),
			cache: nvidiaCache,
			want: want{libs: without(nvidiaLibs, "libnvidia-ml"), bins: nvidiaWant.bins, devices: nvidiaDevices,
				version: "550.54.15", skipped: []string{"libnvidia-ml.so.535.104.05 is not of driver version 550.54.15"}}},
		{name: "a stale entry is left out", vendor: NVIDIA, tree: without(nvidiaHost, lib64+"/libnvidia-ptxjit"),
			cache: nvidiaCache,
			want: want{libs: without(nvidiaLibs, "libnvidia-ptxjit"), bins: nvidiaWant.bins, devices: nvidiaDevices,
				version: "550.54.15", skipped: []string{"libnvidia-ptxjitcompiler.so.1: the library cache lists " + lib64 + "/libnvidia-ptxjitcompiler.so.1, which is not there"}}},
		{name: "the first entry of a name wins; hwcaps variants are passed over", vendor: NVIDIA,
			tree: append(nvidiaHost, "/opt/nv/libnvidia-ml.so.1", lib64+"/glibc-hwcaps/x86-64-v3/libcuda.so.1"),
			cache: append([]Entry{{"libcuda.so.1", lib64 + "/glibc-hwcaps/x86-64-v3/libcuda.so.1", x8664, 1 << 62}},
				append(nvidiaCache, Entry{"libnvidia-ml.so.1", "/opt/nv/libnvidia-ml.so.1", x8664, 0})...),
			want: nvidiaWant},
		{name: "binaries: the first dir that has it, links resolved", vendor: NVIDIA,
			tree: append(nvidiaHost, "/usr/local/bin/nvidia-smi -> /opt/nv/bin/nvidia-smi", "/opt/nv/bin/nvidia-smi*",
				"/usr/sbin/nvidia-cuda-mps-control*", "/usr/bin/nvidia-cuda-mps-server/"),
			cache: nvidiaCache,
			want: want{libs: nvidiaLibs, devices: nvidiaDevices, version: "550.54.15", bins: []string{
				"nvidia-smi=/opt/nv/bin/nvidia-smi", "nvidia-persistenced=/usr/bin/nvidia-persistenced",
				"nvidia-cuda-mps-control=/usr/sbin/nvidia-cuda-mps-control"}}},
		{name: "BinDirs replace the default ones", vendor: NVIDIA, tree: append(nvidiaHost, "/site/bin/nvidia-smi*"),
			cache: nvidiaCache, host: Host{BinDirs: []string{"/site/bin"}},
			want: want{libs: nvidiaLibs, devices: nvidiaDevices, version: "550.54.15", bins: []string{"nvidia-smi=/site/bin/nvidia-smi"}}},
		{name: "a libcuda without a version in its name", vendor: NVIDIA,
			tree:  []string{"/usr/lib/wsl/lib/libcuda.so.1", "/usr/lib/wsl/lib/libnvidia-ml.so.1", "/dev/nvidiactl"},
			cache: []Entry{{"libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1", x8664, 0}, {"libnvidia-ml.so.1", "/usr/lib/wsl/lib/libnvidia-ml.so.1", x8664, 0}},
			want: want{libs: []string{"libcuda.so.1=/usr/lib/wsl/lib/libcuda.so.1", "libnvidia-ml.so.1=/usr/lib/wsl/lib/libnvidia-ml.so.1"},
				devices: []string{"/dev/nvidiactl"}}},
		{name: "arm64 takes the AArch64 libraries", vendor: NVIDIA, host: Host{Arch: "arm64"},
			tree: append(nvidiaHost, "/usr/lib/aarch64-linux-gnu/libcuda.so.550.54.15",
				"/usr/lib/aarch64-linux-gnu/libcuda.so.1 -> libcuda.so.550.54.15"),
			cache: append(nvidiaCache, Entry{"libcuda.so.1", "/usr/lib/aarch64-linux-gnu/libcuda.so.1", arm64, 0}),
			want: want{libs: []string{"libcuda.so.1=/usr/lib/aarch64-linux-gnu/libcuda.so.550.54.15"}, bins: nvidiaWant.bins,
				devices: nvidiaDevices, version: "550.54.15"}},

		{name: "no driver at all", vendor: NVIDIA, tree: []string{"/dev/null"}, cache: nvidiaCache[:1], noDrv: true,
			err: []string{"no NVIDIA driver on this node: libcuda.so.1 (libc6,x86-64) is not in /etc/ld.so.cache, and /dev/nvidiactl is missing",
				"nvidia-smi", "--gres=gpu:N", "module load cuda"}},
		{name: "libraries but no device", vendor: NVIDIA, tree: without(nvidiaHost, "/dev/nvidiactl"), cache: nvidiaCache, noDrv: true,
			err: []string{"no NVIDIA driver on this node: /dev/nvidiactl is missing (no GPU on this node, or its kernel module is not loaded); check"}},
		{name: "only 32-bit libraries", vendor: NVIDIA, tree: nvidiaHost, cache: nvidiaCache[4:], noDrv: true,
			err: []string{"libcuda.so.1 is in /etc/ld.so.cache only as libc6, not as libc6,x86-64"}},
		{name: "a stale libcuda", vendor: NVIDIA, tree: without(nvidiaHost, lib64+"/libcuda"), cache: nvidiaCache, noDrv: true,
			err: []string{"libcuda.so.1 is listed in /etc/ld.so.cache but " + lib64 + "/libcuda.so.1 is not there"}},
		{name: "a kernel module of another version", vendor: NVIDIA, cache: nvidiaCache, noDrv: true,
			tree: append(without(nvidiaHost, "/sys/module"), "/sys/module/nvidia/version = 535.104.05\n"),
			err:  []string{"the NVIDIA kernel module is version 535.104.05, but its libraries (libcuda.so.1) are 550.54.15"}},
		{name: "no kernel module version to compare", vendor: NVIDIA, tree: without(nvidiaHost, "/sys/module"), cache: nvidiaCache,
			want: nvidiaWant},
		{name: "no cache", vendor: NVIDIA, tree: nvidiaHost,
			err: []string{"read glibc's library cache, where hpcrun finds the NVIDIA driver: open ", "no such file"}},
		{name: "a cache elsewhere", vendor: NVIDIA, tree: nvidiaHost, cache: nvidiaCache, host: Host{LdCache: "/etc/ld.so.cache.site"},
			want: nvidiaWant},
		{name: "an unknown architecture", vendor: NVIDIA, tree: nvidiaHost, cache: nvidiaCache, host: Host{Arch: "386"},
			err: []string{"GPU drivers on 386 are not supported", "amd64, arm64"}},
		{name: "an unknown vendor", vendor: "intel", err: []string{`unknown GPU vendor "intel": use "nvidia" or "rocm"`}},

		{name: "ROCm", vendor: ROCm, tree: rocmHost, cache: rocmCache,
			host: Host{Env: []string{"ROCR_VISIBLE_DEVICES=0,1", "GPU_DEVICE_ORDINAL=0,1", "CUDA_VISIBLE_DEVICES=7"}},
			want: want{
				libs: []string{
					"libamdhip64.so=/opt/rocm-6.2.0/lib/libamdhip64.so.6.2.60200",
					"libamdhip64.so.6=/opt/rocm-6.2.0/lib/libamdhip64.so.6.2.60200",
					"libdrm_amdgpu.so.1=" + lib64 + "/libdrm_amdgpu.so.1.0.0",
					"libhsa-runtime64.so.1=/opt/rocm-6.2.0/lib/libhsa-runtime64.so.1.14.60200",
				},
				bins:    []string{"rocminfo=/opt/rocm-6.2.0/bin/rocminfo"},
				devices: []string{"/dev/kfd", "/dev/dri/card0", "/dev/dri/card1", "/dev/dri/renderD128", "/dev/dri/renderD129"},
				binding: []string{"ROCR_VISIBLE_DEVICES=0,1", "GPU_DEVICE_ORDINAL=0,1", "CUDA_VISIBLE_DEVICES=7"},
			}},
		{name: "ROCm without /dev/kfd", vendor: ROCm, tree: without(rocmHost, "/dev/kfd"), cache: rocmCache, noDrv: true,
			err: []string{"no ROCm driver on this node: /dev/kfd is missing", "rocminfo", "which it has without --rocm"}},
		{name: "ROCm without its runtime", vendor: ROCm, tree: rocmHost, cache: rocmCache[1:], noDrv: true,
			err: []string{"no ROCm driver on this node: libhsa-runtime64.so.1 (libc6,x86-64) is not in /etc/ld.so.cache; check"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, tc.tree)
			h := tc.host
			h.Root = root
			if tc.cache != nil {
				if h.LdCache == "" {
					h.LdCache = "/etc/ld.so.cache"
				}
				makeTree(t, root, []string{filepath.Dir(h.LdCache) + "/"})
				if err := os.WriteFile(filepath.Join(root, h.LdCache), writeLdCache(tc.cache, false), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d, err := Find(tc.vendor, h)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("no error; found %+v", d)
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q\nlacks %q", err, s)
					}
				}
				if errors.Is(err, ErrNoDriver) != tc.noDrv {
					t.Errorf("errors.Is(%v, ErrNoDriver) = %v", err, !tc.noDrv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			files := func(fs []File) []string {
				var out []string
				for _, f := range fs {
					out = append(out, f.Name+"="+strings.TrimPrefix(f.Source, root))
				}
				return out
			}
			w := tc.want
			for _, c := range []struct {
				what      string
				got, want any
			}{
				{"libs", files(d.Libs), w.libs},
				{"bins", files(d.Bins), w.bins},
				{"devices", d.Devices, w.devices},
				{"binding", d.Binding, w.binding},
				{"version", d.Version, w.version},
				{"vendor", d.Vendor, tc.vendor},
				{"dir", d.Dir, "/.hpcrun/" + string(tc.vendor)},
				{"skipped", len(d.Skipped), len(w.skipped)},
			} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s:\n got %q\nwant %q", c.what, c.got, c.want)
				}
			}
			for i, s := range w.skipped {
				if i < len(d.Skipped) && !strings.Contains(d.Skipped[i], s) {
					t.Errorf("skipped[%d] = %q, lacks %q", i, d.Skipped[i], s)
				}
			}
		})
	}
}

func TestPick(t *testing.T) {
	cache := []Entry{
		{"libcuda.so.1", "/a/libcuda.so.1", x8664, 0},
		{"libcuda.so", "/a/libcuda.so", x8664, 0},
		{"libcudart.so.12", "/a/libcudart.so.12", x8664, 0}, // the toolkit's, not the driver's
		{"libcuda.so.1", "/b/libcuda.so.1", x8664, 0},
		{"libcuda.so.1", "/c/libcuda.so.1", i386, 0},
		{"libnvidia-pkcs11-openssl3.so.550.54.15", "/a/libnvidia-pkcs11-openssl3.so.550.54.15", x8664, 0},
		{"libnvidia-ml.so.1", "/h/libnvidia-ml.so.1", x8664, 1 << 62},
		{"libnvidia-ml.so.1", "/a/libnvidia-ml.so.1", x8664, 0},
	}
	for _, tc := range []struct {
		want  Flags
		names []string
		paths []string
	}{
		{x8664, []string{"libcuda"}, []string{"/a/libcuda.so.1", "/a/libcuda.so"}},
		{i386, []string{"libcuda"}, []string{"/c/libcuda.so.1"}},
		{arm64, []string{"libcuda"}, nil},
		{x8664, []string{"libnvidia-pkcs11"}, nil},
		{x8664, []string{"libnvidia-pkcs11-openssl3", "libnvidia-ml"},
			[]string{"/a/libnvidia-pkcs11-openssl3.so.550.54.15", "/a/libnvidia-ml.so.1"}},
	} {
		var got []string
		for _, e := range pick(cache, tc.want, tc.names) {
			got = append(got, e.Path)
		}
		if !reflect.DeepEqual(got, tc.paths) {
			t.Errorf("%s %v: got %q, want %q", tc.want, tc.names, got, tc.paths)
		}
	}
}

func TestVersionOf(t *testing.T) {
	for _, tc := range []struct{ soname, real, want string }{
		{"libcuda.so.1", "libcuda.so.550.54.15", "550.54.15"},
		{"libcuda.so.1", "libcuda.so.1", ""},
		{"libcuda.so.1", "libcuda.so.1.1", "1.1"},
		{"libcuda.so.1", "libcuda.so.550.54.15-beta", ""},
		{"libcuda.so.1", "libcudart.so.12.4.99", ""},
		{"libcuda.so.1", "libcuda.so", ""},
	} {
		if got := versionOf(tc.soname, tc.real); got != tc.want {
			t.Errorf("versionOf(%q, %q) = %q, want %q", tc.soname, tc.real, got, tc.want)
		}
	}
}

func TestBinding(t *testing.T) {
	names := vendors[NVIDIA].binding
	for _, tc := range []struct {
		env, want []string
	}{
		{nil, nil},
		{[]string{"PATH=/bin", "SLURM_STEP_GPUS=2,3"}, nil},
		{[]string{"CUDA_VISIBLE_DEVICES=GPU-8e3a5d7c-1f2b", "CUDA_DEVICE_ORDER=PCI_BUS_ID"},
			[]string{"CUDA_VISIBLE_DEVICES=GPU-8e3a5d7c-1f2b", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}},
		{[]string{"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25", "CUDA_VISIBLE_DEVICES=MIG-GPU-1/1/0", "CUDA_VISIBLE_DEVICESX=1"},
			[]string{"CUDA_VISIBLE_DEVICES=MIG-GPU-1/1/0", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25"}},
		{[]string{"CUDA_VISIBLE_DEVICES=", "CUDA_VISIBLE_DEVICES"}, []string{"CUDA_VISIBLE_DEVICES="}},
	} {
		if got := binding(tc.env, names); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("binding(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}
