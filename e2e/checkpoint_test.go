package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// criuImagePath is the Debian trixie + Python image with criu 4.1, built
// by examples/mkpython.sh.
var criuImagePath = "/var/tmp/hpcrun-e2e/py3-criu-" + sourcesHash("examples/mkpython.sh", "examples/mkimage.sh") + ".tar"

var criuBuild = &builtImage{name: "Python + criu", path: criuImagePath, script: "examples/mkpython.sh", args: []string{"criu"}}

func criuImage(t *testing.T) string { return criuBuild.get(t) }

// counterJob prints a count and its pid ten times a second, forever, and
// its child, a process of the tree, says so twice a second.
const counterJob = `import os, time
if os.fork() == 0:
    while True:
        print("child", os.getpid(), flush=True)
        time.sleep(0.5)
n = 0
while True:
    n += 1
    print(n, os.getpid(), flush=True)
    time.sleep(0.1)`

// checkpointRefusal is what hpcrun checkpoint says here instead of
// checkpointing, or "" where it checkpoints: under kernsim, which fakes an
// older kernel (no clone3 before 5.3) with a seccomp filter on every
// process, which criu cannot dump without CAP_SYS_ADMIN on the host.
func checkpointRefusal() string {
	status, _ := os.ReadFile("/proc/self/status")
	switch {
	case !hasClone3():
		return "checkpoint needs Linux 5.9 or newer"
	case strings.Contains(string(status), "Seccomp:\t2"):
		return "the job runs under a seccomp filter"
	}
	return ""
}

// checkpointRefused reports whether checkpointRefusal applies here, and then checks
// that r, a checkpoint, was refused so: one line, exit 125.
func checkpointRefused(t *testing.T, r result) bool {
	t.Helper()
	why := checkpointRefusal()
	if why != "" && (r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, why)) {
		t.Errorf("want one line that says %q, exit 125; got %s", why, r)
	}
	return why != ""
}

// startCounter runs counterJob in image as the named run name, from dir,
// its output going to dir/out (stdout) and dir/err, and returns once it
// has counted to 3.
func startCounter(t *testing.T, dir, out string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := command(ctx, opts{dir: dir}, "sh", append([]string{"-c", `exec "$@" >` + out + ` 2>` + out + `.err`, "sh", binPath}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitCount(t, filepath.Join(dir, out), 3)
	return cmd
}

// counts are the counts and pids that counterJob printed into path.
func counts(path string) (n, pid []int) {
	b, _ := os.ReadFile(path)
	for _, l := range lines(string(b)) {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		a, err1 := strconv.Atoi(f[0])
		b, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			n, pid = append(n, a), append(pid, b)
		}
	}
	return n, pid
}

// waitCount waits until path holds at least k counts.
func waitCount(t *testing.T, path string, k int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if n, _ := counts(path); len(n) >= k {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			e, _ := os.ReadFile(path + ".err")
			t.Fatalf("%s has fewer than %d counts after a minute: %q, stderr %q", path, k, b, e)
		}
	}
}

