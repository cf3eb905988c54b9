package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// lifecycleBundle makes a bundle of the busybox rootfs whose process runs
// script, and a state root, both the test user's.
func lifecycleBundle(t *testing.T, script string) (bundle, root string) {
	t.Helper()
	bundle, root = makeBundle(t)
	r := mustRun(t, opts{}, "spec", "--rootfs", filepath.Join(bundle, "rootfs"), "--", "sh", "-c", script)
	writeConfig(t, bundle, []byte(r.stdout))
	return bundle, root
}

// lc runs a life-cycle verb with --root root. Its stdout and stderr go to
// files, not pipes: a created container keeps create's stdio open.
func lc(t *testing.T, root string, args ...string) result {
	t.Helper()
	return run(t, opts{files: true}, append([]string{"--root", root}, args...)...)
}

func mustLC(t *testing.T, root string, args ...string) result {
	t.Helper()
	r := lc(t, root, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// failsLC checks that a verb fails in one line that says want, with 125.
func failsLC(t *testing.T, root, want string, args ...string) {
	t.Helper()
	r := lc(t, root, args...)
	if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("want exit 125 and one line with %q: %s", want, r)
	}
}

func ociStatus(t *testing.T, root, id string) (string, int) {
	t.Helper()
	var s struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	r := mustLC(t, root, "state", id)
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("state: %v: %s", err, r)
	}
	return s.Status, s.Pid
}

func waitStatus(t *testing.T, root, id, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, _ := ociStatus(t, root, id); st == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("container %s is %s, want %s", id, st, want)
		}
	}
}

// The whole life cycle of one container, and every refusal on the way.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := lifecycleBundle(t, `echo job-started; trap 'echo got-term; exit 3' TERM; while :; do sleep 0.05; done`)
	pidFile := filepath.Join(tempDirOwned(t), "pid")
	id := "life-1"
	t.Cleanup(func() { lc(t, root, "delete", "--force", id) })

	mustLC(t, root, "create", "--bundle", bundle, "--pid-file", pidFile, id)
	st, pid := ociStatus(t, root, id)
	b, _ := os.ReadFile(pidFile)
	if st != "created" || pid <= 0 || string(b) != strconv.Itoa(pid) {
		t.Fatalf("after create: status %q pid %d, pid file %q (want the bare pid)", st, pid, b)
	}
	failsLC(t, root, "exists", "create", "--bundle", bundle, id)
	failsLC(t, root, "is created; stop it first", "delete", id)
	if r := mustLC(t, root, "list", "-q"); strings.TrimSpace(r.stdout) != id {
		t.Errorf("list -q: %q", r.stdout)
	}
	var listed []map[string]any
	if r := mustLC(t, root, "list", "--format", "json"); json.Unmarshal([]byte(r.stdout), &listed) != nil || len(listed) != 1 || listed[0]["status"] != "created" {
		t.Errorf("list --format json: %s", r.stdout)
	}

	mustLC(t, root, "start", id)
	waitStatus(t, root, id, "running")
	failsLC(t, root, "only a created container can be started", "start", id)

	// exec: the same pid namespace (its /proc/1 is the container's init),
	// the exit status, and a missing command.
	r := mustLC(t, root, "exec", id, "sh", "-c", "cat /proc/1/cmdline; echo; echo $$")
	if lines := strings.Fields(r.stdout); len(lines) != 2 || !strings.Contains(lines[0], "hpcrun-init") {
		t.Errorf("exec sees another pid namespace: %q", r.stdout)
	}
	if r := lc(t, root, "exec", "--env", "X=from-exec", id, "sh", "-c", "echo $X; exit 7"); r.code != 7 || r.stdout != "from-exec\n" {
		t.Errorf("exec status and env: %s", r)
	}
	if r := lc(t, root, "exec", id, "no-such-command"); r.code != 127 {
		t.Errorf("exec of a missing command: %s", r)
	}

	failsLC(t, root, "running; stop it first", "delete", id)
	mustLC(t, root, "kill", id, "SIGTERM")
	waitStatus(t, root, id, "stopped")
	if _, pid := ociStatus(t, root, id); pid != 0 {
		t.Errorf("a stopped container reports pid %d", pid)
	}
	failsLC(t, root, "nothing to signal", "kill", id, "KILL")
	failsLC(t, root, "only a created container can be started", "start", id)
	failsLC(t, root, "exec needs a running container", "exec", id, "true")
	mustLC(t, root, "delete", id)
	if _, err := os.Stat(filepath.Join(root, id)); err == nil {
		t.Error("delete left the state directory")
	}
	for _, verb := range [][]string{{"state", id}, {"start", id}, {"kill", id}, {"delete", id}, {"exec", id, "true"}} {
		failsLC(t, root, "no such container", verb...)
	}
	failsLC(t, root, "invalid container ID", "create", "--bundle", bundle, "../escape")
	failsLC(t, root, "config.json", "create", "--bundle", tempDirOwned(t), "nobundle")
	failsLC(t, root, "unknown signal", "kill", "x", "SIGNOPE")
}

