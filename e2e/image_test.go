package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The images these tests run: small ones packed from the busybox rootfs,
// and real Debian ones built with debootstrap once (kept in /var/tmp
// between runs on the same machine).
const pythonImagePath = "/var/tmp/hpcrun-e2e/py3.tar"

// repoPath is a path in the repository, from the e2e package directory.
func repoPath(p string) string {
	abs, _ := filepath.Abs(filepath.Join("..", p))
	return abs
}

// sourcesHash is a short hash of files of the repository, to name a built
// image after what it was built from: a change to them builds it again.
func sourcesHash(paths ...string) string {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(repoPath(p))
		if err != nil {
			panic(fmt.Sprintf("e2e: %v", err))
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// builtImage is an image that a script in examples/ builds, as root, the
// first time a test asks for it.
type builtImage struct {
	name, path, script string
	args               []string // the script's, after the path
	once               sync.Once
	err                error
}

var (
	pythonBuild = &builtImage{name: "Python", path: pythonImagePath, script: "examples/mkpython.sh"}
	mpiBuild    = &builtImage{name: "MPI", path: mpiImagePath, script: "examples/mkmpi.sh"}
)

// get returns the image's path, building it when missing. Without it a
// test fails as root or where user namespaces are required, else skips.
func (b *builtImage) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		if _, err := os.Stat(b.path); err == nil {
			return
		}
		if os.Geteuid() != 0 {
			b.err = os.ErrPermission
			return
		}
		start := time.Now()
		if out, err := exec.Command(repoPath(b.script), append([]string{b.path}, b.args...)...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%s: %v\n%s", b.script, err, out)
			return
		}
		t.Logf("built %s in %v", b.path, time.Since(start).Round(time.Second))
	})
	if b.err != nil {
		if requireUserns || os.Geteuid() == 0 {
			t.Fatalf("no %s image at %s and it could not be built: %v", b.name, b.path, b.err)
		}
		t.Skipf("no %s image at %s; build it as root with %s", b.name, b.path, b.script)
	}
	return b.path
}

// pythonImage returns the Debian trixie + Python 3 image.
func pythonImage(t *testing.T) string { return pythonBuild.get(t) }

// busyboxImage packs the busybox rootfs as an OCI archive with the given
// image config (MKIMAGE_* variables of examples/mkimage.sh).
func busyboxImage(t *testing.T, config ...string) string {
	t.Helper()
	out := filepath.Join(tempDirOwned(t), "busybox.tar")
	cmd := exec.Command(repoPath("examples/mkimage.sh"), rootfsDir, out, "PATH=/bin", "IMAGE_VAR=from-image")
	cmd.Env = append(os.Environ(), config...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage.sh: %v\n%s", err, b)
	}
	os.Chmod(out, 0o644)
	return out
}

// cacheEntries lists what a cache holds in its images/ and tmp/ dirs.
func cacheEntries(t *testing.T, cache string) (images, tmp []string) {
	t.Helper()
	for _, sub := range []string{"images", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(cache, sub))
		for _, e := range ents {
			if sub == "images" {
				images = append(images, e.Name())
			} else {
				tmp = append(tmp, e.Name())
			}
		}
	}
	return images, tmp
}

// A real Python script runs in the Debian image, as the caller, in its
// directory: the image's Python, not the host's.
func TestPythonImage(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	dir := tempDirOwned(t)
	if err := os.WriteFile(filepath.Join(dir, "hello.py"), mustRead(t, repoPath("examples/hello.py")), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, opts{dir: dir, timeout: 3 * time.Minute}, "--image", image, "--cache", cache, "python3", "hello.py", "--arg", "1")
	host, _ := exec.Command("python3", "--version").Output()
	if !strings.Contains(r.stdout, "python 3.") || !strings.Contains(r.stdout, "user "+testUser) ||
		!strings.Contains(r.stdout, "cwd "+dir) || !strings.Contains(r.stdout, "args ['--arg', '1']") {
		t.Fatalf("unexpected output: %s", r)
	}
	if v := strings.TrimPrefix(strings.TrimSpace(string(host)), "Python "); v != "" && strings.Contains(r.stdout, "python "+v+"\n") {
		t.Errorf("the container ran the host's Python %s: %s", v, r.stdout)
	}
	if !strings.Contains(r.stderr, "unpacking") {
		t.Errorf("a cold start should say it unpacks: %q", r.stderr)
	}
	// Warm: no unpack, no message.
	r = mustRun(t, opts{dir: dir}, "--image", image, "--cache", cache, "python3", "-c", "print('warm')")
	if r.stdout != "warm\n" || strings.Contains(r.stderr, "unpacking") {
		t.Errorf("warm start: %s", r)
	}
	// -q silences the unpack's lines.
	r = mustRun(t, opts{dir: dir}, "-q", "--image", image, "--cache", filepath.Join(tempDirOwned(t), "c2"), "true")
	if r.stderr != "" {
		t.Errorf("-q printed %q", r.stderr)
	}
}

