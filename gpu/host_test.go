package gpu

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
)

// TestFindOnThisMachine runs Find on the machine itself, and checks that
// what it found runs. Where there is no NVIDIA driver it skips, unless
// HPCRUN_TEST_REQUIRE_GPU=1 (set it on a GPU node) makes that a failure.
func TestFindOnThisMachine(t *testing.T) {
	d, err := Find(NVIDIA, Host{Env: os.Environ()})
	if err != nil {
		if os.Getenv("HPCRUN_TEST_REQUIRE_GPU") != "1" && (errors.Is(err, ErrNoDriver) || errors.Is(err, fs.ErrNotExist)) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Logf("driver %s\nlibs %v\nbins %v\ndevices %v\nbinding %v\nskipped %q", d.Version, d.Libs, d.Bins, d.Devices, d.Binding, d.Skipped)

	checkDriverRuns(t, d)
}

// checkDriverRuns lays a driver's files out as links in a private
// directory, as a job's container has them, and runs its nvidia-smi, and
// libcuda's cuInit through Python when there is a python3, with
// Driver.Env's environment: the loader must take the driver's libraries
// from that directory.
func checkDriverRuns(t *testing.T, d Driver) {
	d.Dir = t.TempDir()
	for _, b := range d.Binds() {
		if err := os.MkdirAll(filepath.Dir(b.Dest), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(b.Source, b.Dest); err != nil {
			t.Fatal(err)
		}
	}
	env := d.Env(append(os.Environ(), "LD_DEBUG=libs"))
	run := func(lib string, name string, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
		if err := cmd.Run(); err != nil {
			var msgs []string // stderr less the loader's debug lines, which start with a pid
			for _, l := range strings.Split(stderr.String(), "\n") {
				if pid, _, _ := strings.Cut(strings.TrimSpace(l), ":"); l != "" && strings.Trim(pid, "0123456789") != "" {
					msgs = append(msgs, l)
				}
			}
			t.Fatalf("%s %v: %v\n%s%s", name, args, err, stdout.String(), strings.Join(msgs, "\n"))
		}
		if want := "trying file=" + filepath.Join(d.Dir, "lib", lib); !strings.Contains(stderr.String(), want) {
			t.Errorf("%s did not load %s from the driver's directory: LD_DEBUG has no %q", name, lib, want)
		}
		return stdout.String()
	}
	smi := filepath.Join(d.Dir, "bin", "nvidia-smi")
	if _, err := os.Stat(smi); err != nil {
		t.Fatalf("the driver has no nvidia-smi: %v", err)
	}
	if out := run("libnvidia-ml.so.1", smi, "-L"); !strings.Contains(out, "GPU 0:") {
		t.Errorf("nvidia-smi -L lists no GPU 0:\n%s", out)
	}
	if py, err := exec.LookPath("python3"); err == nil {
		out := run("libcuda.so.1", py, "-c", "import ctypes; print(ctypes.CDLL('libcuda.so.1').cuInit(0))")
		if strings.TrimSpace(out) != "0" {
			t.Errorf("cuInit(0) = %s, want 0 (CUDA_SUCCESS)", out)
		}
	} else {
		t.Log("no python3: cuInit not tried")
	}
}

// TestFakeDriverRuns builds a fake driver with the C compiler, when there
// is one, and checks it as TestFindOnThisMachine checks a real one.
func TestFakeDriverRuns(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build a fake driver with")
	}
	root := t.TempDir()
	makeTree(t, root, []string{"/src/", lib64 + "/", "/usr/bin/", "/etc/", "/dev/nvidiactl", "/dev/nvidia0"})
	build := func(out string, src string, args ...string) {
		t.Helper()
		c := filepath.Join(root, "src", filepath.Base(out)+".c")
		if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(cc, append(args, "-o", filepath.Join(root, out), c)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cc, err, b)
		}
	}
	build(lib64+"/libcuda.so.550.54.15", "int cuInit(unsigned f) { return f; }\n",
		"-shared", "-fPIC", "-Wl,-soname,libcuda.so.1")
	build(lib64+"/libnvidia-ml.so.550.54.15", "const char *nvmlGpu(void) { return \"GPU 0: Fake\"; }\n",
		"-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1")
	build("/usr/bin/nvidia-smi", `#include <dlfcn.h>
#include <stdio.h>
int main(void) {
	void *ml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
	if (!ml) { fprintf(stderr, "%s\n", dlerror()); return 9; }
	puts(((const char *(*)(void))dlsym(ml, "nvmlGpu"))());
	return 0;
}
`, "-ldl")
	makeTree(t, root, []string{
		lib64 + "/libcuda.so.1 -> libcuda.so.550.54.15",
		lib64 + "/libnvidia-ml.so.1 -> libnvidia-ml.so.550.54.15",
	})
	cache := []Entry{
		{"libcuda.so.1", lib64 + "/libcuda.so.1", archFlags[goruntime.GOARCH], 0},
		{"libnvidia-ml.so.1", lib64 + "/libnvidia-ml.so.1", archFlags[goruntime.GOARCH], 0},
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ld.so.cache"), writeLdCache(cache, false), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Find(NVIDIA, Host{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkDriverRuns(t, d)
}
