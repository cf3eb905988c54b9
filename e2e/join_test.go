package e2e

import (
	"context"
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

// Tasks that give one --join-tag share one container, whatever order they
// come in: each with its own environment, output and exit status; the
// container outlives its creator's task and goes with the last one.
func TestJoin(t *testing.T) {
	t.Parallel()
	needUserns(t)
	state := tempDirOwned(t) // XDG_RUNTIME_DIR: the state root is state/hpcrun
	task := func(rank int, delay string) result {
		return run(t, opts{env: []string{"XDG_RUNTIME_DIR=" + state, "RANK=" + strconv.Itoa(rank)}},
			"--rootfs", rootfsDir, "--join-tag", "grp", "--join-count", "4", "sh", "-c",
			`sleep `+delay+`; echo "rank $RANK ns $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/user) pid $$"; exit $((RANK + 10))`)
	}
	// The creator runs alone and ends first; the others come later.
	first := task(0, "0")
	var wg sync.WaitGroup
	results := make([]result, 4)
	results[0] = first
	for rank := 1; rank < 4; rank++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[rank] = task(rank, "0."+strconv.Itoa(rank))
		}()
	}
	wg.Wait()
	var ns string
	for rank, r := range results {
		if r.code != rank+10 {
			t.Errorf("task %d: want its own exit status %d: %s", rank, rank+10, r)
		}
		f := strings.Fields(r.stdout)
		if len(f) != 7 || f[1] != strconv.Itoa(rank) {
			t.Fatalf("task %d printed %q", rank, r.stdout)
		}
		if rank == 0 {
			ns = f[3] + " " + f[4]
		} else if got := f[3] + " " + f[4]; got != ns {
			t.Errorf("task %d is in namespaces %s, task 0 in %s", rank, got, ns)
		}
	}
	if hostNS, _ := os.Readlink("/proc/self/ns/pid"); strings.Contains(ns, hostNS) {
		t.Errorf("the tasks ran in the host's pid namespace %s", hostNS)
	}
	waitGone(t, state, "grp")
}

// waitGone waits until container id has left the state root and its
// processes have gone.
func waitGone(t *testing.T, state, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := run(t, opts{env: []string{"XDG_RUNTIME_DIR=" + state}}, "list", "-q")
		if !strings.Contains(r.stdout, id) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is still listed: %s", id, r.stdout)
		}
	}
}

// A member's signals reach its own process only; a member killed takes
// its process with it; tasks that ask for different images are refused.
func TestJoinSignals(t *testing.T) {
	t.Parallel()
	needUserns(t)
	state := tempDirOwned(t)
	flags := tempDirOwned(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(rank int) (*exec.Cmd, *strings.Builder) {
		cmd := command(ctx, opts{env: []string{"XDG_RUNTIME_DIR=" + state, "RANK=" + strconv.Itoa(rank)}}, binPath,
			"--rootfs", rootfsDir, "--join-tag", "sig", "--join-count", "2", "sh", "-c",
			`trap "echo term > `+flags+`/term-$RANK; exit 5" TERM; echo up; while :; do sleep 0.05; done`)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	a, aout := start(0)
	b, bout := start(1)
	for deadline := time.Now().Add(20 * time.Second); strings.Count(aout.String()+bout.String(), "up") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the tasks did not start: %q %q", aout.String(), bout.String())
		}
	}
	// Another image under the same tag is refused.
	other := ownedRootfs(t)
	r := run(t, opts{env: []string{"XDG_RUNTIME_DIR=" + state}}, "--rootfs", other, "--join-tag", "sig", "--join-count", "2", "true")
	assertOneErrorLine(t, r)
	if !strings.Contains(r.stderr, "different images") {
		t.Errorf("a task with another image: %s", r)
	}

	a.Process.Signal(syscall.SIGTERM)
	a.Wait()
	if code := exitCode(a.ProcessState); code != 5 {
		t.Errorf("task 0 after TERM: exit %d, want 5 (its handler's): %s", code, aout.String())
	}
	if _, err := os.Stat(filepath.Join(flags, "term-1")); err == nil {
		t.Error("task 1 got task 0's TERM")
	}
	b.Process.Kill()
	b.Wait()
	waitGone(t, state, "sig")
	if pids := findProcs("sh", "-c", `trap "echo term > `+flags+`/term-$RANK; exit 5" TERM; echo up; while :; do sleep 0.05; done`); len(pids) != 0 {
		t.Errorf("task 1's process outlived its killed hpcrun: %v", pids)
	}
}

