package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Slurm's native containers (srun --container=BUNDLE) with hpcrun as the
// OCI runtime, through examples/slurm/oci.conf, on a real Slurm of two
// nodes on this host (scripts/slurm-up.sh): the job runs in the bundle as
// the user, its exit status comes back, two tasks run, and scancel lets
// the job's TERM handler run and leaves no process and no state behind.
func TestSlurmOCIContainer(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	conf, err := os.ReadFile(repoPath("examples/slurm/oci.conf"))
	if err != nil {
		t.Fatal(err)
	}
	const ociConf = "/etc/slurm/oci.conf"
	if _, err := os.Stat(ociConf); err == nil {
		t.Fatalf("%s exists already; the test would replace it", ociConf)
	}
	if err := os.WriteFile(ociConf, []byte(strings.ReplaceAll(string(conf), "/usr/local/bin/hpcrun", binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(ociConf) })

	bundle, _ := makeBundle(t)
	os.WriteFile(filepath.Join(bundle, "rootfs", "marker"), []byte("inside-the-bundle\n"), 0o644)
	r := mustRun(t, opts{}, "spec", "--rootfs", filepath.Join(bundle, "rootfs"), "--", "true")
	// A prestart hook, as GPU vendors' are: it runs, with the state on
	// its stdin, and the step with it.
	hookOut := filepath.Join(tempDirOwned(t), "prestart-state")
	var spec map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
		t.Fatal(err)
	}
	spec["hooks"] = map[string]any{"prestart": []map[string]any{{"path": "/bin/sh", "args": []string{"sh", "-c", "cat > " + hookOut}}}}
	config, _ := json.Marshal(spec)
	writeConfig(t, bundle, config)
	user := testUser
	stateRoot := "/tmp/hpcrun-oci-" + user

	srun := func(ctx context.Context, args ...string) *exec.Cmd {
		return command(ctx, opts{dir: tempDirOwned(t)}, "srun", append([]string{"--container=" + bundle}, args...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := srun(ctx, "sh", "-c", "cat /marker; exit 3").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "inside-the-bundle") {
		t.Fatalf("srun --container: want the bundle's /marker and exit 3: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(hookOut); err != nil || !strings.Contains(string(b), `"status":"created"`) {
		t.Fatalf("srun --container: the bundle's prestart hook did not run, or without the state: %q, %v", b, err)
	}

	// Two tasks, one on each of the test cluster's two nodes: Slurm 22.05
	// takes one container task per node.
	out, err = srun(ctx, "-n", "2", "--ntasks-per-node=1", "sh", "-c", "cat /marker").CombinedOutput()
	if err != nil || strings.Count(string(out), "inside-the-bundle") != 2 {
		t.Fatalf("srun -n 2 --ntasks-per-node=1 --container: %v\n%s", err, out)
	}

	// scancel: the job's TERM handler runs inside; nothing is left.
	// The handler leaves a file too: srun may close the step's output
	// before the handler's echo gets through.
	flag := filepath.Join(tempDirOwned(t), "got-term")
	// A job name of its own: the other Slurm tests' jobs run beside it.
	name := fmt.Sprintf("hpcrun-oci-term-%d", os.Getpid())
	cmd := srun(ctx, "--job-name="+name, "sh", "-c", `trap 'echo got-term; echo x > `+flag+`; exit 7' TERM; echo started; while :; do sleep 0.1; done`)
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(buf.String(), "started"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the job never started: %s", buf.String())
		}
	}
	// The container of the step, and its init's pid.
	var initPid int
	for deadline := time.Now().Add(10 * time.Second); initPid == 0; time.Sleep(50 * time.Millisecond) {
		if ents, _ := os.ReadDir(stateRoot); len(ents) == 1 {
			var st struct{ Pid int }
			b, _ := os.ReadFile(filepath.Join(stateRoot, ents[0].Name(), "state.json"))
			json.Unmarshal(b, &st)
			initPid = st.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container state under %s", stateRoot)
		}
	}
	if out, err := exec.Command("scancel", "--name="+name, "--user="+user).CombinedOutput(); err != nil {
		t.Fatalf("scancel --name=%s: %v\n%s", name, err, out)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("srun did not end after scancel: %s", buf.String())
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(flag); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job's TERM handler did not run: %s", buf.String())
		}
	}
	t.Logf("srun after scancel: exit %d: %s", exitCode(cmd.ProcessState), buf.String())
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ents, _ := os.ReadDir(stateRoot)
		running := alive(initPid, []string{"hpcrun-init"}) // not a zombie where nothing reaps orphans
		if len(ents) == 0 && !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: state %v, the init %d alive: %v", ents, initPid, running)
		}
	}
}
