package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The job scripts of examples/slurm, run as users run them: copied into a
// directory of the test user's, submitted from there as that user to the real
// Slurm of scripts/slurm-up.sh (single.pbs, with no PBS here, by bash under
// the environment PBS gives a job), with hpcrun on PATH and IMAGE naming the
// Debian trixie + Python image.

var (
	slurmOnce    sync.Once
	slurmErr     error
	slurmOut     []byte
	slurmStarted bool // the tests started the daemons, and stop them at the end

	warmCacheOnce sync.Once
	warmCache     string
	warmCacheErr  error
)

// slurmUp makes this machine the Slurm cluster of scripts/slurm-up.sh, once
// per test binary. It fails without user namespaces when they are required,
// and skips when we are not root: configuring Slurm needs root.
func slurmUp(t *testing.T) {
	t.Helper()
	needUserns(t)
	if os.Geteuid() != 0 || !asOther {
		t.Skip("configuring Slurm needs root")
	}
	slurmOnce.Do(func() {
		if os.Getenv("HPCRUN_TEST_SLURM_RUNNING") == "1" {
			// make e2e-kernsim started the cluster outside kernsim: a
			// daemon that slurm-up.sh (re)started from here would keep
			// its syscall filter. Leave it as it is.
			if !slurmctldRunning() {
				slurmErr = fmt.Errorf("HPCRUN_TEST_SLURM_RUNNING=1, but no slurmctld runs: start it with scripts/slurm-up.sh first")
			}
			return
		}
		slurmStarted = !slurmctldRunning()
		slurmOut, slurmErr = exec.Command(repoPath("scripts/slurm-up.sh")).CombinedOutput()
	})
	if slurmErr != nil {
		t.Fatalf("scripts/slurm-up.sh: %v\n%s", slurmErr, slurmOut)
	}
}

// slurmctldRunning reports whether the pid file of scripts/slurm-up.sh
// names a live slurmctld.
func slurmctldRunning() bool {
	b, err := os.ReadFile("/run/slurmctld.pid")
	if err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
	return err == nil && strings.Contains(string(stat), "(slurmctld) ") && !strings.Contains(string(stat), ") Z ")
}

// stopSlurm stops the Slurm daemons after the tests, by their pids
// (scripts/slurm-down.sh), when the tests started them.
func stopSlurm() error {
	if !slurmStarted {
		return nil
	}
	out, err := exec.Command(repoPath("scripts/slurm-down.sh")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("scripts/slurm-down.sh: %v\n%s", err, out)
	}
	return nil
}

// sharedCache is an image cache of the test user's where the Python image is
// unpacked already, so that jobs that do not test the unpack start at once.
func sharedCache(t *testing.T, image string) string {
	t.Helper()
	warmCacheOnce.Do(func() {
		warmCache = filepath.Join(baseDir, "slurm-cache")
		if warmCacheErr = mkdirOwned(warmCache); warmCacheErr != nil {
			return
		}
		r := runRaw(opts{timeout: 2 * time.Minute}, binPath, "--cache", warmCache, "--image", image, "true")
		if r.err != nil || r.code != 0 {
			warmCacheErr = fmt.Errorf("unpack the image: %s", r)
		}
	})
	if warmCacheErr != nil {
		t.Fatal(warmCacheErr)
	}
	return warmCache
}

// batchDir is where a test submits its jobs from, as a user would: a copy of
// examples/slurm, and the environment the jobs get.
type batchDir struct {
	t     *testing.T
	dir   string // the copy of examples/slurm, the jobs' working directory
	cache string // HPCRUN_CACHE; "" for the default cache
	state string // hpcrun's container state: the default, /tmp/hpcrun-UID/run (no XDG_RUNTIME_DIR in a job)
	env   []string
	jobs  []string // submitted, for the diagnostics and the cleanup
}

