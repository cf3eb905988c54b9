package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fenceImage writes a busybox image whose WorkingDir is workdir, with
// symlinks /escapeN to /proc/self/fd/N for N of 5 to 9, unpacks it and
// returns its path.
func fenceImage(t *testing.T, workdir string) string {
	t.Helper()
	var links []tarEntry
	for fd := 5; fd <= 9; fd++ {
		links = append(links, tSymlink("escape"+strconv.Itoa(fd), "/proc/self/fd/"+strconv.Itoa(fd)))
	}
	img := genImage{layers: [][]byte{busyboxLayer(t), tarBytes(t, links...)}, workdir: workdir}.oci(t, "latest").writeTar(t, filepath.Join(tempDirOwned(t), "fence.tar"))
	mustRun(t, opts{}, "--image", img, "--pwd", "/", "true")
	return img
}

// refused checks that r failed with exit 125 and one line with want.
func refused(t *testing.T, what string, r result, want string) {
	t.Helper()
	if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("%s: want exit 125 and one line with %q: %s", what, want, r)
	}
}

// fenceName is a container name of this test run's own.
func fenceName(tag string) string { return fmt.Sprintf("fence-%s-%d", tag, os.Getpid()) }

// deleteAfter deletes the named run name (in the default root, or in
// --root root) after t: once stopped, it stays until delete.
func deleteAfter(t *testing.T, name string, root ...string) {
	t.Cleanup(func() { runRaw(opts{}, binPath, append(root, "delete", "--force", name)...) })
}

// A job's working directory stays inside its root: the pattern of runc's
// CVE-2024-21626, where the init held a host directory (a named run's
// state directory, fd 7) when it changed into the job's directory.
func TestWorkdirStaysInRoot(t *testing.T) {
	t.Parallel()
	needUserns(t)
	// The image's WorkingDir counts where the host's cwd is not seen
	// inside: a system directory.
	img := fenceImage(t, "/proc/self/fd/7")
	r := run(t, opts{dir: "/usr"}, "--name", fenceName("wd"), "--image", img, "sh", "-c", "pwd; ls ../../..")
	refused(t, "image WorkingDir /proc/self/fd/7", r, "working directory /proc/self/fd/7 is in a process's /proc directory")
	for _, pwd := range []string{"/proc/self/fd/7", "/proc/1/cwd", "/proc/thread-self/fd/8"} {
		r := run(t, opts{}, "--name", fenceName("pwd"), "--pwd", pwd, "--image", img, "sh", "-c", "pwd")
		refused(t, "--pwd "+pwd, r, "pick another with --pwd")
	}
	// A symlink to a magic link gets past a look at the path; not past
	// the check of where the directory is. Whichever descriptor the init
	// holds, none leads out.
	for fd := 5; fd <= 9; fd++ {
		link := "/escape" + strconv.Itoa(fd)
		r = run(t, opts{}, "--name", fenceName("link"), "--pwd", link, "--image", img, "sh", "-c", "pwd; ls")
		refused(t, "--pwd "+link+" (a symlink to a descriptor)", r, "working directory "+link)
		t.Logf("--pwd %s: %s", link, strings.TrimSpace(r.stderr))
	}

	// exec --cwd into a named run.
	name := fenceName("exec")
	deleteAfter(t, name)
	_, _, wait := startJob(t, "--name", name, "--image", img, "--pwd", "/", "sh", "-c", "echo ready; exec /bin/busybox sleep 1000")
	for _, cwd := range []string{"/proc/self/fd/7", "/proc/self/fd/8", "/escape5", "/escape6", "/escape7", "/escape8", "/escape9"} {
		r := run(t, opts{}, "exec", "--cwd", cwd, name, "sh", "-c", "pwd; ls ../../..")
		refused(t, "exec --cwd "+cwd, r, "pick another with --cwd")
	}
	if r := run(t, opts{}, "exec", "--cwd", "/bin", name, "sh", "-c", "pwd"); r.code != 0 || r.stdout != "/bin\n" {
		t.Errorf("exec --cwd /bin: %s", r)
	}
	mustRun(t, opts{}, "kill", name, "KILL")
	wait()
}

// listFromJob lists, from a job, what the job sees of dir.
func listFromJob(t *testing.T, img string, dir string, args ...string) result {
	t.Helper()
	return mustRun(t, opts{}, append(args, "--image", img, "sh", "-c", `ls -a "$0"/* 2>&1; true`, dir)...)
}

