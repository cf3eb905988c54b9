package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
)

// Each fallback for a kernel feature that clusters' kernels lack (RHEL 8
// has 4.18), forced on this kernel with the test switch: the flows that
// need the feature work without it. `make e2e-kernsim` runs the whole
// suite with the features really missing.
func TestKernelFallbacks(t *testing.T) {
	t.Parallel()
	needUserns(t)
	force := func(f fallback.Feature) opts {
		return opts{files: true, env: []string{fallback.Env + "=" + string(f)}}
	}

	// Without pidfds (Linux 5.3): a pid and its start time, and the
	// process's /proc directory.
	t.Run("pidfd", func(t *testing.T) {
		t.Parallel()
		o := force(fallback.Pidfd)
		lc := func(root string, args ...string) result {
			return run(t, o, append([]string{"--root", root}, args...)...)
		}
		// run waits for the job, which ends after run would have
		// looked.
		bundle, root := lifecycleBundle(t, `sleep 0.5; echo ran; exit 5`)
		if r := lc(root, "run", "--bundle", bundle, "fg"); r.code != 5 || r.stdout != "ran\n" {
			t.Errorf("run: want the job's exit 5 and its output: %s", r)
		}
		// delete --force kills the init and waits for it.
		bundle, root = lifecycleBundle(t, `sleep 1000`)
		if r := lc(root, "run", "-d", "--bundle", bundle, "bg"); r.code != 0 {
			t.Fatalf("run -d: %s", r)
		}
		waitStatus(t, root, "bg", "running")
		_, pid := ociStatus(t, root, "bg")
		if r := lc(root, "delete", "--force", "bg"); r.code != 0 {
			t.Fatalf("delete --force: %s", r)
		}
		if alive(pid, []string{"hpcrun-init"}) {
			t.Errorf("delete --force left the init %d running", pid)
		}
		// Under Slurm a detached service ends with the script that
		// started it.
		root = filepath.Join(tempDirOwned(t), "state")
		img := pythonImage(t)
		r := runRaw(opts{env: append(o.env, "SLURM_JOB_ID=42")}, "/bin/sh", "-c",
			binPath+" --root "+root+" --image "+img+" --name job-svc --detach sleep 1000 && "+
				binPath+" --root "+root+" state job-svc && sleep 0.5")
		if r.code != 0 || !strings.Contains(r.stdout, `"running"`) {
			t.Fatalf("the job script: want the service running while it runs: %s", r)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if r := lc(root, "state", "job-svc"); strings.Contains(r.stdout, `"stopped"`) && r.code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the detached service outlived its Slurm job's script")
			}
		}
	})

	// Without close_range (CLOSE_RANGE_CLOEXEC, Linux 5.11): the init
	// marks its descriptors from /proc/self/fd; the job gets stdio only.
	t.Run("close_range", func(t *testing.T) {
		t.Parallel()
		img := pythonImage(t)
		for _, o := range []opts{{}, force(fallback.CloseRange)} {
			r := run(t, o, "--image", img, "python3", "-c", `import os; print(sorted(os.listdir("/proc/self/fd")))`)
			// Python's listdir holds the directory open as fd 3.
			if r.code != 0 || strings.TrimSpace(r.stdout) != "['0', '1', '2', '3']" {
				t.Errorf("%v: want the job to hold stdio alone: %s", o.env, r)
			}
		}
	})

	// Without mount_setattr (Linux 5.12): each mount inside a read-only
	// rootfs is remounted read-only on its own, with its locked flags.
	t.Run("mount_setattr", func(t *testing.T) {
		t.Parallel()
		if !asOther {
			t.Skip("needs root to mount a filesystem inside the rootfs")
		}
		rootfs := ownedRootfs(t)
		opt := filepath.Join(rootfs, "opt")
		if err := os.Mkdir(opt, 0o755); err != nil {
			t.Fatal(err)
		}
		// nosuid, nodev, noexec and noatime: flags the user namespace
		// locks, which each remount must repeat.
		if err := syscall.Mount("tmpfs", opt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC|syscall.MS_NOATIME, "mode=777"); err != nil {
			t.Fatalf("mount a tmpfs in the rootfs: %v", err)
		}
		defer syscall.Unmount(opt, syscall.MNT_DETACH)
		r := run(t, force(fallback.MountSetattr), "--rootfs", rootfs, "sh", "-c",
			`touch /opt/w && echo wrote; touch /w && echo wrote-root; grep ' /opt ' /proc/self/mountinfo`)
		if strings.Contains(r.stdout, "wrote") || r.code != 0 {
			t.Errorf("the job wrote into the read-only rootfs or a filesystem mounted inside it: %s", r)
		}
		if !strings.Contains(r.stdout, " ro,nosuid,nodev,noexec,noatime ") {
			t.Errorf("/opt in the container: want ro with its locked flags kept: %s", r)
		}
		if _, err := os.Stat(filepath.Join(opt, "w")); err == nil {
			t.Errorf("%s/w exists on the host", opt)
		}
	})
}