// A job checkpointed (hpcrun checkpoint NAME DIR) ends, and goes on from
// where it was with hpcrun --restore DIR, in the image the checkpoint
// names, under the same pid, with its child, writing to the new run's
// output; a restored job is checkpointed again, with --leave-running, and
// keeps running. On an older kernel, and under a seccomp filter,
// checkpoint refuses in one line and the job runs on.
func TestCheckpointRestore(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := criuImage(t)
	dir := tempDirOwned(t)
	name := "ckpt-" + filepath.Base(dir)
	// A network namespace and a keyring of its own: criu joins them.
	run := startCounter(t, dir, "out1", "--name", name, "--net", "none", "--new-keyring", "--image", image, "python3", "-c", counterJob)

	r := run2(t, dir, "checkpoint", name, "ck")
	if why := checkpointRefusal(); why != "" {
		if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, why) {
			t.Fatalf("want one line that says %q, exit 125; got %s", why, r)
		}
		n, _ := counts(filepath.Join(dir, "out1"))
		waitCount(t, filepath.Join(dir, "out1"), len(n)+3) // unharmed
		if _, err := os.Stat(filepath.Join(dir, "ck")); !os.IsNotExist(err) {
			t.Errorf("a refused checkpoint left ck: %v", err)
		}
		return
	}
	if r.code != 0 || !strings.Contains(r.stderr, "checkpointed "+name) {
		t.Fatalf("checkpoint: %s", r)
	}
	run.Wait()
	if code := exitCode(run.ProcessState); code != 137 {
		t.Errorf("the checkpointed run exited %d, want 137 (its job killed once saved)", code)
	}
	before, pids := counts(filepath.Join(dir, "out1"))
	last, pid := before[len(before)-1], pids[0]
	if pid < 1000 {
		t.Errorf("the job's pid is %d in its container, below the pid floor of 1000", pid)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".ck.") {
			t.Errorf("the checkpoint left %s behind", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ck", "hpcrun.json")); err != nil {
		t.Fatalf("no hpcrun.json in the checkpoint: %v", err)
	}

	// The restore: no --image, the checkpoint's.
	restored := startCounter(t, dir, "out2", "--name", name+"-r", "--restore", "ck")
	after, rpids := counts(filepath.Join(dir, "out2"))
	if after[0] != last+1 || rpids[0] != pid {
		t.Errorf("the restored job went on at %d as pid %d; want %d as pid %d", after[0], rpids[0], last+1, pid)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(dir, "out2")); strings.Contains(string(b), "child ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job's child was not restored: it says nothing")
		}
	}

	// Again, leaving it running.
	r = run2(t, dir, "checkpoint", "--leave-running", name+"-r", "ck2")
	if r.code != 0 {
		t.Fatalf("checkpoint --leave-running of the restored job: %s", r)
	}
	n, _ := counts(filepath.Join(dir, "out2"))
	waitCount(t, filepath.Join(dir, "out2"), len(n)+3)
	if r := run2(t, dir, "kill", name+"-r", "KILL"); r.code != 0 {
		t.Errorf("kill: %s", r)
	}
	restored.Wait()
	run2(t, dir, "delete", name)
	run2(t, dir, "delete", name+"-r")
}

// run2 runs hpcrun as the test user in dir.
func run2(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return run(t, opts{dir: dir, timeout: 2 * time.Minute}, args...)
}

// Each bad input gets one line and exit 125, leaves the job running and
// no checkpoint directory: a DIR that exists, a container that is not
// there, an image without criu; and --restore of a corrupt checkpoint, of
// one with a command, and of a directory that holds none.
func TestCheckpointBadInput(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t) // no criu
	dir := tempDirOwned(t)
	name := "ckbad-" + filepath.Base(dir)
	startCounter(t, dir, "out", "--name", name, "--image", image, "python3", "-c", counterJob)
	if err := os.Mkdir(filepath.Join(dir, "exists"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "exists"), testUID, testGID); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt")
	os.Mkdir(corrupt, 0o755)
	os.WriteFile(filepath.Join(corrupt, "hpcrun.json"), []byte(`{"version": 1, "pid": "x"`), 0o644)
	noCriu := "no criu in the image"
	if why := checkpointRefusal(); why != "" {
		noCriu = why
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"DIR exists", []string{"checkpoint", name, "exists"}, "exists: checkpoint into a new directory"},
		{"no such container", []string{"checkpoint", "nosuch-" + name, "ck1"}, "nosuch-" + name},
		{"no criu in the image", []string{"checkpoint", name, "ck2"}, noCriu},
		{"corrupt checkpoint", []string{"--restore", "corrupt"}, "corrupt"},
		{"no checkpoint there", []string{"--restore", "exists"}, "no checkpoint there"},
		{"restore with a command", []string{"--restore", "corrupt", "true"}, "--restore takes no command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run2(t, dir, tc.args...)
			if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want one line with %q, exit 125; got %s", tc.want, r)
			}
		})
	}
	for _, d := range []string{"ck1", "ck2"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("a failed checkpoint left %s: %v", d, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".ck") {
			t.Errorf("a failed checkpoint left %s behind", e.Name())
		}
	}
	n, _ := counts(filepath.Join(dir, "out"))
	waitCount(t, filepath.Join(dir, "out"), len(n)+3) // the job runs on
	run2(t, dir, "kill", name, "KILL")
}