// newBatchDir copies the examples into a fresh directory of the test user's
// and sets IMAGE and a PATH that has hpcrun, and HPCRUN_CACHE when cache is
// not "": as users submit, with the default cache and state dirs.
// If the test fails, its jobs' output and the Slurm logs about them are
// printed; jobs still queued or running are cancelled.
func newBatchDir(t *testing.T, image, cache string) *batchDir {
	t.Helper()
	b := &batchDir{t: t, dir: tempDirOwned(t), cache: cache, state: "/tmp/hpcrun-" + strconv.Itoa(testUID) + "/run"}
	ents, err := os.ReadDir(repoPath("examples/slurm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(repoPath("examples/slurm/" + e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, e.Name()), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b.env = []string{
		"PATH=" + filepath.Dir(binPath) + ":/usr/bin:/bin", // as after `module load hpcrun`
		"IMAGE=" + image,
	}
	if cache != "" {
		b.env = append(b.env, "HPCRUN_CACHE="+cache)
	}
	t.Cleanup(func() {
		for _, j := range b.jobs {
			exec.Command("scancel", j).Run()
		}
		if t.Failed() {
			t.Log(b.diagnostics())
			t.Log(b.summary())
		}
	})
	return b
}

// summary is a few lines on each job, logged last: where a failure's log is
// cut to its tail, they still say how each job ended.
func (b *batchDir) summary() string {
	var s strings.Builder
	for _, id := range b.jobs {
		state := "no record left"
		if recs := jobRecords(id); len(recs) > 0 {
			r := recs[0]
			state = fmt.Sprintf("%s, exit %s, reason %s, run time %s", r["JobState"], r["ExitCode"], r["Reason"], r["RunTime"])
		}
		out := lines(b.output(id))
		if len(out) > 4 {
			out = out[len(out)-4:]
		}
		fmt.Fprintf(&s, "\njob %s: %s; its output ends: %q", id, state, out)
	}
	return "the jobs, in short:" + s.String()
}

// sbatch runs sbatch --parsable args as the test user, in b.dir, with the
// jobs' environment and env, and returns the job id.
func (b *batchDir) sbatch(env []string, args ...string) string {
	b.t.Helper()
	r := runRaw(opts{dir: b.dir, env: append(append([]string{}, b.env...), env...)}, "sbatch", append([]string{"--parsable"}, args...)...)
	id, _, _ := strings.Cut(strings.TrimSpace(r.stdout), ";")
	if r.err != nil || r.code != 0 || id == "" {
		b.t.Fatalf("sbatch: %s", r)
	}
	b.jobs = append(b.jobs, id)
	return id
}

// output is what the job's output files hold (NAME-ID.out, or the tasks'
// NAME-ID_TASK.out).
func (b *batchDir) output(id string) string {
	names, _ := filepath.Glob(filepath.Join(b.dir, "*-"+id+".out"))
	tasks, _ := filepath.Glob(filepath.Join(b.dir, "*-"+id+"_*.out"))
	names = append(names, tasks...)
	sort.Strings(names)
	var out strings.Builder
	for _, n := range names {
		data, _ := os.ReadFile(n)
		out.Write(data)
	}
	return out.String()
}

// diagnostics shows the jobs' output files and what the Slurm daemons logged
// about them.
func (b *batchDir) diagnostics() string {
	var s strings.Builder
	names, _ := filepath.Glob(filepath.Join(b.dir, "*.out"))
	for _, n := range names {
		data, _ := os.ReadFile(n)
		fmt.Fprintf(&s, "--- %s:\n%s", n, data)
	}
	s.WriteString(slurmLogs(b.jobs...))
	return s.String()
}

// slurmLogs is the tail of what slurmctld and the slurmds logged about the
// jobs, or of the whole logs when they name none of them.
func slurmLogs(jobs ...string) string {
	var pats []string
	for _, j := range jobs {
		pats = append(pats, "JobId="+j, "["+j+".", "job "+j, "JOB "+j, "job_"+j, "Job "+j)
	}
	logs, _ := filepath.Glob("/var/log/slurm/slurmd-*.log")
	logs = append([]string{"/var/log/slurm/slurmctld.log"}, logs...)
	var s strings.Builder
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		var hits []string
		for _, line := range all {
			for _, p := range pats {
				if strings.Contains(line, p) {
					hits = append(hits, line)
					break
				}
			}
		}
		if len(hits) == 0 && len(all) > 10 {
			hits = all[len(all)-10:]
		}
		if len(hits) > 30 {
			hits = hits[len(hits)-30:]
		}
		fmt.Fprintf(&s, "--- %s (the jobs %v):\n%s\n", l, jobs, strings.Join(hits, "\n"))
	}
	return s.String()
}