// run in the foreground: the process's status, signals passed on, and no
// state left; run -d, then delete --force of a running container.
func TestLifecycleRun(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := lifecycleBundle(t, `echo ran; exit 5`)
	if r := lc(t, root, "run", "--bundle", bundle, "fg"); r.code != 5 || r.stdout != "ran\n" {
		t.Errorf("run: want the job's exit 5 and its output: %s", r)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("run left state: %v", ents)
	}

	bundle, root = lifecycleBundle(t, `sleep 1000`)
	mustLC(t, root, "run", "-d", "--bundle", bundle, "bg")
	waitStatus(t, root, "bg", "running")
	_, pid := ociStatus(t, root, "bg")
	mustLC(t, root, "delete", "--force", "bg")
	// The init may linger as a zombie where nothing reaps orphans.
	if alive(pid, []string{"hpcrun-init"}) {
		t.Errorf("delete --force left the init %d running", pid)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("delete --force left state: %v", ents)
	}
}

// A process whose command cannot be executed ends create and run with
// 126, or 127 when it is missing, as a run's job does: create checks it,
// as runc does, and leaves no container.
func TestLifecycleExecStatuses(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, tc := range []struct {
		cmd  string
		want int
	}{{"/etc/passwd", 126}, {"/no/such/command", 127}} {
		bundle, root := makeBundle(t)
		r := mustRun(t, opts{}, "spec", "--rootfs", filepath.Join(bundle, "rootfs"), "--", tc.cmd)
		writeConfig(t, bundle, []byte(r.stdout))
		if r := lc(t, root, "run", "--bundle", bundle, "r"); r.code != tc.want {
			t.Errorf("run of %s: want exit %d: %s", tc.cmd, tc.want, r)
		}
		if r := lc(t, root, "create", "--bundle", bundle, "c"); r.code != tc.want || !strings.Contains(r.stderr, tc.cmd) {
			t.Errorf("create of %s: want exit %d and its name: %s", tc.cmd, tc.want, r)
		}
		if r := mustLC(t, root, "list", "-q"); r.stdout != "" {
			t.Errorf("a failed create left %q", r.stdout)
		}
	}
}