// sumOfSquares is what ckjob.py prints for steps.
func sumOfSquares(steps int) int { return steps * (steps + 1) * (2*steps + 1) / 6 }

// examples/slurm/checkpoint.sbatch on the real Slurm: warned before its
// time limit (B:USR1), the job saves itself with hpcrun checkpoint, submits
// its next part, which goes on with hpcrun --restore; the last part prints
// the result of a run without a break, and removes the checkpoint. Here
// the warning is sent once, at a step of the job's (scancel --signal);
// with HPCRUN_TEST_LONG=1, Slurm sends it, before each 1-minute limit, and
// the job must have been cut at least twice. The Slurm daemons run
// outside kernsim (make e2e-kernsim), and so do the jobs.
func TestSlurmCheckpointResubmit(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := criuImage(t)
	b := newBatchDir(t, image, "")
	steps, limit := 300, "5"
	if longTests {
		steps, limit = 1000, "1"
	}
	ckpt := filepath.Join(b.dir, "ckpt")
	// SBATCH_TIMELIMIT, unlike --time, is the next parts' limit too: they
	// inherit the environment.
	first := b.sbatch([]string{"STEPS=" + strconv.Itoa(steps), "SBATCH_TIMELIMIT=" + limit}, "checkpoint.sbatch")
	if !longTests {
		b.waitOutput(first, "step 50 of", 2*time.Minute)
		if r := runRaw(opts{}, "scancel", "--signal=USR1", "--batch", first); r.code != 0 {
			t.Fatalf("scancel --signal=USR1: %s", r)
		}
	}
	// Follow the chain of parts, each submitted by the one before.
	next := regexp.MustCompile(`Submitted batch job (\d+)`)
	ids := []string{first}
	deadline := time.Now().Add(4 * time.Minute)
	if longTests {
		deadline = time.Now().Add(15 * time.Minute)
	}
	for {
		id := ids[len(ids)-1]
		rec := b.waitJob(id, 1, time.Until(deadline))[0]
		out := b.output(id)
		if m := next.FindStringSubmatch(out); m != nil {
			if rec["JobState"] != "COMPLETED" {
				t.Errorf("part %s, saved, ended %s (exit %s), want COMPLETED", id, rec["JobState"], rec["ExitCode"])
			}
			ids = append(ids, m[1])
			continue
		}
		if rec["JobState"] != "COMPLETED" || !strings.Contains(out, fmt.Sprintf("result %d\n", sumOfSquares(steps))) {
			t.Fatalf("the last part, %s, ended %s (exit %s); want COMPLETED with result %d:\n%s",
				id, rec["JobState"], rec["ExitCode"], sumOfSquares(steps), out)
		}
		break
	}
	t.Logf("%d steps in %d parts: %v", steps, len(ids), ids)
	if want := map[bool]int{false: 2, true: 3}[longTests]; len(ids) < want {
		t.Errorf("the job ran in %d parts, want at least %d", len(ids), want)
	}
	var pids []string
	for _, id := range ids {
		out := b.output(id)
		if !strings.Contains(out, ", pid ") {
			continue
		}
		pid := out[strings.LastIndex(out, ", pid ")+6:]
		pid, _, _ = strings.Cut(pid, "\n")
		pids = append(pids, pid)
	}
	for _, p := range pids {
		if p != pids[0] {
			t.Errorf("the parts ran as pids %v, want one pid throughout", pids)
			break
		}
	}
	if _, err := os.Stat(ckpt); !os.IsNotExist(err) {
		t.Errorf("the last part left the checkpoint: %v", err)
	}
}