// jobRecord is one record of `scontrol -o show job`: an array job has one
// per task.
type jobRecord map[string]string

var scontrolField = regexp.MustCompile(`(\w+)=(\S*)`)

// jobRecords reads the job's records from slurmctld; nil once it has purged
// them (MinJobAge after the end).
func jobRecords(id string) []jobRecord {
	out, err := exec.Command("scontrol", "-o", "show", "job", id).Output()
	if err != nil {
		return nil
	}
	var recs []jobRecord
	for _, l := range lines(string(out)) {
		rec := jobRecord{}
		for _, m := range scontrolField.FindAllStringSubmatch(l, -1) {
			if _, ok := rec[m[1]]; !ok {
				rec[m[1]] = m[2]
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

var finalStates = map[string]bool{"COMPLETED": true, "CANCELLED": true, "FAILED": true, "TIMEOUT": true,
	"NODE_FAIL": true, "PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true, "OUT_OF_MEMORY": true}

// jobWatch is what watchJob saw of a job.
type jobWatch struct {
	records []jobRecord              // the final ones
	seen    map[string]time.Duration // when each mark showed in the output, from the submission
	err     error
}

// watchJob polls slurmctld, in the background, until the job's n records
// (the tasks of an array) have all ended, noting when each of marks first
// showed in its output. Polling, because sbatch --wait polls at 2, 10 and
// then every 32 s; in the background, because a test that waits for its turn
// among the parallel tests could miss the record otherwise: slurmctld purges
// it MinJobAge (30 s) after the end.
func (b *batchDir) watchJob(id string, n int, timeout time.Duration, marks ...string) <-chan jobWatch {
	ch := make(chan jobWatch, 1)
	start := time.Now()
	go func() {
		w := jobWatch{seen: map[string]time.Duration{}}
		for deadline := start.Add(timeout); ; time.Sleep(250 * time.Millisecond) {
			out := b.output(id)
			for _, m := range marks {
				if _, ok := w.seen[m]; !ok && strings.Contains(out, m) {
					w.seen[m] = time.Since(start)
				}
			}
			recs := jobRecords(id)
			done := len(recs) == n
			for _, r := range recs {
				done = done && finalStates[r["JobState"]]
			}
			if done {
				w.records = recs
				break
			}
			if time.Now().After(deadline) {
				w.err = fmt.Errorf("job %s has not ended after %v: %v", id, timeout, recs)
				break
			}
		}
		ch <- w
	}()
	return ch
}

// waitJob waits for the job's n records (tasks of an array) to end and
// returns them.
func (b *batchDir) waitJob(id string, n int, timeout time.Duration) []jobRecord {
	b.t.Helper()
	w := <-b.watchJob(id, n, timeout)
	if w.err != nil {
		b.t.Fatal(w.err)
	}
	return w.records
}

// waitOutput waits until the job's output has s.
func (b *batchDir) waitOutput(id, s string, timeout time.Duration) {
	b.t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(b.output(id), s); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.t.Fatalf("job %s printed no %q in %v; state %v", id, s, timeout, jobRecords(id))
		}
	}
}

// containerPython checks that out has job.py's line from the container: the
// image's Python, which is not the host's, on Debian trixie.
func containerPython(t *testing.T, out string) {
	t.Helper()
	m := regexp.MustCompile(`Python (\S+) on Debian GNU/Linux 13 \(trixie\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line of job.py from the Python image:\n%s", out)
	}
	if host, err := exec.Command("/usr/bin/python3", "-c", "import platform; print(platform.python_version())").Output(); err == nil &&
		strings.TrimSpace(string(host)) == m[1] {
		t.Errorf("the job ran Python %s, the host's", m[1])
	}
}

// single.sbatch: one task; job.py prints the container's Python and the job id.
func TestSlurmSingleJob(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	b := newBatchDir(t, image, "")
	id := b.sbatch(nil, "single.sbatch")
	rec := b.waitJob(id, 1, 2*time.Minute)[0]
	out := b.output(id)
	if rec["JobState"] != "COMPLETED" || rec["ExitCode"] != "0:0" {
		t.Fatalf("job %s: state %s, exit code %s, want COMPLETED 0:0", id, rec["JobState"], rec["ExitCode"])
	}
	containerPython(t, out)
	if !strings.Contains(out, "SLURM_JOB_ID="+id+" ") {
		t.Errorf("no SLURM_JOB_ID=%s from inside the container:\n%s", id, out)
	}
}

// array.sbatch: four tasks start together, with the default cache. At most
// one of them unpacks the image (none when an earlier job on the node did),
// the others wait for it, and all run it. Each prints its array task id from
// inside.
func TestSlurmArrayJob(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	b := newBatchDir(t, image, "")
	id := b.sbatch(nil, "array.sbatch")
	recs := b.waitJob(id, 4, 2*time.Minute)
	for _, r := range recs {
		if r["JobState"] != "COMPLETED" || r["ExitCode"] != "0:0" {
			t.Errorf("array task %s (job %s): state %s, exit code %s", r["ArrayTaskId"], r["JobId"], r["JobState"], r["ExitCode"])
		}
	}
	unpacks := 0
	for task := range 4 {
		out := b.output(id + "_" + strconv.Itoa(task))
		containerPython(t, out)
		if !strings.Contains(out, "SLURM_ARRAY_TASK_ID="+strconv.Itoa(task)+" ") {
			t.Errorf("task %d did not print its SLURM_ARRAY_TASK_ID:\n%s", task, out)
		}
		unpacks += strings.Count(out, "hpcrun: unpacked ")
	}
	if unpacks > 1 {
		t.Errorf("the image was unpacked %d times by the tasks of one array, want at most once:\n%s", unpacks, b.output(id))
	}
}

// multitask.sbatch: srun runs four tasks, each in a container, each prints
// its SLURM_PROCID.
func TestSlurmMultitaskJob(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	b := newBatchDir(t, image, "")
	id := b.sbatch(nil, "multitask.sbatch")
	rec := b.waitJob(id, 1, 2*time.Minute)[0]
	out := b.output(id)
	if rec["JobState"] != "COMPLETED" || rec["ExitCode"] != "0:0" {
		t.Fatalf("job %s: state %s, exit code %s, want COMPLETED 0:0", id, rec["JobState"], rec["ExitCode"])
	}
	containerPython(t, out)
	for rank := range 4 {
		if n := strings.Count(out, " SLURM_PROCID="+strconv.Itoa(rank)+" SLURM_NTASKS=4"); n != 1 {
			t.Errorf("rank %d printed its SLURM_PROCID %d times, want once:\n%s", rank, n, out)
		}
	}
}

// interactive.sh: at a terminal, srun --pty gives the container's python3
// a terminal; what is typed runs, Ctrl-C interrupts Python and not the job,
// and exit() ends it.
func TestSlurmInteractive(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	b := newBatchDir(t, image, sharedCache(t, image))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// TERM=dumb: Python 3.13's own line editor would draw with escapes.
	term := startOnTerminal(t, command(ctx, opts{dir: b.dir, env: append(b.env, "TERM=dumb")}, "bash", "interactive.sh"))
	term.waitFor(">>> ")
	term.say("import os, platform, time; print('inside', platform.python_version(), os.environ['SLURM_JOB_ID'], 6 * 7)\n")
	term.waitFor(" 42\r\n")
	m := regexp.MustCompile(`inside (\S+) (\d+) 42\r\n`).FindStringSubmatch(term.out.String())
	if m == nil {
		t.Fatalf("no answer from inside: %q", term.out.String())
	}
	b.jobs = append(b.jobs, m[2])
	containerPython(t, "Python "+m[1]+" on Debian GNU/Linux 13 (trixie)")
	term.say("time.sleep(60)\n")
	time.Sleep(500 * time.Millisecond)
	term.say("\x03")
	term.waitFor("KeyboardInterrupt")
	term.say("print('still', 'here')\n")
	term.waitFor("still here\r\n")
	term.say("exit()\n")
	if code, err := term.wait(); code != 0 {
		t.Fatalf("interactive.sh: exit %d (%v); terminal %q", code, err, term.out.String())
	}
}

// jobLeftovers lists what of a job is still there: processes of the test
// user's that have the job's SLURM_JOB_ID in their environment, run in its
// directory, or name that or its batch script (other tests' jobs run the same
// hpcrun and the same image at the same time); hpcrun's container state;
// unpacks in the cache's tmp/; mounts that name the job's directories.
func (b *batchDir) jobLeftovers(id string, mountsBefore map[string]bool) []string {
	var left []string
	n, _ := strconv.Atoi(id)
	script := fmt.Sprintf("/job%05d/slurm_script", n)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		args := procArgs(pid) // nil for a zombie
		if args == nil || procUID(pid) != testUID {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		cmdline := strings.Join(args, " ")
		if bytes.Contains(append([]byte{0}, env...), []byte("\x00SLURM_JOB_ID="+id+"\x00")) || cwd == b.dir ||
			strings.Contains(cmdline, b.dir) || strings.Contains(cmdline, script) {
			left = append(left, fmt.Sprintf("process %d %q (exe %s, cwd %s)%s", pid, args, exe, cwd, procDetails(pid)))
		}
	}
	// The state dir is shared with the other tests' jobs: this job's
	// containers are named slurm-ID.*.
	des, _ := os.ReadDir(b.state)
	for _, de := range des {
		if strings.HasPrefix(de.Name(), "slurm-"+id+".") {
			left = append(left, filepath.Join(b.state, de.Name()))
		}
	}
	if b.cache != "" {
		des, _ := os.ReadDir(filepath.Join(b.cache, "tmp"))
		for _, de := range des {
			left = append(left, filepath.Join(b.cache, "tmp", de.Name()))
		}
	}
	for m := range mountInfo() {
		if !mountsBefore[m] && (strings.Contains(m, b.dir) || b.cache != "" && strings.Contains(m, b.cache)) {
			left = append(left, "mount "+m)
		}
	}
	return left
}

// procDetails says what a process is doing, for a failure message: its
// state, parent, where it waits, its signals and its freezer cgroup.
func procDetails(pid int) string {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	var d []string
	status, _ := os.ReadFile(filepath.Join(dir, "status"))
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"State:", "PPid:", "SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:", "SigCgt:"} {
			if strings.HasPrefix(l, k) {
				d = append(d, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	if w, err := os.ReadFile(filepath.Join(dir, "wchan")); err == nil {
		d = append(d, "wchan: "+string(w))
	}
	cg, _ := os.ReadFile(filepath.Join(dir, "cgroup"))
	for _, l := range lines(string(cg)) {
		if strings.Contains(l, ":freezer:") {
			d = append(d, l)
		}
	}
	return "\n\t" + strings.Join(d, "; ")
}

// procUID is the real uid of pid, -1 if it is gone.
func procUID(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return -1
}

// mountInfo is the set of lines of /proc/self/mountinfo, less their mount
// ids.
func mountInfo() map[string]bool {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	set := map[string]bool{}
	for _, l := range lines(string(data)) {
		if f := strings.SplitN(l, " ", 3); len(f) == 3 {
			set[f[2]] = true
		}
	}
	return set
}

// assertNothingLeft waits up to 10 s for the job to leave nothing behind.
func (b *batchDir) assertNothingLeft(id string, mountsBefore map[string]bool) {
	b.t.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if left = b.jobLeftovers(id, mountsBefore); len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.t.Errorf("job %s left behind, 10 s after it ended:\n%s", id, strings.Join(left, "\n"))
			return
		}
	}
}

// checkpointed checks that job.py's TERM handler ran in the container: it
// left a checkpoint in a directory of the test's, and, with `exec hpcrun`,
// said so in the job's output. Under srun the handler's last lines may be
// lost: srun stops relaying the step's output when the step is cancelled.
func checkpointed(t *testing.T, how, out, checkpoint string) {
	t.Helper()
	data, err := os.ReadFile(checkpoint)
	said := strings.Contains(out, "SIGTERM: checkpoint at step") && strings.Contains(out, "exiting cleanly")
	if err != nil || !bytes.Contains(data, []byte("signal=SIGTERM")) || how == "exec" && !said {
		t.Errorf("%s hpcrun: the job's TERM handler did not run: checkpoint %q (%v); output:\n%s", how, data, err, out)
	}
}

// signalScripts are the two ways a batch script lets Slurm's signals reach
// the job: signals.sbatch's `exec hpcrun ...`, and the same job as an
// `srun hpcrun ...` line (writeSrunSignals).
var signalScripts = []struct{ how, script string }{{"exec", "signals.sbatch"}, {"srun", "signals-srun.sbatch"}}

// writeSrunSignals writes signals-srun.sbatch: signals.sbatch with `srun
// hpcrun`, which takes the warning before the time limit with
// --signal=USR1@60 (B: would signal only the batch shell).
func (b *batchDir) writeSrunSignals() {
	b.t.Helper()
	data, err := os.ReadFile(filepath.Join(b.dir, "signals.sbatch"))
	if err != nil {
		b.t.Fatal(err)
	}
	s := string(data)
	if !strings.Contains(s, "\nexec hpcrun ") || !strings.Contains(s, "--signal=B:USR1@60") {
		b.t.Fatalf("signals.sbatch has no `exec hpcrun` line or no --signal=B:USR1@60:\n%s", s)
	}
	s = strings.Replace(s, "\nexec hpcrun ", "\nsrun hpcrun ", 1)
	s = strings.Replace(s, "--signal=B:USR1@60", "--signal=USR1@60", 1)
	if err := os.WriteFile(filepath.Join(b.dir, "signals-srun.sbatch"), []byte(s), 0o755); err != nil {
		b.t.Fatal(err)
	}
}

// scancel of a running job (an hour of work), started with `exec hpcrun`
// and with `srun hpcrun`: the job's TERM handler runs inside the container,
// the job ends CANCELLED, and nothing of it is left: no process, no
// container state, no mount.
func TestSlurmScancel(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	for _, sc := range signalScripts {
		how, script := sc.how, sc.script
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			b := newBatchDir(t, image, "")
			b.writeSrunSignals()
			checkpoint := filepath.Join(tempDirOwned(t), "checkpoint")
			mounts := mountInfo()
			id := b.sbatch([]string{"CHECKPOINT=" + checkpoint}, script)
			b.waitOutput(id, "Python ", 2*time.Minute) // job.py's handlers are set before it prints
			// While the job runs, the scan for leftovers finds all of it.
			running := strings.Join(b.jobLeftovers(id, mounts), "\n")
			wants := []string{`"hpcrun" "--image"`, `["hpcrun-init"]`, `"python3" "job.py" "3600"`, b.state + "/slurm-" + id + "."}
			if how == "srun" { // exec makes hpcrun the batch script's process
				wants = append(wants, "slurm_script")
			}
			for _, want := range wants {
				if !strings.Contains(running, want) {
					t.Errorf("the scan of the running job found no %s:\n%s", want, running)
				}
			}
			if r := runRaw(opts{}, "scancel", id); r.code != 0 {
				t.Fatalf("scancel: %s", r)
			}
			start := time.Now()
			rec := b.waitJob(id, 1, time.Minute)[0]
			t.Logf("job %s (%s hpcrun) ended %s %v after scancel", id, how, rec["JobState"], time.Since(start).Round(10*time.Millisecond))
			if rec["JobState"] != "CANCELLED" {
				t.Errorf("job %s: state %s, want CANCELLED", id, rec["JobState"])
			}
			b.assertNothingLeft(id, mounts)
			checkpointed(t, how, b.output(id), checkpoint)
		})
	}
}

// The time limit of signals.sbatch, cut to a minute, with `exec hpcrun`
// and with `srun hpcrun`: the USR1 warning 60 s ahead reaches the program
// in the container at once (less than 60 s are left from the start), then
// the TERM at the limit, and the job ends TIMEOUT. slurmctld checks limits
// every 30 s or so: this takes 60 to 100 s, so both jobs are submitted, and
// watched, before the test waits for its turn among the parallel tests (go
// test runs GOMAXPROCS of them at once).
func TestSlurmTimeLimit(t *testing.T) {
	slurmUp(t)
	image := pythonImage(t)
	const started, warned, termed = "Python ", "SIGUSR1: checkpoint", "SIGTERM: checkpoint"
	type job struct {
		how, id, checkpoint string
		b                   *batchDir
		mounts              map[string]bool
		watch               <-chan jobWatch
	}
	var submitted []job
	for _, sc := range signalScripts {
		j := job{how: sc.how, b: newBatchDir(t, image, ""), checkpoint: filepath.Join(tempDirOwned(t), "checkpoint"), mounts: mountInfo()}
		j.b.writeSrunSignals()
		j.id = j.b.sbatch([]string{"CHECKPOINT=" + j.checkpoint}, "--time=1", sc.script)
		j.watch = j.b.watchJob(j.id, 1, 4*time.Minute, started, warned, termed)
		submitted = append(submitted, j)
	}
	t.Parallel()
	for _, j := range submitted {
		w := <-j.watch
		if w.err != nil {
			t.Errorf("%s hpcrun: %v", j.how, w.err)
			continue
		}
		rec := w.records[0]
		t.Logf("job %s (%s hpcrun), from its submission: job.py started %v, got USR1 %v and TERM %v; ended %s, RunTime %s",
			j.id, j.how, w.seen[started].Round(time.Second), w.seen[warned].Round(time.Second), w.seen[termed].Round(time.Second),
			rec["JobState"], rec["RunTime"])
		if rec["JobState"] != "TIMEOUT" {
			t.Errorf("job %s (%s hpcrun): state %s, want TIMEOUT", j.id, j.how, rec["JobState"])
		}
		out := j.b.output(j.id)
		if !strings.Contains(out, "DUE TO TIME LIMIT") {
			t.Errorf("%s hpcrun: slurmstepd did not say the job hit its time limit:\n%s", j.how, out)
		}
		// The checkpoint file holds the TERM's, written after the USR1's.
		checkpointed(t, j.how, out, j.checkpoint)
		// Slurm sends the warning at a check of slurmctld's before the
		// limit; when its first check after the start falls at the limit
		// itself, it sends the TERM alone, and no warning is due.
		switch u, term := strings.Index(out, warned), strings.Index(out, termed); {
		case u < 0 && rec["RunTime"] == "00:01:00":
			t.Logf("%s hpcrun: no USR1 warning: slurmctld checked the job first at its limit", j.how)
		case u < 0 && strings.Contains(out, "hpcrun: warning: SIGUSR1 came before the job had started"):
			// A check of slurmctld's just after the start: the warning
			// came while the container was starting, and was dropped.
			t.Logf("%s hpcrun: the USR1 warning came before the job had started", j.how)
		case u < 0 || j.how == "exec" && term < u:
			t.Errorf("%s hpcrun: want the USR1 warning, then the TERM:\n%s", j.how, out)
		}
		j.b.assertNothingLeft(j.id, j.mounts)
	}
}

// A plain `hpcrun ...` line of a batch script, which scancel and the time
// limit SIGKILL without a TERM, prints one warning line in the job's output
// that says to write srun or exec; -q silences it, and so does the site's
// batch_line_warning: false. `srun hpcrun` and `exec hpcrun` lines get no
// warning.
func TestSlurmBatchLineWarning(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := pythonImage(t)
	b := newBatchDir(t, image, "")
	site := filepath.Join(b.dir, "site.yaml")
	if err := os.WriteFile(site, []byte("batch_line_warning: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const line = `hpcrun --image "$IMAGE" python3 job.py`
	cases := []struct {
		name, line string
		env        []string
		warn       bool
	}{
		{"plain", line, nil, true},
		{"quiet", `hpcrun -q --image "$IMAGE" python3 job.py`, nil, false},
		{"siteoff", line, []string{"HPCRUN_CONFIG=" + site}, false},
		{"srun", "srun " + line, nil, false},
		{"exec", "exec " + line, nil, false},
	}
	ids := map[string]string{}
	for _, c := range cases {
		script := "warn-" + c.name + ".sbatch"
		body := "#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH --time=00:05:00\n#SBATCH --output=warn-" + c.name + "-%j.out\n" + c.line + "\n"
		if err := os.WriteFile(filepath.Join(b.dir, script), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		ids[c.name] = b.sbatch(c.env, script)
	}
	const warning = "hpcrun: warning: this is a plain hpcrun line of a Slurm batch script: scancel and the time limit will SIGKILL"
	for _, c := range cases {
		id := ids[c.name]
		rec := b.waitJob(id, 1, 2*time.Minute)[0]
		out := b.output(id)
		if rec["JobState"] != "COMPLETED" || rec["ExitCode"] != "0:0" {
			t.Errorf("%s: job %s: state %s, exit code %s, want COMPLETED 0:0:\n%s", c.name, id, rec["JobState"], rec["ExitCode"], out)
			continue
		}
		containerPython(t, out)
		n := strings.Count(out, warning)
		switch {
		case c.warn && n != 1:
			t.Errorf("%s (%s): %d warnings, want one line:\n%s", c.name, c.line, n, out)
		case c.warn && !strings.Contains(out, "write `srun hpcrun ...`, or `exec hpcrun ...`"):
			t.Errorf("%s: the warning does not say what to write:\n%s", c.name, out)
		case !c.warn && strings.Contains(out, "plain hpcrun line"):
			t.Errorf("%s (%s): warned, want no warning:\n%s", c.name, c.line, out)
		}
	}
}

// single.pbs, run by bash as PBS Pro runs a job script: in $HOME, with PBS's
// variables and a per-job TMPDIR. job.py runs in the container, where
// PBS_JOBID is seen although the script asks for --cleanenv.
func TestPBSSingleJob(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := pythonImage(t)
	work, spool := tempDirOwned(t), tempDirOwned(t)
	for _, name := range []string{"single.pbs", "job.py"} {
		data, err := os.ReadFile(repoPath("examples/slurm/" + name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if name == "single.pbs" { // PBS runs a copy in its spool
			if err := os.WriteFile(filepath.Join(spool, "1234.server.SC"), data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	nodefile := filepath.Join(spool, "1234.server")
	if err := os.WriteFile(nodefile, []byte("node001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	jobTmp := tempDirOwnedIn(t, "/var/tmp") // PBS Pro's /var/tmp/pbs.JOBID
	env := []string{
		"PATH=" + filepath.Dir(binPath) + ":/usr/bin:/bin",
		"LOGNAME=" + testUser, "SHELL=/bin/bash",
		"PBS_JOBID=1234.server", "PBS_JOBNAME=hpcrun-single", "PBS_QUEUE=workq",
		"PBS_ENVIRONMENT=PBS_BATCH", "PBS_O_WORKDIR=" + work, "PBS_O_HOST=login1", "PBS_O_HOME=" + homeDir,
		"PBS_O_LOGNAME=" + testUser, "PBS_O_PATH=/usr/bin:/bin", "PBS_O_SHELL=/bin/bash", "PBS_O_QUEUE=workq",
		"PBS_O_SYSTEM=Linux", "PBS_NODEFILE=" + nodefile, "PBS_NODENUM=0", "PBS_TASKNUM=1",
		"PBS_MOMPORT=15003", "PBS_JOBDIR=" + homeDir, "NCPUS=1", "OMP_NUM_THREADS=1",
		"TMPDIR=" + jobTmp, "ENVIRONMENT=BATCH",
		"IMAGE=" + image, "HPCRUN_CACHE=" + sharedCache(t, image),
	}
	r := runRaw(opts{dir: homeDir, env: env, timeout: 2 * time.Minute}, "bash", filepath.Join(spool, "1234.server.SC"))
	if r.err != nil || r.code != 0 {
		t.Fatalf("single.pbs: %s", r)
	}
	containerPython(t, r.stdout)
	if !strings.Contains(r.stdout, "PBS_JOBID=1234.server") {
		t.Errorf("no PBS_JOBID from inside the container:\n%s", r)
	}
}
