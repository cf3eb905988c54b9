package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/hpcrun/hpcrun/internal/siftest"
)

// The Python image's rootfs, unpacked once by hpcrun for the SIF tests to
// squash.
var (
	pythonRootfsOnce sync.Once
	pythonRootfsDir  string
)

func pythonRootfs(t *testing.T) string {
	t.Helper()
	image := pythonImage(t)
	pythonRootfsOnce.Do(func() {
		cache := filepath.Join(tempDirOwnedIn(t, baseDir), "cache")
		mustRun(t, opts{timeout: 3 * time.Minute}, "-q", "--cache", cache, "--image", image, "true")
		images, _ := cacheEntries(t, cache)
		if len(images) == 1 {
			pythonRootfsDir = filepath.Join(cache, "images", images[0], "rootfs")
		}
	})
	if pythonRootfsDir == "" {
		t.Fatal("could not unpack the Python image to squash it")
	}
	return pythonRootfsDir
}

// squashImage squashes dir with mksquashfs (comp, and pseudo-file
// definitions that add Apptainer's metadata) into dest/name.squashfs and
// wraps that in dest/name.sif, both readable by the test user.
func squashImage(t *testing.T, dir, dest, name, comp string, pseudo ...string) (sifPath, squash string) {
	t.Helper()
	squash = filepath.Join(dest, name+".squashfs")
	var extra []string
	for _, p := range pseudo {
		extra = append(extra, "-p", p)
	}
	siftest.Squash(t, dir, squash, comp, append([]string{"-all-root", "-no-xattrs"}, extra...)...)
	sifPath = filepath.Join(dest, name+".sif")
	siftest.SIF(t, squash, sifPath, siftest.Options{Signed: true})
	os.Chmod(squash, 0o644)
	os.Chmod(sifPath, 0o644)
	return sifPath, squash
}

// A SIF runs without Apptainer: python3 from the Python image squashed
// with zstd; an interpreter that only its /.singularity.d/env script puts
// on PATH; a runscript that runs when no command is given, and takes
// arguments; labels.json kept; the bare squashfs inside the SIF found in
// the cache under the same key (its SHA-256) without a second unpack.
func TestSIFPython(t *testing.T) {
	t.Parallel()
	needUserns(t)
	siftest.NeedMksquashfs(t)
	root := pythonRootfs(t)
	dir := tempDirOwned(t)
	envSIF, envSquash := squashImage(t, root, dir, "env", "zstd",
		".singularity.d d 755 0 0", ".singularity.d/env d 755 0 0",
		`.singularity.d/env/90-environment.sh f 644 0 0 printf "export PATH=/sifpy/bin:\$PATH\nexport FROM_ENV_SCRIPT=yes\n"`,
		"sifpy d 755 0 0", "sifpy/bin d 755 0 0", "sifpy/bin/sifpython s 777 0 0 /usr/bin/python3")
	runSIF, _ := squashImage(t, root, dir, "run", "gzip",
		".singularity.d d 755 0 0",
		`.singularity.d/runscript f 755 0 0 printf "#!/bin/sh\nexec python3 -c 'import sys; print(\"runscript\", sys.argv[1:])' \"\$@\"\n"`,
		`.singularity.d/labels.json f 644 0 0 printf "{\"org.label-schema.name\": \"sif-e2e\"}\n"`)

	// The default cache: a user's first SIF, as they would run it.
	r := mustRun(t, opts{timeout: 3 * time.Minute}, "--image", envSIF, "python3", "-c", "import sys, os; print(sys.version_info[0], os.environ['FROM_ENV_SCRIPT'])")
	if r.stdout != "3 yes\n" {
		t.Errorf("python3 from the SIF: %s", r)
	}
	r = mustRun(t, opts{}, "--image", envSIF, "sifpython", "-c", "print('on PATH')")
	if r.stdout != "on PATH\n" {
		t.Errorf("the env script's PATH: %s", r)
	}
	// exec into a running SIF container gets the env scripts' environment
	// too, as apptainer exec instance://NAME does.
	name := "sif-env-" + strconv.Itoa(os.Getpid())
	mustRun(t, opts{}, "-q", "--name", name, "--detach", "--image", envSIF, "sleep", "1000")
	t.Cleanup(func() {
		runRaw(opts{}, binPath, "kill", name, "KILL")
		runRaw(opts{}, binPath, "delete", "--force", name)
	})
	r = mustRun(t, opts{}, "exec", name, "sh", "-c", "echo $FROM_ENV_SCRIPT; command -v sifpython")
	if r.stdout != "yes\n/sifpy/bin/sifpython\n" {
		t.Errorf("exec into a running SIF container: want the env scripts' PATH and variables: %s", r)
	}
	// lz4, which sites pick for fast starts: mksquashfs writes bare LZ4
	// blocks.
	lz4SIF, _ := squashImage(t, root, dir, "lz4", "lz4")
	r = mustRun(t, opts{timeout: 3 * time.Minute}, "--image", lz4SIF, "python3", "-c", "import sys; print(sys.version_info[0], 'lz4')")
	if r.stdout != "3 lz4\n" {
		t.Errorf("python3 from an lz4 SIF: %s", r)
	}
	// The bare squashfs is the SIF's partition: the same key, a warm start.
	r = mustRun(t, opts{}, "--image", envSquash, "sifpython", "-c", "print('bare')")
	if r.stdout != "bare\n" || strings.Contains(r.stderr, "unpacking") {
		t.Errorf("the bare squashfs, warm: %s", r)
	}

	cache := filepath.Join(tempDirOwned(t), "cache")
	r = mustRun(t, opts{timeout: 3 * time.Minute}, "--cache", cache, "--image", runSIF)
	if r.stdout != "runscript []\n" {
		t.Errorf("the runscript, no command: %s", r)
	}
	r = mustRun(t, opts{}, "--cache", cache, "--image", runSIF, "/.singularity.d/runscript", "a", "b c")
	if r.stdout != "runscript ['a', 'b c']\n" {
		t.Errorf("the runscript with arguments: %s", r)
	}
	// As apptainer run IMG ARGS: the runscript is the image's Entrypoint.
	r = mustRun(t, opts{}, "--cache", cache, "--image", runSIF, "--run", "a", "b c")
	if r.stdout != "runscript ['a', 'b c']\n" {
		t.Errorf("--run with arguments: %s", r)
	}
	r = mustRun(t, opts{}, "--cache", cache, "--image", runSIF, "cat", "/.singularity.d/labels.json")
	if !strings.Contains(r.stdout, "sif-e2e") {
		t.Errorf("labels.json: %s", r)
	}
	// inspect shows them, without unpacking the image.
	r = mustRun(t, opts{}, "inspect", "--format", "json", runSIF)
	if !strings.Contains(r.stdout, "sif-e2e") || !strings.Contains(r.stdout, `"/.singularity.d/runscript"`) {
		t.Errorf("inspect of a SIF: want its labels and its runscript as the Entrypoint: %s", r)
	}
}