// No job reaches the state or the control socket of another container:
// the state roots under /tmp, which every container binds, are hidden.
func TestStateRootsHiddenFromJobs(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := fenceImage(t, "")

	// A named run in the default root, /tmp/hpcrun-UID/run without
	// XDG_RUNTIME_DIR (as the tests run).
	name := fenceName("ctl")
	deleteAfter(t, name)
	deleteAfter(t, fenceName("peer"))
	_, _, wait := startJob(t, "--name", name, "--image", img, "sh", "-c", "echo ready; exec /bin/busybox sleep 1000")
	root := "/tmp/hpcrun-" + strconv.Itoa(testUID) + "/run"
	if _, err := os.Stat(filepath.Join(root, name, "ctl")); err != nil {
		t.Fatalf("the named run has no socket where the test looks: %v", err)
	}
	for _, args := range [][]string{nil, {"--name", fenceName("peer")}} {
		r := listFromJob(t, img, root, args...)
		if strings.Contains(r.stdout, "ctl") || strings.Contains(r.stdout, "state.json") {
			t.Errorf("a job (%v) sees the default state root: %s", args, r)
		}
	}
	if r := run(t, opts{}, "--image", img, "sh", "-c", `echo > "$0"/x`, root); r.code == 0 {
		t.Errorf("a job can write into the default state root: %s", r)
	}

	// The root oci.conf gives Slurm's containers, under /tmp.
	bundle, _ := lifecycleBundle(t, "exec sleep 1000")
	oci := "/tmp/hpcrun-oci-" + strconv.Itoa(testUID)
	id := fenceName("oci")
	t.Cleanup(func() { lc(t, oci, "delete", "--force", id) })
	mustLC(t, oci, "create", "--bundle", bundle, id)
	mustLC(t, oci, "start", id)
	if _, err := os.Stat(filepath.Join(oci, id, "ctl")); err != nil {
		t.Fatalf("the created container has no socket where the test looks: %v", err)
	}
	deleteAfter(t, fenceName("ocipeer"), "--root", oci)
	for _, args := range [][]string{nil, {"--root", oci, "--name", fenceName("ocipeer")}} {
		r := listFromJob(t, img, oci, args...)
		if strings.Contains(r.stdout, "ctl") || strings.Contains(r.stdout, id) {
			t.Errorf("a job (%v) sees oci.conf's state root: %s", args, r)
		}
	}

	// A root elsewhere under /tmp is hidden from the containers that use it.
	own := tempDirOwnedIn(t, "/tmp")
	r := listFromJob(t, img, own, "--root", own, "--name", fenceName("own"))
	if strings.Contains(r.stdout, "ctl") || strings.Contains(r.stdout, "state.json") {
		t.Errorf("a job sees its own state root %s: %s", own, r)
	}

	mustRun(t, opts{}, "kill", name, "KILL")
	wait()
}

// A hang-up of hpcrun exec ends everything the exec'd process started,
// also what left its session.
func TestExecHangupKillsAll(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := fenceImage(t, "")
	name := fenceName("hup")
	deleteAfter(t, name)
	_, _, wait := startJob(t, "--name", name, "--image", img, "sh", "-c", "echo ready; exec /bin/busybox sleep 1000")
	defer func() {
		mustRun(t, opts{}, "kill", name, "KILL")
		wait()
	}()
	// busybox has setsid and sleep as applets.
	proc, _, execWait := startJob(t, "exec", name, "/bin/busybox", "sh", "-c",
		"/bin/busybox setsid /bin/busybox sleep 1234 & /bin/busybox sleep 1235 & echo ready; /bin/busybox sleep 1236")
	left := func() string {
		r := mustRun(t, opts{}, "exec", name, "sh", "-c", `for p in /proc/[0-9]*; do /bin/busybox tr '\0' ' ' < $p/cmdline; echo; done`)
		var out []string
		for _, l := range lines(r.stdout) {
			if strings.Contains(l, "sleep 123") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "; ")
	}
	if l := left(); !strings.Contains(l, "sleep 1234") {
		t.Fatalf("the exec'd processes do not run: %q", l)
	}
	proc.Kill()
	execWait()
	deadline := time.Now().Add(5 * time.Second)
	for l := left(); l != ""; l = left() {
		if time.Now().After(deadline) {
			t.Fatalf("5s after hpcrun exec was killed, these still run: %s", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