// Eight cold starts at once unpack the image exactly once; the others wait
// for it, say so, and run.
func TestImageConcurrentColdStarts(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	const n = 8
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = runRaw(opts{}, binPath, "--image", image, "--cache", cache, "sh", "-c", "echo ran")
		}(i)
	}
	wg.Wait()
	unpacks, waits := 0, 0
	for _, r := range results {
		if r.code != 0 || r.stdout != "ran\n" {
			t.Errorf("a concurrent start failed: %s", r)
		}
		unpacks += strings.Count(r.stderr, "hpcrun: unpacking ")
		waits += strings.Count(r.stderr, "being unpacked by pid")
	}
	if unpacks != 1 {
		t.Errorf("%d unpacks for %d concurrent cold starts, want 1", unpacks, n)
	}
	t.Logf("%d of %d waited for the unpack", waits, n-1)
	if images, tmp := cacheEntries(t, cache); len(images) != 1 || len(tmp) != 0 {
		t.Errorf("cache holds images %v, tmp %v", images, tmp)
	}
}

// A SIGKILL in the middle of an unpack leaves nothing a later run trusts;
// the next run unpacks again and succeeds.
func TestImageUnpackKilled(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	cmd, stderr := startUnpacking(t, image, cache)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if images, _ := cacheEntries(t, cache); len(images) != 0 {
		t.Fatalf("a killed unpack published %v; stderr %q", images, stderr.String())
	}
	// The unpacker hears of hpcrun's death (SIGTERM) and removes its
	// partial unpack itself.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, tmp := cacheEntries(t, cache)
		if len(tmp) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unpacker left %v after hpcrun was killed", tmp)
		}
	}
	r := mustRun(t, opts{timeout: 3 * time.Minute}, "--image", image, "--cache", cache, "python3", "-c", "print('again')")
	if r.stdout != "again\n" {
		t.Errorf("the run after a killed unpack: %s", r)
	}
	if images, tmp := cacheEntries(t, cache); len(images) != 1 || len(tmp) != 0 {
		t.Errorf("after the rerun the cache holds images %v, tmp %v", images, tmp)
	}
}

// The image's config: Env, Entrypoint and Cmd when no command is given,
// WorkingDir when the caller's directory is not visible inside.
func TestImageConfig(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t, `MKIMAGE_ENTRYPOINT=["sh","-c"]`, `MKIMAGE_CMD=["echo default-cmd $IMAGE_VAR; pwd"]`, "MKIMAGE_WORKDIR=/etc")
	cache := filepath.Join(tempDirOwned(t), "cache")
	r := mustRun(t, opts{}, "--image", image, "--cache", cache)
	if got := lines(r.stdout); strings.Join(got, ",") != "default-cmd from-image,"+workDir {
		t.Errorf("Entrypoint+Cmd in the caller's visible directory: got %q\n%s", got, r)
	}
	r = mustRun(t, opts{}, "--image", image, "--cache", cache, "sh", "-c", "echo explicit $IMAGE_VAR")
	if r.stdout != "explicit from-image\n" {
		t.Errorf("an explicit command replaces Entrypoint and Cmd: %s", r)
	}
	if !asOther {
		return
	}
	// From a host system directory that is not bound, WorkingDir applies.
	r = mustRun(t, opts{dir: "/usr/share"}, "--image", image, "--cache", cache, "pwd")
	if r.stdout != "/etc\n" {
		t.Errorf("want the image's WorkingDir /etc, got %s", r)
	}
}