// exec --cwd of a directory the container lacks fails as a run's --pwd
// does: one line that names it, exit 125, whatever the command; a missing
// command in a good directory is still 127.
func TestExecCwdMissing(t *testing.T) {
	t.Parallel()
	needUserns(t)
	root := filepath.Join(tempDirOwned(t), "state")
	img := busyboxImage(t)
	mustRun(t, opts{}, "--root", root, "--image", img, "--name", "svc", "--detach", "sleep", "1000")
	t.Cleanup(func() { lc(t, root, "delete", "--force", "svc") })
	waitStatus(t, root, "svc", "running")
	for _, cwd := range []string{"/missing", "/etc/passwd"} {
		for _, cmd := range []string{"true", "/no/such/command", "no-such-command"} {
			r := lc(t, root, "exec", "--cwd", cwd, "svc", cmd)
			if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "working directory "+cwd) {
				t.Errorf("exec --cwd %s svc %s: want exit 125 and one line that names the directory: %s", cwd, cmd, r)
			}
		}
	}
	if r := lc(t, root, "exec", "--cwd", "/bin", "svc", "/no/such/command"); r.code != 127 {
		t.Errorf("exec --cwd /bin of a missing command: want 127: %s", r)
	}
	if r := lc(t, root, "exec", "--cwd", "/bin", "svc", "pwd"); r.code != 0 || r.stdout != "/bin\n" {
		t.Errorf("exec --cwd /bin: %s", r)
	}
}

// exec -t gives the process a terminal of its own, relayed to the
// caller's; a bundle that asks for a terminal gets one whose master goes
// to --console-socket.
func TestLifecycleTerminals(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := lifecycleBundle(t, `sleep 1000`)
	t.Cleanup(func() { lc(t, root, "delete", "--force", "tty") })
	mustLC(t, root, "run", "-d", "--bundle", bundle, "tty")
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	term := startOnTerminal(t, command(ctx, opts{}, binPath, "--root", root, "exec", "-t", "tty", "sh", "-c", "tty; echo exec-done"))
	term.waitFor("exec-done")
	if code, err := term.wait(); code != 0 || !strings.Contains(term.out.String(), "/dev/pts/") {
		t.Errorf("exec -t: exit %d (%v), terminal %q", code, err, term.out.String())
	}
	mustLC(t, root, "delete", "--force", "tty")

	// process.terminal: the master arrives on the console socket.
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(b, &spec)
	spec["process"].(map[string]any)["terminal"] = true
	spec["process"].(map[string]any)["args"] = []string{"sh", "-c", "tty; echo console-ok; sleep 1000"}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	failsLC(t, root, "--console-socket", "create", "--bundle", bundle, "con")
	sock := filepath.Join(tempDirOwned(t), "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(sock, 0o777)
	masters := make(chan *os.File, 1)
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 256), make([]byte, 64)
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if fds, err := syscall.ParseUnixRights(&m); err == nil && len(fds) == 1 {
				masters <- os.NewFile(uintptr(fds[0]), "master")
			}
		}
	}()
	t.Cleanup(func() { lc(t, root, "delete", "--force", "con") })
	mustLC(t, root, "create", "--bundle", bundle, "--console-socket", sock, "con")
	var master *os.File
	select {
	case master = <-masters:
	case <-time.After(5 * time.Second):
		t.Fatal("no terminal master on the console socket")
	}
	defer master.Close()
	mustLC(t, root, "start", "con")
	got := make(chan string, 1)
	go func() {
		var out []byte
		buf := make([]byte, 256)
		for !strings.Contains(string(out), "console-ok") {
			n, err := master.Read(buf)
			if err != nil {
				break
			}
			out = append(out, buf[:n]...)
		}
		got <- string(out)
	}()
	select {
	case out := <-got:
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "console-ok") {
			t.Errorf("the job's terminal showed %q", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing on the console")
	}
}

