package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	// They start together (the group waits for all four); the first
	// task's job ends first, the others' later.
	var wg sync.WaitGroup
	results := make([]result, 4)
	for rank := range 4 {
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
// themselves, named slurm-JOB.STEP, with --image and the default cache and
// state dirs: they meet on the image's digest, whichever cache each task
// picked (Slurm sets TMPDIR for task 0 only). --no-join gives each its own.
func TestSlurmJoin(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	script := `echo "task $SLURM_PROCID $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/user) slurm-$SLURM_JOB_ID.$SLURM_STEP_ID"`
	groups := map[string]bool{}
	srun := func(extra ...string) map[string]int {
		args := append([]string{"-N1", "-n4", "--ntasks-per-node=4", "--time=3", binPath}, extra...)
		args = append(args, "--image", image, "sh", "-c", script)
		r := runRaw(opts{dir: tempDirOwned(t), timeout: 2 * time.Minute}, "srun", args...)
		if r.err != nil || r.code != 0 {
			t.Fatalf("srun: %s", r)
		}
		namespaces := map[string]int{}
		tasks := 0
		for _, l := range lines(r.stdout) {
			if f := strings.Fields(l); len(f) == 5 && f[0] == "task" {
				namespaces[f[2]+" "+f[3]]++
				groups[f[4]] = true
				tasks++
			}
		}
		if tasks != 4 {
			t.Fatalf("want 4 tasks to report: %s", r)
		}
		return namespaces
	}
	if ns := srun(); len(ns) != 1 {
		t.Errorf("joined: the 4 tasks ran in %d pid/user namespaces, want 1: %v", len(ns), ns)
	}
	if ns := srun("--no-join"); len(ns) != 4 {
		t.Errorf("--no-join: the 4 tasks ran in %d pid/user namespaces, want 4: %v", len(ns), ns)
	}
	// The group container goes with its last task (the other Slurm
	// tests' containers share the default state root).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		listed := strings.Fields(run(t, opts{}, "list", "-q").stdout)
		left := slices.DeleteFunc(listed, func(id string) bool { return !groups[id] })
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %q", left)
		}
	}
}