// A Python job holding 1 GiB of memory is checkpointed and restored, and
// goes on counting; the log gives the times and the checkpoint's size.
func TestCheckpointLargeMemory(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := criuImage(t)
	dir := tempDirOwned(t)
	name := "ckbig-" + filepath.Base(dir)
	const big = `import os, time
b = bytearray(b"x" * (1 << 30))
n = 0
while True:
    n += 1
    b[n] = 1
    print(n, os.getpid(), flush=True)
    time.sleep(0.1)`
	startCounter(t, dir, "out1", "--name", name, "--image", image, "python3", "-c", big)
	start := time.Now()
	r := run2(t, dir, "checkpoint", name, "ck")
	if checkpointRefused(t, r) {
		return
	}
	if r.code != 0 {
		t.Fatalf("checkpoint: %s", r)
	}
	took := time.Since(start)
	var size int64
	ents, _ := os.ReadDir(filepath.Join(dir, "ck"))
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
		}
	}
	if size < 1<<30 {
		t.Errorf("the checkpoint holds %d bytes, less than the job's 1 GiB", size)
	}
	before, _ := counts(filepath.Join(dir, "out1"))
	start = time.Now()
	startCounter(t, dir, "out2", "--name", name+"-r", "--restore", "ck")
	restored := time.Since(start)
	after, _ := counts(filepath.Join(dir, "out2"))
	if after[0] != before[len(before)-1]+1 {
		t.Errorf("the restored job went on at %d, want %d", after[0], before[len(before)-1]+1)
	}
	t.Logf("1 GiB job: checkpoint %v, %.0f MiB; restore to its third count %v", took.Round(time.Millisecond), float64(size)/(1<<20), restored.Round(time.Millisecond))
	run2(t, dir, "kill", name+"-r", "KILL")
}

// What criu cannot dump rootless, an established TCP connection and SysV
// shared memory, is refused in one line, exit 125, that says which; the
// job runs on, and no checkpoint is left.
func TestCheckpointUndumpable(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := criuImage(t)
	for _, tc := range []struct{ name, setup, want string }{
		{"TCP connection", `import socket
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname())
peer, _ = srv.accept()`, "has an established TCP connection"},
		{"SysV shared memory", `import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shm = libc.shmget(0, 1 << 20, 0o600 | 0o1000)
assert shm >= 0 and libc.shmat(shm, None, 0) not in (None, ctypes.c_void_p(-1).value)
libc.shmctl(shm, 0, None)`, "maps SysV shared memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tempDirOwned(t)
			name := "ckund-" + filepath.Base(dir)
			startCounter(t, dir, "out", "--name", name, "--image", image, "python3", "-c", tc.setup+"\n"+counterJob)
			r := run2(t, dir, "checkpoint", name, "ck")
			if checkpointRefused(t, r) {
				return
			}
			if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want one line that says %q, exit 125; got %s", tc.want, r)
			}
			t.Logf("%s", strings.TrimSpace(r.stderr))
			if _, err := os.Stat(filepath.Join(dir, "ck")); !os.IsNotExist(err) {
				t.Errorf("a failed checkpoint left ck: %v", err)
			}
			n, _ := counts(filepath.Join(dir, "out"))
			waitCount(t, filepath.Join(dir, "out"), len(n)+3) // the job runs on
			run2(t, dir, "kill", name, "KILL")
		})
	}
}

