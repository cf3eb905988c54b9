package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitStatus(t *testing.T) {
	t.Parallel()
	needUserns(t)
	cases := []struct {
		name string
		cmd  []string
		want int
	}{
		{"true", []string{"true"}, 0},
		{"false", []string{"false"}, 1},
		{"exit 7", []string{"sh", "-c", "exit 7"}, 7},
		{"exit 200", []string{"sh", "-c", "exit 200"}, 200},
		{"not found", []string{"no-such-command-e2e"}, 127},
		{"not found by path", []string{"/no/such/command"}, 127},
		{"not executable", []string{"/etc/passwd"}, 126},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -9 $$"}, 137},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 143},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, opts{}, append([]string{"--rootfs", rootfsDir}, tc.cmd...)...)
			if r.code != tc.want {
				t.Errorf("want exit %d, got %s", tc.want, r)
			}
		})
	}
}

// startJob starts hpcrun with args and waits for the job to print "ready".
// It returns the hpcrun process, the stdout lines after "ready" and a wait
// func that reaps hpcrun and collects the rest of the output.
func startJob(t *testing.T, args ...string) (proc *os.Process, out <-chan string, wait func() result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	cmd := command(ctx, opts{}, binPath, args...)
	// An os.Pipe rather than StdoutPipe: a process that survives hpcrun (the
	// bug TestSIGKILLKillsJob looks for) must not block the test on EOF.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		t.Fatal(err)
	}
	ch := readLines(pr)
	var collected []string
	done := false
	wait = func() result {
		if done {
			t.Fatal("wait called twice")
		}
		done = true
		err := cmd.Wait()
		timedOut := ctx.Err() != nil
		cancel()
		drain := time.After(3 * time.Second)
	collect:
		for {
			select {
			case l, ok := <-ch:
				if !ok {
					break collect
				}
				collected = append(collected, l)
			case <-drain:
				collected = append(collected, "<e2e: stdout still open 3s after hpcrun exited>")
				break collect
			}
		}
		pr.Close()
		r := result{args: append([]string{binPath}, args...), stdout: strings.Join(collected, "\n"), stderr: stderr.String(), code: exitCode(cmd.ProcessState)}
		if timedOut {
			r.err = fmt.Errorf("timed out after %v", defaultCmdTimeout)
		} else if err != nil && r.code < 0 {
			r.err = err
		}
		return r
	}
	t.Cleanup(func() {
		if !done {
			cmd.Process.Kill()
			wait()
		}
	})
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("job ended before printing ready: %s", wait())
			}
			if l == "ready" {
				return cmd.Process, ch, wait
			}
			collected = append(collected, l)
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("job did not print ready within 10s: %s", wait())
		}
	}
}

// TestSignalForwarding sends signals to the host hpcrun process and expects
// the job's traps to see them.
func TestSignalForwarding(t *testing.T) {
	t.Parallel()
	needUserns(t)
	cases := []struct {
		sig      syscall.Signal
		name     string // trap name
		fatal    bool   // the trap exits 3; otherwise the job continues and exits 4
		wantCode int
	}{
		{syscall.SIGTERM, "TERM", true, 3},
		{syscall.SIGINT, "INT", true, 3},
		{syscall.SIGHUP, "HUP", true, 3},
		{syscall.SIGQUIT, "QUIT", true, 3},
		{syscall.SIGUSR1, "USR1", false, 4},
		{syscall.SIGUSR2, "USR2", false, 4},
		{syscall.SIGCONT, "CONT", false, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			trap := `trap "echo got-` + tc.name + `; n=1" ` + tc.name
			if tc.fatal {
				trap = `trap "echo got-` + tc.name + `; exit 3" ` + tc.name
			}
			script := trap + `; n=0; echo ready; i=0; while [ $n = 0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; echo after; exit 4`
			proc, _, wait := startJob(t, "--rootfs", rootfsDir, "sh", "-c", script)
			if err := proc.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			r := wait()
			want := []string{"got-" + tc.name}
			if !tc.fatal {
				want = append(want, "after")
			}
			if got := lines(r.stdout); strings.Join(got, ",") != strings.Join(want, ",") || r.code != tc.wantCode {
				t.Errorf("SIG%s to hpcrun: want output %q and exit %d, got %s", tc.name, want, tc.wantCode, r)
			}
		})
	}
	t.Run("untrapped TERM gives 143", func(t *testing.T) {
		t.Parallel()
		proc, _, wait := startJob(t, "--rootfs", rootfsDir, "sh", "-c", `echo ready; exec sleep 8`)
		proc.Signal(syscall.SIGTERM)
		if r := wait(); r.code != 143 {
			t.Errorf("want exit 143 (128+SIGTERM), got %s", r)
		}
	})
}