// Bad images: one line, exit 125, and no entry in the cache.
func TestBadImages(t *testing.T) {
	t.Parallel()
	needUserns(t)
	dir := tempDirOwned(t)
	good := busyboxImage(t)
	notImage := filepath.Join(dir, "notes.txt")
	os.WriteFile(notImage, []byte("hello\n"), 0o644)
	truncated := filepath.Join(dir, "truncated.tar")
	b := mustRead(t, good)
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	corrupt := filepath.Join(dir, "corrupt.tar")
	c := append([]byte(nil), b...)
	c[len(c)/2] ^= 0xff // inside the layer blob
	os.WriteFile(corrupt, c, 0o644)
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	junk := filepath.Join(dir, "junk")
	os.Mkdir(junk, 0o755)
	os.WriteFile(filepath.Join(junk, "notes.txt"), []byte("hello\n"), 0o644)
	for _, tc := range []struct {
		name  string
		args  []string
		wants string
	}{
		{"missing file", []string{"--image", filepath.Join(dir, "nope.tar")}, "nope.tar"},
		{"not an image", []string{"--image", notImage}, "notes.txt"},
		{"truncated archive", []string{"--image", truncated}, "truncated.tar"},
		{"digest mismatch", []string{"--image", corrupt}, "sha256:"},
		{"no matching platform", []string{"--image", good, "--platform", "linux/s390x"}, "s390x"},
		{"empty dir", []string{"--image", empty}, "no index.json"},
		{"junk dir", []string{"--image", junk}, "no /bin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(tempDirOwned(t), "cache")
			// -q: only the error, no unpack progress.
			r := run(t, opts{}, append(append([]string{"-q", "--cache", cache}, tc.args...), "true")...)
			checkRefused(t, r, tc.wants, cache)
		})
	}
}

// checkRefused checks what hpcrun says of a bad image: exit 125, one line
// naming want, and nothing left in the cache.
func checkRefused(t *testing.T, r result, want, cache string) {
	t.Helper()
	if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "hpcrun: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("want exit 125 and one line naming %q: %s", want, r)
	}
	if images, tmp := cacheEntries(t, cache); len(images)+len(tmp) != 0 {
		t.Errorf("a partial cache entry is left: images %v, tmp %v", images, tmp)
	}
}

// hpcrun images lists what is cached; rmi removes it.
func TestImagesAndRmi(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	mustRun(t, opts{}, "-q", "--image", image, "--cache", cache, "true")
	r := mustRun(t, opts{}, "images", "--cache", cache)
	if !strings.Contains(r.stdout, "sha256:") || !strings.Contains(r.stdout, image) {
		t.Fatalf("images: %s", r)
	}
	mustRun(t, opts{}, "rmi", "--cache", cache, image)
	if images, tmp := cacheEntries(t, cache); len(images)+len(tmp) != 0 {
		t.Errorf("after rmi: images %v, tmp %v", images, tmp)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A SIGKILL of the unpacker itself, hpcrun's child, mid-unpack: hpcrun
// says so in one line and exits 125; the next run cleans up and succeeds.
func TestUnpackerKilled(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	cmd, stderr := startUnpacking(t, image, cache)
	unpacker := childNamed(cmd.Process.Pid, "hpcrun-unpack")
	if unpacker == 0 {
		cmd.Process.Kill()
		t.Fatal("no hpcrun-unpack child seen while the cache had a tmp entry")
	}
	syscall.Kill(unpacker, syscall.SIGKILL)
	err := cmd.Wait()
	if code := exitCode(cmd.ProcessState); code != 125 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "killed by signal 9") {
		t.Errorf("want exit 125 and one line on the killed unpacker; got %d (%v), %q", code, err, stderr.String())
	}
	if images, _ := cacheEntries(t, cache); len(images) != 0 {
		t.Fatalf("a killed unpack published %v", images)
	}
	r := mustRun(t, opts{timeout: 3 * time.Minute}, "-q", "--image", image, "--cache", cache, "python3", "-c", "print('again')")
	if r.stdout != "again\n" {
		t.Errorf("the run after a killed unpacker: %s", r)
	}
	if images, tmp := cacheEntries(t, cache); len(images) != 1 || len(tmp) != 0 {
		t.Errorf("after the rerun the cache holds images %v, tmp %v", images, tmp)
	}
}

// SIGINT mid-unpack ends hpcrun at once, as the signal's default action
// does, and the unpacker removes its partial unpack; also when hpcrun was
// started with SIGINT ignored (a background job of a script), where it
// used to run the unpack to its end and then fail to map the ids of the
// init it had killed.
func TestImageUnpackInterrupted(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t)
	for _, tc := range []struct{ name, trap string }{
		{"default", ""},
		{"ignored", `trap "" INT; `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(tempDirOwned(t), "cache")
			cmd, stderr := startUnpackingAs(t, cache, "sh", "-c", tc.trap+`exec "$@"`, "sh",
				binPath, "-q", "--image", image, "--cache", cache, "true")
			sent := time.Now()
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			took := time.Since(sent)
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGINT || stderr.Len() != 0 || took > 5*time.Second {
				t.Errorf("want hpcrun killed by SIGINT at once and silent; got %v after %v, stderr %q",
					cmd.ProcessState, took, stderr.String())
			}
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				images, tmp := cacheEntries(t, cache)
				if len(images) != 0 {
					t.Fatalf("an interrupted unpack published %v", images)
				}
				if len(tmp) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the unpacker left %v after hpcrun was interrupted", tmp)
				}
			}
		})
	}
}