// More that a checkpoint or a restore refuses, in one line, exit 125, the
// job running on: a site's criu older than 4.1 (the config's criu key); a
// job at a terminal; a disk that fills mid-dump, with no directory left;
// a restore with another image, or with other binds.
func TestCheckpointRefusals(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := criuImage(t)
	dir := tempDirOwned(t)
	name := "ckref-" + filepath.Base(dir)
	startCounter(t, dir, "out", "--name", name, "--image", image, "python3", "-c", counterJob)
	job := filepath.Join(dir, "out")
	stillRuns := func(t *testing.T) {
		t.Helper()
		n, _ := counts(job)
		waitCount(t, job, len(n)+3)
	}
	oneLine := func(t *testing.T, r result, want string) {
		t.Helper()
		if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("want one line with %q, exit 125; got %s", want, r)
		}
	}
	if why := checkpointRefusal(); why != "" {
		oneLine(t, run2(t, dir, "checkpoint", name, "ck"), why)
		stillRuns(t)
		return
	}

	t.Run("old criu", func(t *testing.T) {
		// A site's criu, through the config: a script run in the image.
		old := filepath.Join(dir, "criu-3.17")
		os.WriteFile(old, []byte("#!/bin/sh\necho Version: 3.17.1\n"), 0o755)
		conf := filepath.Join(dir, "hpcrun.yaml")
		os.WriteFile(conf, []byte("criu: "+old+"\n"), 0o644)
		r := run(t, opts{dir: dir, env: []string{"HPCRUN_CONFIG=" + conf}}, "checkpoint", name, "ck-old")
		oneLine(t, r, "criu 3.17.1 is too old")
		stillRuns(t)
	})

	t.Run("full disk", func(t *testing.T) {
		// A 1 MiB tmpfs of the test user's: the images do not fit.
		full := filepath.Join(tempDirOwned(t), "small")
		os.Mkdir(full, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=1m,uid=%d,gid=%d", testUID, testGID), "tmpfs", full).CombinedOutput(); err != nil {
			t.Fatalf("mount a small tmpfs: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", full).Run() })
		r := run2(t, dir, "checkpoint", name, filepath.Join(full, "ck"))
		oneLine(t, r, "the checkpoint's filesystem is full")
		t.Logf("%s", strings.TrimSpace(r.stderr))
		if ents, _ := os.ReadDir(full); len(ents) != 0 {
			t.Errorf("a dump that filled the disk left %v", ents)
		}
		stillRuns(t)
	})

	t.Run("at a terminal", func(t *testing.T) {
		tdir := tempDirOwned(t)
		tname := "cktty-" + filepath.Base(tdir)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		term := startOnTerminal(t, command(ctx, opts{dir: tdir}, binPath, "--name", tname, "--image", image, "python3", "-c", counterJob))
		term.waitFor("3 ")
		r := run2(t, tdir, "checkpoint", tname, "ck")
		oneLine(t, r, "is a terminal")
		term.waitFor("6 ")
		run2(t, tdir, "kill", tname, "KILL")
		term.wait()
	})

	t.Run("restore elsewhere", func(t *testing.T) {
		if r := run2(t, dir, "checkpoint", "--leave-running", name, "ck"); r.code != 0 {
			t.Fatalf("checkpoint: %s", r)
		}
		oneLine(t, run2(t, dir, "--restore", "ck", "--image", pythonImage(t)), "restore it with the same image")
		oneLine(t, run2(t, dir, "--restore", "ck", "--bind", dir+":/mnt"), "/mnt bound from "+dir)
		stillRuns(t)
	})
	run2(t, dir, "kill", name, "KILL")
}

// A bundle's process under its linux.seccomp filter is refused: criu
// cannot dump a filter without CAP_SYS_ADMIN on the host.
func TestCheckpointSeccompBundle(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := seccompBundle(t, "sleep 60", mkdirErrno, true)
	mustLC(t, root, "create", "--bundle", bundle, "sc")
	mustLC(t, root, "start", "sc")
	t.Cleanup(func() { lc(t, root, "delete", "--force", "sc") })
	want := checkpointRefusal()
	if want == "" {
		want = "runs under a seccomp filter"
	}
	failsLC(t, root, want, "checkpoint", "sc", filepath.Join(tempDirOwned(t), "ck"))
	if s, _ := ociStatus(t, root, "sc"); s != "running" {
		t.Errorf("after the refused checkpoint the container is %s, want running", s)
	}
}