// procArgs returns the NUL-separated argv of pid, nil if gone or a zombie.
func procArgs(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// findProcs lists host pids whose argv matches want (argv[0] by basename).
func findProcs(want ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		args := procArgs(pid)
		if len(args) != len(want) || filepath.Base(args[0]) != want[0] {
			continue
		}
		if strings.Join(args[1:], "\x00") == strings.Join(want[1:], "\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func parentPID(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// alive reports whether pid still runs with the given argv (not a zombie).
func alive(pid int, args []string) bool {
	got := procArgs(pid)
	return got != nil && strings.Join(got, "\x00") == strings.Join(args, "\x00")
}

// TestSIGKILLKillsJob: SIGKILL of the outer hpcrun must take the container
// with it: the init, the job, and what the job left running in the
// background, in its own session, or deaf to TERM and HUP. Nothing of the
// container's pid namespace is left.
func TestSIGKILLKillsJob(t *testing.T) {
	t.Parallel()
	needUserns(t)
	// Sleeps of lengths no other test (or other run of this one) uses.
	n := 100000 + os.Getpid()%100000*10
	sleeps := make([][]string, 5)
	for i := range sleeps {
		sleeps[i] = []string{"sleep", strconv.Itoa(n + i)}
		if old := findProcs(sleeps[i]...); len(old) > 0 {
			t.Fatalf("a %q already runs on the host (pids %v); cannot tell ours apart", sleeps[i], old)
		}
	}
	script := fmt.Sprintf(`sleep %d & (sleep %d &); setsid sleep %d & (trap "" TERM HUP; exec sleep %d) & echo ready; exec sleep %d`,
		n+1, n+2, n+3, n+4, n)
	proc, _, wait := startJob(t, "--rootfs", rootfsDir, "sh", "-c", script)
	type proc1 struct {
		pid  int
		args []string
	}
	var all []proc1
	for _, s := range sleeps {
		var pids []int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if pids = findProcs(s...); len(pids) > 0 {
				break
			}
		}
		if len(pids) != 1 {
			t.Fatalf("want exactly one %q on the host while the job runs, found %v", s, pids)
		}
		all = append(all, proc1{pids[0], procArgs(pids[0])})
	}
	job := all[0].pid
	init := parentPID(job)
	all = append(all, proc1{init, procArgs(init)})
	pidNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", job))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("job host pid %d, its parent (container init) %d %q, hpcrun %d, pid namespace %s", job, init, all[len(all)-1].args, proc.Pid, pidNS)
	t.Cleanup(func() { // only what is still ours: a pid may have been reused
		for _, p := range all {
			if p.pid > 1 && p.pid != proc.Pid && alive(p.pid, p.args) {
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})

	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	wait()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		left = nil
		for _, p := range all {
			if p.pid > 1 && p.pid != proc.Pid && alive(p.pid, p.args) {
				left = append(left, fmt.Sprintf("%d %q", p.pid, p.args))
			}
		}
		left = append(left, inPidNS(pidNS)...)
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("5s after SIGKILL of hpcrun (pid %d), still running on the host: %v", proc.Pid, left)
}

// inPidNS lists the live processes in the pid namespace ns (a
// /proc/PID/ns/pid link).
func inPidNS(ns string) []string {
	var in []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns/pid")); l == ns {
			if st, _, ok := procStat(pid); ok && st != "Z" {
				in = append(in, fmt.Sprintf("%d %q in %s", pid, procArgs(pid), ns))
			}
		}
	}
	return in
}

// TestOrphanReaped: a grandchild orphaned by the job is re-parented to the
// container's init, which must reap it when it exits.
func TestOrphanReaped(t *testing.T) {
	t.Parallel()
	needUserns(t)
	r := mustRun(t, opts{}, "--rootfs", rootfsDir, "sh", "-c",
		`echo "sh=$$"; (sleep 0.3 &); ps -o pid,ppid,stat,comm; sleep 1.2; echo ---; ps -o pid,ppid,stat,comm`)
	before, after, ok := strings.Cut(r.stdout, "---\n")
	if !ok {
		t.Fatalf("unexpected output: %s", r)
	}
	type row struct{ pid, ppid, stat, comm string }
	parse := func(s string) []row {
		var rows []row
		for _, l := range lines(s) {
			f := strings.Fields(l)
			if len(f) >= 4 && f[0] != "PID" {
				rows = append(rows, row{f[0], f[1], f[2], f[3]})
			}
		}
		return rows
	}
	// The orphan is the one process that is neither init, the job nor ps.
	// It may not have exec'd sleep yet, so it is told apart by pid, not name.
	sh := strings.TrimPrefix(lines(before)[0], "sh=")
	var orphan row
	for _, rw := range parse(before) {
		if rw.pid != "1" && rw.pid != sh && rw.comm != "ps" {
			if orphan.pid != "" {
				t.Fatalf("more than one candidate orphan in ps\n%s", r)
			}
			orphan = rw
		}
	}
	if orphan.pid == "" {
		t.Fatalf("the orphan 'sleep 0.3' did not show in ps; cannot test reaping\n%s", r)
	}
	t.Logf("orphan: %+v", orphan)
	if orphan.ppid != "1" {
		t.Errorf("orphan's parent is %s, want 1 (the container init)", orphan.ppid)
	}
	for _, rw := range parse(after) {
		if strings.HasPrefix(rw.stat, "Z") || rw.pid == orphan.pid {
			t.Errorf("after the orphan exited, ps still shows %+v (zombie not reaped)\n%s", rw, r)
		}
	}
}

// A signal that comes while hpcrun is still setting up (here: reading an
// --env-file from a pipe that never delivers) ends hpcrun by that signal
// at once, and the already-cloned container init with it.
func TestSignalBeforeJobStarts(t *testing.T) {
	t.Parallel()
	needUserns(t)
	fifo := filepath.Join(tempDirOwned(t), "env")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(fifo, testUID, testGID)
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	cmd := command(ctx, opts{}, binPath, "--rootfs", rootfsDir, "--env-file", fifo, "true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the init is cloned and hpcrun blocks on the pipe.
	var init int
	var initArgs []string
	for deadline := time.Now().Add(5 * time.Second); init == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil && parentPID(pid) == cmd.Process.Pid {
				init, initArgs = pid, procArgs(pid)
			}
		}
	}
	if init == 0 {
		t.Fatal("no container init was cloned while hpcrun set up")
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("hpcrun did not die of SIGTERM: %v", cmd.ProcessState)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hpcrun took %v to end after SIGTERM", d)
	}
	for deadline := time.Now().Add(3 * time.Second); alive(init, initArgs) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(init, initArgs) {
		t.Errorf("the container init %d outlived hpcrun", init)
	}
}