// Slurm's warning before the time limit (--signal=USR1@60, or B:) can come
// while the image is still unpacking, before the job could catch it. It
// does not end the run, as TERM or INT then would: the job runs, without
// it, and hpcrun says on stderr that it was dropped; -q silences that.
func TestWarningSignalBeforeStart(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t)
	const job = `import signal, time
for s in signal.SIGUSR1, signal.SIGUSR2:
    signal.signal(s, lambda n, f: print("the job got", signal.Signals(n).name, flush=True))
print("the job ran", flush=True)
time.sleep(0.5)`
	for _, quiet := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "quiet"}[quiet], func(t *testing.T) {
			cache := filepath.Join(tempDirOwned(t), "cache")
			args := []string{"--image", image, "--cache", cache, "python3", "-c", job}
			if quiet {
				args = append([]string{"-q"}, args...)
			}
			cmd, stderr := startUnpackingAs(t, cache, binPath, args...)
			cmd.Process.Signal(syscall.SIGUSR1)
			cmd.Process.Signal(syscall.SIGUSR2)
			err := cmd.Wait()
			out := cmd.Stdout.(*bytes.Buffer).String()
			if err != nil || out != "the job ran\n" {
				t.Fatalf("want the job run to its end, without the signals; got %v, stdout %q, stderr %q", err, out, stderr)
			}
			var said []string
			for _, l := range lines(stderr.String()) {
				if strings.Contains(l, "came before") {
					said = append(said, l)
				}
			}
			want := []string{
				"hpcrun: warning: SIGUSR1 came before the job had started; it was not passed on",
				"hpcrun: warning: SIGUSR2 came before the job had started; it was not passed on",
			}
			if quiet {
				want = nil
			}
			if strings.Join(said, "\n") != strings.Join(want, "\n") {
				t.Errorf("stderr said %q, want %q; all of it:\n%s", said, want, stderr)
			}
		})
	}
}

// startUnpacking starts `hpcrun -q --image image true` on a cold cache and
// returns once the unpack has begun.
func startUnpacking(t *testing.T, image, cache string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return startUnpackingAs(t, cache, binPath, "-q", "--image", image, "--cache", cache, "true")
}

// startUnpackingAs starts a command line that runs hpcrun on a cold cache
// and returns once the unpack has begun.
func startUnpackingAs(t *testing.T, cache, name string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := command(ctx, opts{}, name, args...)
	stderr := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, tmp := cacheEntries(t, cache); len(tmp) > 0 {
			return cmd, stderr
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no unpack began in a minute: %q", stderr.String())
		}
	}
}

// childNamed finds a child of ppid whose argv[0] is name, or 0.
func childNamed(ppid int, name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if args := procArgs(pid); len(args) > 0 && args[0] == name && parentPID(pid) == ppid {
			return pid
		}
	}
	return 0
}