// ps lists exactly the container's processes; pause stops a busy loop
// and resume lets it go on; events reports figures, then the exit.
func TestLifecycleProcesses(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := lifecycleBundle(t, `while :; do :; done & sleep 1000 & wait`)
	id := "procs"
	t.Cleanup(func() { lc(t, root, "delete", "--force", id) })
	mustLC(t, root, "run", "-d", "--bundle", bundle, id)
	waitStatus(t, root, id, "running")
	_, initPid := ociStatus(t, root, id)

	var pids []int
	for deadline := time.Now().Add(5 * time.Second); len(pids) != 4 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		pids = nil
		json.Unmarshal([]byte(mustLC(t, root, "ps", "--format", "json", id).stdout), &pids)
	}
	want, _ := procs.List(initPid)
	if len(pids) != 4 || len(want) != 4 || pids[0] != initPid {
		t.Fatalf("ps --format json = %v; want the init %d, sh, the loop and sleep (%v)", pids, initPid, want)
	}
	table := mustLC(t, root, "ps", id).stdout
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 5 || !strings.Contains(table, "sleep 1000") || !strings.Contains(lines[0], "PID INSIDE") {
		t.Errorf("ps table:\n%s", table)
	}

	cpu := func() time.Duration {
		ps, _ := procs.List(initPid)
		var sum time.Duration
		for _, p := range ps {
			sum += p.CPU
		}
		return sum
	}
	mustLC(t, root, "pause", id)
	if st, _ := ociStatus(t, root, id); st != "paused" {
		t.Errorf("after pause: %s", st)
	}
	before := cpu()
	time.Sleep(300 * time.Millisecond)
	if after := cpu(); after != before {
		t.Errorf("paused, the container still used CPU: %v then %v", before, after)
	}
	failsLC(t, root, "paused already", "pause", id)
	mustLC(t, root, "resume", id)
	time.Sleep(300 * time.Millisecond)
	if after := cpu(); after <= before {
		t.Errorf("resumed, the busy loop did not run: %v then %v", before, after)
	}
	failsLC(t, root, "not paused", "resume", id)

	var ev struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Data struct {
			Pids struct {
				Current int `json:"current"`
			} `json:"pids"`
			CPU struct {
				Usage struct {
					Total int64 `json:"total"`
				} `json:"usage"`
			} `json:"cpu"`
			Status *int `json:"status"`
		} `json:"data"`
	}
	r := mustLC(t, root, "events", "--stats", id)
	if json.Unmarshal([]byte(r.stdout), &ev) != nil || ev.Type != "stats" || ev.ID != id || ev.Data.Pids.Current != 4 || ev.Data.CPU.Usage.Total <= 0 {
		t.Errorf("events --stats: %s", r.stdout)
	}
	// Streaming: figures, then the exit once the container is killed.
	done := make(chan result, 1)
	go func() { done <- lc(t, root, "events", "--interval", "50ms", id) }()
	time.Sleep(200 * time.Millisecond)
	mustLC(t, root, "kill", id, "KILL")
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("events did not end with the container")
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if json.Unmarshal([]byte(lines[len(lines)-1]), &ev) != nil || ev.Type != "exit" || ev.Data.Status == nil || *ev.Data.Status != 137 || len(lines) < 2 {
		t.Errorf("events: want stats lines, then an exit with status 137: %s", r)
	}
	failsLC(t, root, "ps needs a running container", "ps", id)
}