// srunTasks runs `srun -N1 -n N -l sh -c SCRIPT` as the test user, with no
// --kill-on-bad-exit (Slurm's default: a task that fails leaves the
// others running), and returns each task's lines by its task id.
func srunTasks(t *testing.T, n int, script string, env ...string) (map[int][]string, result, time.Duration) {
	t.Helper()
	name := fmt.Sprintf("hpcrun-join-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
	t.Cleanup(func() { exec.Command("scancel", "--name="+name).Run() })
	start := time.Now()
	r := runRaw(opts{dir: tempDirOwned(t), env: append([]string{"HPCRUN=" + binPath}, env...), timeout: 3 * time.Minute},
		"srun", "--job-name="+name, "--time=3", "-N1", "-n", strconv.Itoa(n), "-l", "sh", "-c", script)
	took := time.Since(start)
	tasks := map[int][]string{}
	for _, l := range lines(r.stdout + r.stderr) {
		id, text, ok := strings.Cut(l, ": ")
		rank, err := strconv.Atoi(strings.TrimSpace(id))
		if ok && err == nil {
			tasks[rank] = append(tasks[rank], text)
		}
	}
	return tasks, r, took
}

// When one task of a group cannot start, every task ends at once with the
// same one line and exit 125 (after the progress of its unpack, if any),
// rather than waiting for it: srun does not
// end the others, and MPI ranks would wait in MPI_Init until the time
// limit. Forced here: another --image on one task; a cache on a full
// filesystem for one task; one task killed before the group starts.
func TestSlurmJoinFails(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	py3, mpi := pythonImage(t), mpiImage(t)
	small := filepath.Join(tempDirOwned(t), "small")
	os.Mkdir(small, 0o755)
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=160m,mode=0755,uid="+strconv.Itoa(testUID)); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(small, syscall.MNT_DETACH) })
	own := tempDirOwned(t) // an empty cache: task 1 unpacks the image there
	const n = 4
	// Every task runs one of these; task 1 may differ. The others' image
	// is warm in the default cache.
	warm := runRaw(opts{dir: tempDirOwned(t), timeout: 2 * time.Minute}, "srun", "-N1", "-n1", binPath, "--image", py3, "true")
	if warm.code != 0 {
		t.Fatalf("warming the cache: %s", warm)
	}
	for _, tc := range []struct {
		name  string
		tasks map[int]string // what tasks other than the rest run
		own   map[int]string // tasks that say something of their own: the line they end with
		want  string         // the line every other task ends with
	}{
		{name: "another image", tasks: map[int]string{1: `exec $HPCRUN --image ` + mpi + ` true`},
			want: `^hpcrun: the tasks of group slurm-\d+\.\d+ ask for different images \(sha256:[0-9a-f]{64} on one, sha256:[0-9a-f]{64} on another\); give every task the same --image`},
		{name: "a full disk", tasks: map[int]string{1: `export HPCRUN_CACHE=` + small + `; exec $HPCRUN --image ` + py3 + ` true`},
			want: `^hpcrun: task 1 of group slurm-\d+\.\d+ could not start: .*no space left`},
		{name: "killed before the group starts",
			tasks: map[int]string{1: `export HPCRUN_CACHE=` + own + `; $HPCRUN --image ` + py3 + ` true & sleep 0.3; kill -9 $!; wait $!; echo "killed: $?"; exit 9`},
			own:   map[int]string{1: "killed: 137"},
			want:  `^hpcrun: a task of group slurm-\d+\.\d+ \(pid \d+\) ended before the group started`},
		// Task 1 never runs hpcrun: the others give up after join_timeout.
		{name: "a task that never comes", tasks: map[int]string{1: `echo "not coming"; exit 0`},
			own:  map[int]string{1: "not coming"},
			want: `^hpcrun: only 3 of the 4 tasks of group slurm-\d+\.\d+ came within 3s; give --join-count`},
		// Task 2 fails at once, and the others with it, before task 1
		// comes: task 1 hears the same reason at once, not after
		// join_timeout.
		{name: "a task that comes late",
			tasks: map[int]string{1: `sleep 4; exec $HPCRUN --image ` + py3 + ` true`, 2: `exec $HPCRUN --image /nonexistent.tar true`},
			want:  `^hpcrun: task 2 of group slurm-\d+\.\d+ could not start: .*nonexistent.tar`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := `export HPCRUN_JOIN_TIMEOUT=3s; `
			if tc.name == "a task that comes late" {
				script = `` // the default join_timeout, 60s: task 1 must not wait it out
			}
			for rank, cmd := range tc.tasks {
				script += `if [ "$SLURM_LOCALID" = ` + strconv.Itoa(rank) + ` ]; then ` + cmd + `; fi; `
			}
			script += `exec $HPCRUN --image ` + py3 + ` true`
			tasks, r, took := srunTasks(t, n, script)
			t.Logf("srun -n %d ended in %v: %s", n, took.Round(10*time.Millisecond), r)
			if took > 45*time.Second {
				t.Errorf("the step took %v: a task waited for one that had failed", took)
			}
			if r.code == 0 {
				t.Errorf("srun: want a failure, got exit 0")
			}
			want := regexp.MustCompile(tc.want)
			var line string
			for rank := range n {
				got := tasks[rank]
				if mine, ok := tc.own[rank]; ok {
					if !slices.Contains(got, mine) || strings.Contains(strings.Join(got, "\n"), "group") {
						t.Errorf("task %d: want its shell's line %q and nothing of the group, got %q", rank, mine, got)
					}
					continue
				}
				// Its last line, after the unpack's progress if any.
				if len(got) == 0 || !want.MatchString(got[len(got)-1]) || slices.ContainsFunc(got[:len(got)-1], want.MatchString) {
					t.Errorf("task %d: want its last line, only, to match %s, got %q", rank, tc.want, got)
					continue
				}
				last := got[len(got)-1]
				if line == "" {
					line = last
				} else if last != line {
					t.Errorf("task %d said %q, another %q: want the same line on every task", rank, last, line)
				}
			}
			if !strings.Contains(strings.ToLower(r.stderr), "exited with exit code 125") {
				t.Errorf("srun does not report exit 125 for the tasks")
			}
		})
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
