package gpu

import (
	"reflect"
	"testing"

	"github.com/hpcrun/hpcrun/runtime"
)

func TestBinds(t *testing.T) {
	d := Driver{
		Libs: []File{{"/usr/lib64/libcuda.so.550.54.15", "libcuda.so"}, {"/usr/lib64/libcuda.so.550.54.15", "libcuda.so.1"}},
		Bins: []File{{"/usr/bin/nvidia-smi", "nvidia-smi"}},
	}
	for _, tc := range []struct {
		dir  string
		libs []File
		bins []File
		want []runtime.Bind
	}{
		{"/.hpcrun/nvidia", d.Libs, d.Bins, []runtime.Bind{
			{Source: "/usr/lib64/libcuda.so.550.54.15", Dest: "/.hpcrun/nvidia/lib/libcuda.so", ReadOnly: true},
			{Source: "/usr/lib64/libcuda.so.550.54.15", Dest: "/.hpcrun/nvidia/lib/libcuda.so.1", ReadOnly: true},
			{Source: "/usr/bin/nvidia-smi", Dest: "/.hpcrun/nvidia/bin/nvidia-smi", ReadOnly: true},
		}},
		{"/opt/driver", d.Libs[1:], nil, []runtime.Bind{
			{Source: "/usr/lib64/libcuda.so.550.54.15", Dest: "/opt/driver/lib/libcuda.so.1", ReadOnly: true},
		}},
		{"/x", nil, nil, nil},
	} {
		got := Driver{Dir: tc.dir, Libs: tc.libs, Bins: tc.bins}.Binds()
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.dir, got, tc.want)
		}
	}
}

func TestEnv(t *testing.T) {
	const lib, bin = "/.hpcrun/nvidia/lib", "/.hpcrun/nvidia/bin"
	full := Driver{Dir: "/.hpcrun/nvidia", Libs: []File{{"/l/libcuda.so.1", "libcuda.so.1"}}, Bins: []File{{"/b/nvidia-smi", "nvidia-smi"}}}
	libsOnly := Driver{Dir: full.Dir, Libs: full.Libs}
	for _, tc := range []struct {
		name     string
		d        Driver
		job, out []string
	}{
		{"neither set", full, []string{"HOME=/h"},
			[]string{"HOME=/h", "LD_LIBRARY_PATH=" + lib, "PATH=" + runtime.DefaultPath + ":" + bin}},
		{"the image's own come after the driver's", full,
			[]string{"PATH=/opt/conda/bin:/usr/bin", "LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64", "HOME=/h"},
			[]string{"PATH=/opt/conda/bin:/usr/bin:" + bin, "LD_LIBRARY_PATH=" + lib + ":/usr/local/nvidia/lib:/usr/local/nvidia/lib64", "HOME=/h"}},
		{"an empty value adds no current directory", full, []string{"LD_LIBRARY_PATH=", "PATH="},
			[]string{"LD_LIBRARY_PATH=" + lib, "PATH=" + bin}},
		{"a second time adds nothing", full, []string{"LD_LIBRARY_PATH=" + lib + ":/x", "PATH=/usr/bin:" + bin},
			[]string{"LD_LIBRARY_PATH=" + lib + ":/x", "PATH=/usr/bin:" + bin}},
		{"a prefix of the dir is another dir", full, []string{"LD_LIBRARY_PATH=" + lib + "64", "PATH=" + bin + "s"},
			[]string{"LD_LIBRARY_PATH=" + lib + ":" + lib + "64", "PATH=" + bin + "s:" + bin}},
		{"no executables leave PATH", libsOnly, []string{"PATH=/usr/bin"},
			[]string{"PATH=/usr/bin", "LD_LIBRARY_PATH=" + lib}},
		{"the binding is not Env's business", full, []string{"CUDA_VISIBLE_DEVICES=0", "PATH=/bin"},
			[]string{"CUDA_VISIBLE_DEVICES=0", "PATH=/bin:" + bin, "LD_LIBRARY_PATH=" + lib}},
		{"nothing found, nothing changed", Driver{Dir: "/d"}, []string{"A=1"}, []string{"A=1"}},
	} {
		job := append([]string(nil), tc.job...)
		got := tc.d.Env(job)
		if !reflect.DeepEqual(got, tc.out) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.out)
		}
		if !reflect.DeepEqual(job, tc.job) {
			t.Errorf("%s: the job's environment was modified: %q", tc.name, job)
		}
		if again := tc.d.Env(got); !reflect.DeepEqual(again, got) {
			t.Errorf("%s: a second Env gives %q", tc.name, again)
		}
	}
}