// Named runs: --name in the foreground (exec finds it), --detach with
// output in a log; state left by a killed run is swept by the next
// hpcrun; under Slurm a detached container ends with what started it.
func TestNamedRuns(t *testing.T) {
	t.Parallel()
	needUserns(t)
	root := filepath.Join(tempDirOwned(t), "state")
	run := func(env []string, args ...string) result {
		return run(t, opts{env: env}, append([]string{"--root", root}, args...)...)
	}
	// Foreground, named: exec reaches it while it runs.
	done := make(chan result, 1)
	go func() {
		done <- run(nil, "--rootfs", rootfsDir, "--name", "fg", "sh", "-c", "echo fg-up; sleep 2; echo fg-done; exit 4")
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(lc(t, root, "state", "fg").stdout, `"running"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the named run never showed as running")
		}
	}
	if r := mustLC(t, root, "exec", "fg", "sh", "-c", "echo exec-in-fg"); r.stdout != "exec-in-fg\n" {
		t.Errorf("exec into a named run: %s", r)
	}
	if r := <-done; r.code != 4 || r.stdout != "fg-up\nfg-done\n" {
		t.Errorf("named run: want its output and exit 4: %s", r)
	}
	// Once it ends, it stays, stopped with its exit status, until delete.
	if st := stateOf(t, root, "fg"); st.Status != "stopped" || st.ExitStatus == nil || *st.ExitStatus != 4 {
		t.Errorf("a named run that ended: want it stopped with exit status 4: %+v", st)
	}
	if r := run(nil, "--rootfs", rootfsDir, "--name", "fg", "true"); r.code != 125 || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "stopped") || !strings.Contains(r.stderr, "hpcrun delete fg") {
		t.Errorf("a run named as a stopped one: want one line that says to delete it, exit 125: %s", r)
	}
	mustLC(t, root, "delete", "fg")
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("delete left state: %v", ents)
	}
	// A named run whose job never started leaves nothing: its error says all.
	if r := run(nil, "--rootfs", rootfsDir, "--name", "nocmd", "/no/such/cmd"); r.code != 127 {
		t.Errorf("a named run of a missing command: %s", r)
	}
	if r := run(nil, "--rootfs", rootfsDir, "--name", "nocwd", "--pwd", "/no/such/dir", "true"); r.code != 125 {
		t.Errorf("a named run in a missing directory: %s", r)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("named runs that never started left state: %v", ents)
	}

	// A process exec'd into a named run is in the run's namespaces, those
	// the init unshares (network, uts, ipc) included.
	go func() {
		done <- run(nil, "--rootfs", rootfsDir, "--name", "netfg", "--net", "none", "sh", "-c", "readlink /proc/self/ns/net; sleep 2")
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(lc(t, root, "state", "netfg").stdout, `"running"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the named run never showed as running")
		}
	}
	inExec := strings.TrimSpace(mustLC(t, root, "exec", "netfg", "readlink", "/proc/self/ns/net").stdout)
	if r := <-done; r.code != 0 || strings.TrimSpace(r.stdout) != inExec || inExec == hostNetNS {
		t.Errorf("exec into a --net none run: network namespace %q, want the job's: %s", inExec, r)
	}
	mustLC(t, root, "delete", "netfg")

	// Detached: returns at once, output in the log, which the message
	// names; once it stops, listed with its status and log until delete.
	r := run(nil, "--rootfs", rootfsDir, "--name", "svc", "--detach", "sh", "-c", "echo svc-up; sleep 1000")
	if r.code != 0 || !strings.Contains(r.stderr, "runs detached") || !strings.Contains(r.stderr, filepath.Join(root, "svc", "log")) {
		t.Fatalf("--detach: %s", r)
	}
	waitStatus(t, root, "svc", "running")
	time.Sleep(100 * time.Millisecond)
	if b, _ := os.ReadFile(filepath.Join(root, "svc", "log")); string(b) != "svc-up\n" {
		t.Errorf("the log holds %q", b)
	}
	if r := run(nil, "--rootfs", rootfsDir, "--name", "svc", "true"); r.code != 125 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("a second container named svc: %s", r)
	}
	mustLC(t, root, "kill", "svc", "KILL")
	waitStatus(t, root, "svc", "stopped")
	if r := mustLC(t, root, "list", "-q"); strings.TrimSpace(r.stdout) != "svc" {
		t.Errorf("a stopped detached run is not listed: %q", r.stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "svc", "log")); string(b) != "svc-up\n" {
		t.Errorf("the log of the stopped svc holds %q", b)
	}
	mustLC(t, root, "delete", "svc")

	// The job of a detached run that ends by itself: the next list keeps
	// its log and exit status, which state shows.
	r = run(nil, "--rootfs", rootfsDir, "--name", "crash", "--detach", "sh", "-c", "echo important; exit 3")
	if r.code != 0 {
		t.Fatalf("--detach: %s", r)
	}
	waitStatus(t, root, "crash", "stopped")
	if r := mustLC(t, root, "list"); !strings.Contains(r.stdout, "crash") {
		t.Errorf("list: want the stopped crash: %s", r)
	}
	log := filepath.Join(root, "crash", "log")
	if st := stateOf(t, root, "crash"); st.ExitStatus == nil || *st.ExitStatus != 3 || st.Log != log {
		t.Errorf("state crash: want exit status 3 and the log %s: %+v", log, st)
	}
	if b, _ := os.ReadFile(log); string(b) != "important\n" {
		t.Errorf("the log of crash holds %q", b)
	}
	mustLC(t, root, "delete", "crash")
	if _, err := os.Lstat(filepath.Join(root, "crash")); err == nil {
		t.Error("delete left crash's state")
	}

	// Under Slurm: a detached service ends when the script that started
	// it does.
	r = runRaw(opts{env: []string{"SLURM_JOB_ID=42"}}, "/bin/sh", "-c",
		binPath+" --root "+root+" --rootfs "+rootfsDir+" --name job-svc --detach sleep 1000 && "+
			binPath+" --root "+root+" state job-svc && sleep 0.5")
	if r.code != 0 || !strings.Contains(r.stdout, `"running"`) {
		t.Fatalf("the job script: want the service running while it runs: %s", r)
	}
	waitStatus(t, root, "job-svc", "stopped")
	mustLC(t, root, "delete", "job-svc")
}