// Bad SIF and squashfs images: one line, exit 125, nothing in the cache,
// the canary untouched; a squashfs's links out and device nodes are
// neutralised as a layer's are.
func TestSIFBadInput(t *testing.T) {
	t.Parallel()
	needUserns(t)
	siftest.NeedMksquashfs(t)
	dir := tempDirOwned(t)
	canary := filepath.Join(tempDirOwned(t), "canary")
	if err := os.Mkdir(canary, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(canary, 0o777)
	os.WriteFile(filepath.Join(canary, "keep"), []byte("canary"), 0o666)
	before := fingerprint(t, canary)

	good, goodSquash := squashImage(t, rootfsDir, dir, "good", "xz")
	wrap := func(name string, o siftest.Options) string {
		p := filepath.Join(dir, name)
		o.Signed = true
		siftest.SIF(t, goodSquash, p, o)
		os.Chmod(p, 0o644)
		return p
	}
	cut := func(name, from string, keep int) string {
		b, _ := os.ReadFile(from)
		p := filepath.Join(dir, name)
		os.WriteFile(p, b[:keep], 0o644)
		return p
	}
	goodBytes, _ := os.ReadFile(good)
	dotdot := strings.Repeat("../", 10) + strings.TrimPrefix(canary, "/") + "/pwn"
	q := strings.Repeat("Q", len(dotdot))
	for _, tc := range []struct{ name, ref, want string }{
		{"encrypted SIF", wrap("enc.sif", siftest.Options{FS: sif.FsEncryptedSquashfs}), "is an encrypted SIF image"},
		{"SIF without a squashfs", wrap("data.sif", siftest.Options{NoSystem: true}), "without a squashfs system partition"},
		{"truncated squashfs", cut("cut.squashfs", goodSquash, 4096), "is truncated"},
		{"truncated SIF", cut("cut.sif", good, len(goodBytes)/2), "is truncated"},
		{"dotdot names", squashForged(t, dir, "dotdot.squashfs", map[string]string{q: "x"}, nil, [2]string{q, dotdot}), "which is no file name"},
		{"a symlink out and a directory of its name", squashForged(t, dir, "twice.squashfs", map[string]string{"outQ/pwn": "x"},
			[]string{"outA s 777 0 0 " + canary}, [2]string{"outQ", "outA"}), `"outA" twice`},
		{"device nodes through a symlink's name", squashForged(t, dir, "devs.squashfs", nil,
			[]string{"devA s 777 0 0 " + canary, "devQ d 755 0 0", "devQ/mem c 666 0 0 1 1", "devQ/sda b 666 0 0 8 0"}, [2]string{"devQ", "devA"}), `"devA" twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(tempDirOwned(t), "cache")
			checkRefused(t, run(t, opts{}, "-q", "--cache", cache, "--image", tc.ref, "true"), tc.want, cache)
			assertUnchanged(t, canary, before)
		})
	}
	t.Run("links out and device nodes, neutralised", func(t *testing.T) {
		ref := squashForged(t, dir, "neutral.squashfs", nil, []string{"out s 777 0 0 " + canary, "rel s 777 0 0 " + strings.Repeat("../", 10) + canary,
			"keep s 777 0 0 " + canary + "/keep", "mem c 666 0 0 1 1", "sda b 666 0 0 8 0"})
		cache := filepath.Join(tempDirOwned(t), "cache")
		r := mustRun(t, opts{}, "--cache", cache, "--image", ref, "sh", "-c",
			"test -f /mem -a ! -s /mem -a -f /sda -a ! -s /sda && readlink /out && readlink /rel && readlink /keep")
		if want := canary + "\n" + strings.Repeat("../", 10) + canary + "\n" + canary + "/keep\n"; r.stdout != want {
			t.Errorf("the links in the image: %s", r)
		}
		if strings.Contains(r.stderr, "warn") {
			t.Errorf("the unpack warns of the device nodes it neutralised: %s", r)
		}
		assertUnchanged(t, canary, before)
	})
}

// squashForged squashes the busybox rootfs with files added (name ->
// content; a placeholder name may be patched afterwards) and pseudo-file
// definitions, its names left uncompressed (-noI) so that each patch can
// replace a placeholder by a name mksquashfs would never write.
func squashForged(t *testing.T, dir, name string, files map[string]string, pseudo []string, patch ...[2]string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "root")
	if b, err := exec.Command("cp", "-a", rootfsDir, src).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, b)
	}
	for p, c := range files {
		p = filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(c), 0o644)
	}
	out := filepath.Join(dir, name)
	var extra []string
	for _, p := range pseudo {
		extra = append(extra, "-p", p)
	}
	siftest.Squash(t, src, out, "gzip", append([]string{"-all-root", "-noI"}, extra...)...)
	for _, p := range patch {
		siftest.Patch(t, out, p[0], p[1])
	}
	os.Chmod(out, 0o644)
	return out
}

// The tasks of a group join on the image's key, the squashfs's SHA-256:
// a task given the SIF and one given the bare squashfs inside it share a
// container; a task given another image is refused by all.
func TestSIFJoin(t *testing.T) {
	t.Parallel()
	needUserns(t)
	siftest.NeedMksquashfs(t)
	dir := tempDirOwned(t)
	sifPath, squash := squashImage(t, rootfsDir, dir, "busybox", "gzip")
	other, _ := squashImage(t, rootfsDir, dir, "other", "zstd")
	cache := filepath.Join(tempDirOwned(t), "cache")
	group := func(tag string, images ...string) []result {
		state := tempDirOwned(t)
		results := make([]result, len(images))
		var wg sync.WaitGroup
		for i, im := range images {
			wg.Go(func() {
				results[i] = run(t, opts{env: []string{"XDG_RUNTIME_DIR=" + state}}, "-q", "--cache", cache, "--image", im,
					"--join-tag", tag, "--join-count", fmt.Sprint(len(images)), "readlink", "/proc/self/ns/pid")
			})
		}
		wg.Wait()
		return results
	}
	r := group("same", sifPath, squash)
	if r[0].code != 0 || r[1].code != 0 || r[0].stdout != r[1].stdout {
		t.Errorf("the SIF and its squashfs did not share a container:\n%s\n%s", r[0], r[1])
	}
	r = group("differ", sifPath, other)
	for _, x := range r {
		if x.code != 125 || !strings.Contains(x.stderr, "ask for different images") {
			t.Errorf("another image joined: %s", x)
		}
	}
}