// Under srun the tasks of a step on one node join one container by
// themselves, named slurm-JOB.STEP; --no-join gives each its own.
func TestSlurmJoin(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	state := tempDirOwned(t)
	script := `echo "task $SLURM_PROCID $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/user)"`
	srun := func(extra ...string) map[string]int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		args := append([]string{"-N1", "-n4", "--ntasks-per-node=4", binPath}, extra...)
		args = append(args, "--rootfs", rootfsDir, "sh", "-c", script)
		cmd := command(ctx, opts{env: []string{"XDG_RUNTIME_DIR=" + state, "PATH=/usr/bin:/bin"}}, "srun", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("srun %q: %v\n%s", args, err, out)
		}
		namespaces := map[string]int{}
		tasks := 0
		for _, l := range lines(string(out)) {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "task" {
				namespaces[f[2]+" "+f[3]]++
				tasks++
			}
		}
		if tasks != 4 {
			t.Fatalf("srun %q: want 4 tasks to report:\n%s", args, out)
		}
		return namespaces
	}
	if ns := srun(); len(ns) != 1 {
		t.Errorf("joined: the 4 tasks ran in %d pid/user namespaces, want 1: %v", len(ns), ns)
	}
	if ns := srun("--no-join"); len(ns) != 4 {
		t.Errorf("--no-join: the 4 tasks ran in %d pid/user namespaces, want 4: %v", len(ns), ns)
	}
	r := run(t, opts{env: []string{"XDG_RUNTIME_DIR=" + state}}, "list", "-q")
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("left behind: %q", r.stdout)
	}
}

// --gpu and --rocm on a node without the driver: one line that says what
// is missing, exit 125. (gpu's unit tests find drivers in fake trees.)
func TestGPUNoDriver(t *testing.T) {
	t.Parallel()
	for flag, dev := range map[string]string{"--gpu": "/dev/nvidiactl", "--nv": "/dev/nvidiactl", "--rocm": "/dev/kfd"} {
		if _, err := os.Stat(dev); err == nil {
			t.Logf("%s exists: this node has the driver of %s", dev, flag)
			continue
		}
		r := run(t, opts{}, flag, "--rootfs", rootfsDir, "true")
		assertOneErrorLine(t, r)
		if !strings.Contains(r.stderr, "driver on this node") || !strings.Contains(r.stderr, dev) {
			t.Errorf("%s: %s", flag, r)
		}
	}
	r := run(t, opts{}, "--gpu", "--rocm", "--rootfs", rootfsDir, "true")
	assertOneErrorLine(t, r)
}

// An exec'd process dies with the hpcrun exec that started it, in a named
// run and in a created container alike.
func TestExecDiesWithCaller(t *testing.T) {
	t.Parallel()
	needUserns(t)
	state := tempDirOwned(t)
	env := []string{"XDG_RUNTIME_DIR=" + state}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job := command(ctx, opts{env: env}, binPath, "--rootfs", rootfsDir, "--name", "svc", "sleep", "300")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { job.Process.Kill(); job.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(run(t, opts{env: env}, "list").stdout, "running"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the named run did not come up")
		}
	}
	marker := "9" + strconv.Itoa(os.Getpid()%100000)
	ex := command(ctx, opts{env: env}, binPath, "exec", "svc", "sleep", marker)
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(findProcs("sleep", marker)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the exec'd sleep did not start")
		}
	}
	ex.Process.Kill()
	ex.Wait()
	for deadline := time.Now().Add(10 * time.Second); len(findProcs("sleep", marker)) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the exec'd sleep outlived its killed hpcrun exec")
		}
	}
}