// ociState is what hpcrun state prints.
type ociState struct {
	Status     string `json:"status"`
	Pid        int    `json:"pid"`
	ExitStatus *int   `json:"exitStatus"`
	Log        string `json:"log"`
}

func stateOf(t *testing.T, root, id string) ociState {
	t.Helper()
	var s ociState
	r := mustLC(t, root, "state", id)
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("state: %v: %s", err, r)
	}
	return s
}

// Under Slurm a plain run is named after its job, step and task, so that
// `hpcrun exec slurm-J.S.T` reaches it; a second run in the same task
// goes unnamed rather than failing.
func TestSlurmRunName(t *testing.T) {
	t.Parallel()
	needUserns(t)
	root := filepath.Join(tempDirOwned(t), "state")
	env := []string{"SLURM_JOB_ID=77", "SLURM_STEP_ID=0", "SLURM_PROCID=1"}
	done := make(chan result, 2)
	for range 2 {
		go func() {
			done <- run(t, opts{env: env}, "--root", root, "--rootfs", rootfsDir, "sh", "-c", "sleep 1.5; echo job-done")
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(lc(t, root, "state", "slurm-77.0.1").stdout, `"running"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no running container slurm-77.0.1")
		}
	}
	r := mustLC(t, root, "exec", "slurm-77.0.1", "sh", "-c", "echo exec-ok")
	if r.stdout != "exec-ok\n" {
		t.Errorf("exec into the Slurm run: %s", r)
	}
	if r := lc(t, root, "exec", "slurm-77.0.1", "sh", "-c", "exit 9"); r.code != 9 {
		t.Errorf("exec status: %s", r)
	}
	if ps := mustLC(t, root, "ps", "slurm-77.0.1").stdout; !strings.Contains(ps, "sleep 1.5") {
		t.Errorf("ps of the Slurm run:\n%s", ps)
	}
	for range 2 {
		if r := <-done; r.code != 0 || r.stdout != "job-done\n" {
			t.Errorf("a run in the task: %s", r)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("the runs left state: %v", ents)
	}
}

// A bundle written by `runc spec --rootless` runs as is: its /dev (a
// tmpfs) gets the standard devices and links, process.rlimits and
// oomScoreAdj apply, root.readonly false leaves the rootfs writable, and
// maskedPaths (/proc/kcore) and readonlyPaths (/proc/sys) apply.
func TestRuncBundle(t *testing.T) {
	t.Parallel()
	needUserns(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	bundle, root := makeBundle(t)
	if r := runRaw(opts{dir: bundle}, runc, "spec", "--rootless"); r.code != 0 {
		t.Fatalf("runc spec --rootless: %s", r)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", `ulimit -n; ulimit -v; cat /proc/self/oom_score_adj; echo x > /dev/null && test -c /dev/zero && test -L /dev/fd && echo devices-ok; touch /written && echo rootfs-writable
cat /proc/kcore | wc -c; grep ' /proc/sys ' /proc/self/mountinfo | grep -q ' ro,' && echo proc-sys-ro`}
	// RLIMIT_AS too: the limits are the job's, not the init's, whose Go
	// runtime could not start its threads under it.
	proc["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}, {"type": "RLIMIT_AS", "soft": 1 << 30, "hard": 1 << 30}}
	proc["oomScoreAdj"] = 500
	spec["root"].(map[string]any)["readonly"] = false
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	r := lc(t, root, "run", "--bundle", bundle, "runc-bundle")
	if r.code != 0 || strings.Join(strings.Fields(r.stdout), " ") != "512 1048576 500 devices-ok rootfs-writable 0 proc-sys-ro" {
		t.Errorf("runc bundle: %s", r)
	}

	// An address-space limit below what the shim's Go runtime has
	// reserved already, with an environment big enough that building
	// the exec's arguments grows the heap: the shim must not allocate
	// after setting the limits, or it dies "out of memory" (as it did,
	// under load, with any environment). With no RLIMIT_NOFILE of its
	// own the job keeps the caller's soft limit, not the one Go raised.
	big := strings.Repeat("x", 120<<10)
	env := []string{"PATH=/bin:/usr/bin"}
	for i := range 14 {
		env = append(env, fmt.Sprintf("BIG%d=%s", i, big))
	}
	proc["env"] = env
	proc["args"] = []string{"sh", "-c", `ulimit -n; ulimit -v; echo ${#BIG13}`}
	proc["rlimits"] = []map[string]any{{"type": "RLIMIT_AS", "soft": 1 << 30, "hard": 1 << 30}}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	host := runRaw(opts{}, "sh", "-c", "ulimit -n")
	r = lc(t, root, "run", "--bundle", bundle, "runc-bundle-env")
	if want := strings.TrimSpace(host.stdout) + " 1048576 122880"; r.code != 0 || strings.Join(strings.Fields(r.stdout), " ") != want {
		t.Errorf("big environment under RLIMIT_AS, want %q: %s", want, r)
	}

	// Raising a hard limit is root's on the host: one line that says so.
	proc["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "soft": 1 << 40, "hard": 1 << 40}}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	failsLC(t, root, "set rlimit RLIMIT_NOFILE: operation not permitted (an unprivileged user can lower limits, not raise them)", "run", "--bundle", bundle, "raise-rlimit")

	proc["rlimits"] = []map[string]any{{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	failsLC(t, root, "unknown resource", "run", "--bundle", bundle, "bad-rlimit")
}

// Signals reach the process of `hpcrun --root R run` and of exec (runc's
// command lines put --root first), and a bad --pid-file fails create.
func TestLifecycleSignals(t *testing.T) {
	t.Parallel()
	needUserns(t)
	script := `trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done`
	bundle, root := lifecycleBundle(t, script)
	start := func(args ...string) (*exec.Cmd, *os.File) {
		out, err := os.CreateTemp(tempDirOwned(t), "out")
		if err != nil {
			t.Fatal(err)
		}
		cmd := command(context.Background(), opts{}, binPath, append([]string{"--root", root}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(out.Name()); strings.Contains(string(b), "ready") {
				return cmd, out
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("%v never got ready", args)
			}
		}
	}
	waitCode := func(cmd *exec.Cmd, out *os.File, want int, what string) {
		t.Helper()
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		b, _ := os.ReadFile(out.Name())
		if code := exitCode(cmd.ProcessState); code != want || !strings.Contains(string(b), "got-term") {
			t.Errorf("%s: SIGTERM gave exit %d, want the trap's %d; output %q", what, code, want, b)
		}
	}
	t.Cleanup(func() { lc(t, root, "delete", "--force", "sig") })
	cmd, out := start("run", "--bundle", bundle, "sig")
	waitCode(cmd, out, 3, "run")

	mustLC(t, root, "run", "-d", "--bundle", bundle, "sig2")
	t.Cleanup(func() { lc(t, root, "delete", "--force", "sig2") })
	cmd, out = start("exec", "sig2", "sh", "-c", script)
	waitCode(cmd, out, 3, "exec")

	failsLC(t, root, "pid file", "create", "--bundle", bundle, "--pid-file", "/nonexistent/dir/pid", "pidfail")
	if _, err := os.Stat(filepath.Join(root, "pidfail")); err == nil {
		t.Error("a create whose pid file failed left its container")
	}
}

// pause uses the cgroup v2 freezer where the container's cgroup is
// delegated to its user, as systemd's Delegate=yes leaves one: the
// processes but the init go to a child cgroup, frozen; resume thaws them
// and removes it. Killed while paused, the container still ends, and
// delete leaves no cgroup.
func TestLifecyclePauseCgroup(t *testing.T) {
	t.Parallel()
	needUserns(t)
	if os.Geteuid() != 0 || !asOther {
		t.Skip("delegating a cgroup needs root")
	}
	mnt, err := procs.Cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	// Delegation as systemd does it: the dir and its cgroup.procs,
	// cgroup.threads and cgroup.subtree_control belong to the user.
	cg := filepath.Join(mnt, fmt.Sprintf("hpcrun-e2e-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 100 && syscall.Rmdir(cg) == syscall.EBUSY; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s left behind", cg)
		}
	})
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(cg, f), testUID, testGID); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()

	bundle, root := lifecycleBundle(t, `while :; do :; done & while :; do true & wait; done & sleep 1000 & wait`)
	id := "cgpause"
	t.Cleanup(func() { lc(t, root, "delete", "--force", id) })
	r := run(t, opts{files: true, cgroupFD: int(dir.Fd())}, "--root", root, "run", "-d", "--bundle", bundle, id)
	if r.code != 0 {
		t.Fatalf("run -d in the delegated cgroup: %s", r)
	}
	waitStatus(t, root, id, "running")
	_, initPid := ociStatus(t, root, id)
	child := filepath.Join(cg, "hpcrun-"+id)
	cpu := func() (sum time.Duration) {
		ps, _ := procs.List(initPid)
		for _, p := range ps {
			sum += p.CPU
		}
		return sum
	}
	for range 3 {
		mustLC(t, root, "pause", id)
		if st, _ := ociStatus(t, root, id); st != "paused" {
			t.Errorf("after pause: %s", st)
		}
		if b, err := os.ReadFile(filepath.Join(child, "cgroup.events")); err != nil || !strings.Contains(string(b), "frozen 1") {
			t.Fatalf("pause did not use the delegated cgroup's freezer: %s: %q, %v", child, b, err)
		}
		if b, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs")); strings.TrimSpace(string(b)) != strconv.Itoa(initPid) {
			t.Errorf("left in the parent cgroup: %q, want only the init %d", b, initPid)
		}
		before := cpu()
		time.Sleep(200 * time.Millisecond)
		if after := cpu(); after != before {
			t.Errorf("paused, the container still used CPU: %v then %v", before, after)
		}
		// The init still serves: exec into a paused container is refused
		// or runs, but hpcrun ps answers.
		mustLC(t, root, "ps", id)
		mustLC(t, root, "resume", id)
		if _, err := os.Stat(child); !os.IsNotExist(err) {
			t.Errorf("after resume the child cgroup is still there: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		if after := cpu(); after <= before {
			t.Errorf("resumed, the busy loop did not run: %v then %v", before, after)
		}
	}
	// Paused, then killed: SIGKILL ends frozen processes in cgroup v2.
	mustLC(t, root, "pause", id)
	mustLC(t, root, "kill", id, "KILL")
	waitStatus(t, root, id, "stopped")
	mustLC(t, root, "delete", id)
	if _, err := os.Stat(child); !os.IsNotExist(err) {
		t.Errorf("after delete the child cgroup is still there: %v", err)
	}
}
