package jobs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// fakeProc writes a /proc tree: files maps "PID/name" to its content, and
// one whose content starts with "->" is a symlink to the rest.
func fakeProc(t *testing.T, files map[string]string) ProcFS {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(data, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(data), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return ProcFS{Root: root}
}

// stat is a /proc/PID/stat line of a process named comm whose parent is
// ppid.
func stat(pid, comm, ppid string) string {
	return pid + " (" + comm + ") S " + ppid + " 3047 3047 0 -1 4194560 954 0 6 0 1 2 0 0 20 0 3 0 35998\n"
}

func TestPlainBatchLine(t *testing.T) {
	batch := Job{Scheduler: Slurm, ID: "11"}
	// As measured under Slurm 22.05: slurmstepd 3048, the batch shell
	// 3052 running the script, hpcrun its child.
	plain := map[string]string{
		"3052/stat":      stat("3052", "slurm_script", "3048"),
		"3048/cmdline":   "slurmstepd: [11.batch]\x00",
		"3048/stat":      stat("3048", "slurmstepd", "1"),
		"1/cmdline":      "/sbin/init\x00",
		"3052/real-stat": stat("3052", "slurm_script", "3048"), // what a symlink would reach
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range plain {
			m[a] = b
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		job  Job
		ppid int
		proc map[string]string
		want bool
	}{
		{"plain line", batch, 3052, plain, true},
		{"SLURM_STEP_ID of the batch step", Job{Scheduler: Slurm, ID: "11", Step: batchStep}, 3052, plain, true},
		{"old argv's NULs after the title", batch, 3052, with("3048/cmdline", "slurmstepd: [11.batch]\x00\x00\x00"), true},
		{"a shell named with ') S 1 '", batch, 3052, with("3052/stat", stat("3052", "x) S 1 (y", "3048")), true},
		{"exec hpcrun: the parent is slurmstepd", batch, 3048, plain, false},
		{"srun hpcrun: a step of its own", Job{Scheduler: Slurm, ID: "11", Step: "0"}, 3052, plain, false},
		{"an srun step's slurmstepd", batch, 3052, with("3048/cmdline", "slurmstepd: [11.0]\x00"), false},
		{"another job's batch step", batch, 3052, with("3048/cmdline", "slurmstepd: [111.batch]\x00"), false},
		{"in a subshell of the script", batch, 3052, with("3048/cmdline", "/bin/bash\x00/var/spool/slurmd/job00011/slurm_script\x00"), false},
		{"outside Slurm", Job{Scheduler: None}, 3052, plain, false},
		{"under PBS", Job{Scheduler: PBS, ID: "11"}, 3052, plain, false},
		{"re-parented to init", batch, 1, plain, false},
		{"parent gone", batch, 4000, plain, false},
		{"grandparent gone", batch, 3052, with("3048/cmdline", "->/nonexistent"), false},
		{"unreadable stat", batch, 3052, with("3052/stat", "garbage"), false},
		{"a symlink is not followed", batch, 3052, with("3052/stat", "->real-stat"), false},
		{"an oversized cmdline", batch, 3052, with("3048/cmdline", "slurmstepd: [11.batch]\x00"+strings.Repeat("x", MaxProcRead)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PlainBatchLine(tt.job, tt.ppid, fakeProc(t, tt.proc)); got != tt.want {
				t.Errorf("PlainBatchLine = %v, want %v", got, tt.want)
			}
		})
	}
}

// The real /proc: this test is no batch script's line, and ProcFS reads
// its own stat.
func TestProcFS(t *testing.T) {
	data, err := ProcFS{}.ReadProc(strconv.Itoa(os.Getpid()) + "/stat")
	if ppid, _, _ := procs.StatParent(data); err != nil || ppid != os.Getppid() {
		t.Fatalf("ReadProc(self/stat) = %q, %v; parent %d, want %d", data, err, ppid, os.Getppid())
	}
	if PlainBatchLine(Job{Scheduler: Slurm, ID: "1"}, os.Getppid(), ProcFS{}) {
		t.Error("go test is taken for a plain line of a batch script")
	}
}

// What the check costs a start inside a batch script: two small reads of
// the real /proc.
func BenchmarkPlainBatchLine(b *testing.B) {
	j := Job{Scheduler: Slurm, ID: "1"}
	for b.Loop() {
		PlainBatchLine(j, os.Getppid(), ProcFS{})
	}
}
