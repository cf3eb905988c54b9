package e2e

// Root on a user's state root, as Slurm's slurmstepd runs state, kill and
// delete through examples/slurm/oci.conf: nothing that the user plants or
// flips into place steers root.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// needRootOnUserState: the tests run the verbs as root on the test
// user's state.
func needRootOnUserState(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || !asOther {
		if requireUserns {
			t.Fatal("the verbs run as root on a user's state: the tests need root, and require it")
		}
		t.Skip("the verbs run as root on a user's state: needs root")
	}
}

// asRootOn runs a verb as root with --root root, bounded by 40s.
func asRootOn(root string, args ...string) result {
	return runRaw(opts{asRoot: true, files: true, timeout: 40 * time.Second}, binPath, append([]string{"--root", root}, args...)...)
}

// canaryProcess starts a sleep as uid, a process that root must never
// signal for the test user; it returns its pid and start time.
func canaryProcess(t *testing.T, uid int) (int, uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := command(ctx, opts{uid: uid}, "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	start, err := procs.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, start
}

// livesOn reports whether a canary of ours runs: not ended, not a zombie.
func livesOn(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// forgedState is a state.json of a running container whose init is pid.
func forgedState(id string, pid int, start uint64) string {
	b, _ := json.Marshal(map[string]any{"id": id, "pid": pid, "start": start, "ready": true,
		"created": time.Now().UTC().Format(time.RFC3339Nano), "owner": strconv.Itoa(testUID)})
	return string(b)
}

// plant makes container dir id under root with files (name: content; a
// content of "fifo" makes a FIFO, "->X" a symlink to X), all the test
// user's.
func plant(t *testing.T, root, id string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, testUID, testGID)
	for name, content := range files {
		p := filepath.Join(dir, name)
		var err error
		switch {
		case content == "fifo":
			err = syscall.Mkfifo(p, 0o600)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(strings.TrimPrefix(content, "->"), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		os.Lchown(p, testUID, testGID)
	}
}

// A user flips a forged state root into place with rename() in a loop,
// while root runs delete --force, kill and state on it: whether root finds
// the root missing (nothing to do) or there (it becomes the user first),
// it neither signals the process of another uid that state.json names nor
// removes the root-owned directory that paused names.
func TestRootOnFlippedStateRoot(t *testing.T) {
	t.Parallel()
	needRootOnUserState(t)
	parent := tempDirOwned(t)
	root := filepath.Join(parent, "state")
	pid, start := canaryProcess(t, freeUID(t))
	canaryDir, err := os.MkdirTemp(baseDir, "canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(canaryDir) })
	needTool(t, "/usr/bin/perl", "perl-base")
	// rename() in a tight loop, as a user would: the root is there half
	// the time, and a fresh copy comes every 200 flips, should a verb
	// have removed the container.
	flip := command(context.Background(), opts{env: []string{"STATE=" + forgedState("c1", pid, start), "CANARY=" + canaryDir}},
		"/usr/bin/perl", "-e", `
		my ($p) = @ARGV;
		sub put { my ($f, $s) = @_; open(my $h, ">", $f) or die "$f: $!"; print $h $s; close $h; }
		for (my $i = 0; !-e "$p/stop"; $i++) {
			my $d = "$p/f$i";
			mkdir($d, 0700) && mkdir("$d/c1", 0700) or die "mkdir: $!";
			put("$d/c1/state.json", $ENV{STATE}); put("$d/c1/started", ""); put("$d/c1/paused", $ENV{CANARY});
			for (1..200) { rename($d, "$p/state") && rename("$p/state", $d) or die "rename: $!"; }
			unlink(glob("$d/c1/*")); rmdir("$d/c1"); rmdir($d);
		}`, parent)
	flip.Stderr = os.Stderr
	if err := flip.Start(); err != nil {
		t.Fatal(err)
	}
	stopFlip := func() {
		os.WriteFile(filepath.Join(parent, "stop"), nil, 0o644)
		flip.Wait()
	}
	t.Cleanup(stopFlip)
	seen := 0
	for i := range 25 {
		for _, args := range [][]string{{"delete", "--force", "c1"}, {"kill", "c1", "KILL"}, {"state", "c1"}} {
			r := asRootOn(root, args...)
			if r.err != nil || strings.Count(r.stderr, "\n") > 1 {
				t.Fatalf("round %d: %s", i, r)
			}
			if r.code == 0 && args[0] == "state" {
				seen++
				if strings.Contains(r.stdout, strconv.Itoa(pid)) || strings.Contains(r.stdout, `"running"`) {
					t.Errorf("round %d: state reports the canary as the container's init: %s", i, r)
				}
			}
		}
	}
	stopFlip()
	if flip.ProcessState.ExitCode() != 0 {
		t.Errorf("the flipping loop failed: %v", flip.ProcessState)
	}
	if !livesOn(pid) {
		t.Errorf("the canary process of another uid was killed")
	}
	if _, err := os.Stat(canaryDir); err != nil {
		t.Errorf("the root-owned canary directory was removed: %v", err)
	}
	t.Logf("state found the flipped root %d times of 25", seen)
}

// FIFOs, symlinks to /dev/zero and huge files planted as state.json or
// paused: every verb that root runs ends promptly, with one line.
func TestRootOnHostileStateFiles(t *testing.T) {
	t.Parallel()
	needRootOnUserState(t)
	_, root := makeBundle(t)
	old := `{"id":"x","created":"2020-01-01T00:00:00Z"}`
	plant(t, root, "fifo-state", map[string]string{"state.json": "fifo"})
	plant(t, root, "zero-state", map[string]string{"state.json": "->/dev/zero"})
	plant(t, root, "huge-state", map[string]string{"state.json": strings.Repeat(" ", 1<<20) + old})
	plant(t, root, "fifo-paused", map[string]string{"state.json": old, "paused": "fifo"})
	plant(t, root, "zero-paused", map[string]string{"state.json": old, "paused": "->/dev/zero"})
	for _, id := range []string{"fifo-state", "zero-state", "huge-state"} {
		for _, verb := range [][]string{{"state"}, {"kill"}, {"delete", "--force"}} {
			begin := time.Now()
			r := asRootOn(root, append(verb, id)...)
			if r.err != nil || r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "state.json") {
				t.Errorf("%s %s: want exit 125 and one line about state.json: %s", verb[0], id, r)
			}
			if d := time.Since(begin); d > 10*time.Second {
				t.Errorf("%s %s took %v", verb[0], id, d)
			}
		}
	}
	for _, id := range []string{"fifo-paused", "zero-paused"} {
		r := asRootOn(root, "delete", "--force", id)
		if r.err != nil || r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "paused") {
			t.Errorf("delete %s: want exit 125 and one line about paused: %s", id, r)
		}
	}
	if r := asRootOn(root, "list"); r.err != nil || r.code != 0 {
		t.Errorf("list: %s", r)
	}
}

// A control socket that takes the connection and never answers: root's
// kill fails within the call's deadline, with one line.
func TestRootKillOnSilentSocket(t *testing.T) {
	t.Parallel()
	needRootOnUserState(t)
	needUserns(t)
	bundle, root := lifecycleBundle(t, "sleep 1000")
	mustLC(t, root, "create", "--bundle", bundle, "c1")
	t.Cleanup(func() { lc(t, root, "delete", "--force", "c1") })
	mustLC(t, root, "start", "c1")
	sock := filepath.Join(root, "c1", "ctl")
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chown(sock, testUID, testGID)
	begin := time.Now()
	r := asRootOn(root, "kill", "c1", "KILL")
	if r.err != nil || r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "did not answer") {
		t.Errorf("kill on a silent socket: want exit 125 and one line: %s", r)
	}
	if d := time.Since(begin); d > 25*time.Second {
		t.Errorf("kill took %v", d)
	}
	// delete --force ends the container through its init's pid, checked.
	mustLC(t, root, "delete", "--force", "c1")
}

// A state.json that names pid 1, another uid's process or a plain process
// of the user's: state reports no running container and no pid, and
// delete --force as root signals none of them.
func TestRootStateForgedPid(t *testing.T) {
	t.Parallel()
	needRootOnUserState(t)
	_, root := makeBundle(t)
	other, otherStart := canaryProcess(t, freeUID(t))
	mine, mineStart := canaryProcess(t, testUID)
	oneStart, err := procs.StartTime(1)
	if err != nil {
		t.Fatal(err)
	}
	for id, p := range map[string]struct {
		pid   int
		start uint64
	}{"one": {1, oneStart}, "other": {other, otherStart}, "mine": {mine, mineStart}} {
		plant(t, root, id, map[string]string{"state.json": forgedState(id, p.pid, p.start), "started": "1"})
		r := asRootOn(root, "state", id)
		var s struct {
			Status string `json:"status"`
			Pid    int    `json:"pid"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || r.code != 0 {
			t.Fatalf("state %s: %v: %s", id, err, r)
		}
		if s.Status != "stopped" || s.Pid != 0 {
			t.Errorf("state %s reports %s, pid %d; want stopped, no pid", id, s.Status, s.Pid)
		}
		if id == "one" {
			continue
		}
		if r := asRootOn(root, "delete", "--force", id); r.code != 0 {
			t.Errorf("delete --force %s: %s", id, r)
		}
		if !livesOn(p.pid) {
			t.Errorf("delete --force %s killed process %d", id, p.pid)
		}
	}
}
