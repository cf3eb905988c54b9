package launch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/jobs"
)

// TestCacheSameForEveryProcess: the default cache does not move with the
// job's environment. Slurm 22.05 sets TMPDIR=/tmp for a step's task 0
// only, and a login shell has none: all must agree, or each task unpacks
// the image into a cache of its own and the step's join fails.
func TestCacheSameForEveryProcess(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir, jobs.ConfigEnv + "=" + filepath.Join(dir, "site.yaml")}
	envs := map[string][]string{
		"login shell":      nil,
		"task 0 of a step": {"SLURM_JOB_ID=7", "SLURM_STEP_ID=0", "SLURM_PROCID=0", "TMPDIR=/tmp"},
		"task 1 of a step": {"SLURM_JOB_ID=7", "SLURM_STEP_ID=0", "SLURM_PROCID=1"},
		"per-job tmpdir":   {"SLURM_JOB_ID=7", "SLURM_TMPDIR=/local/slurm/7", "TMPDIR=/local/slurm/7"},
		"PBS job":          {"PBS_JOBID=12.pbs", "TMPDIR=/var/tmp/pbs.12.pbs"},
		"TMPDIR elsewhere": {"TMPDIR=/scratch/u"},
	}
	local := jobs.Dir{Exists: true, Writable: true, Free: 1 << 30, FS: "ext4", Local: true}
	tmpfs := jobs.Dir{Exists: true, Writable: true, Free: 1 << 30, FS: "tmpfs", Local: true}
	for _, probes := range []struct {
		name string
		dirs map[string]jobs.Dir
		want string
	}{
		{"all usable", map[string]jobs.Dir{"/var/tmp": local, "/tmp": tmpfs, "/local/slurm/7": local, "/scratch/u": local}, "/var/tmp/hpcrun-1000"},
		{"/var/tmp noexec", map[string]jobs.Dir{"/var/tmp": {Exists: true, Writable: true, Local: true, NoExec: true}, "/tmp": tmpfs, "/scratch/u": local}, "/tmp/hpcrun-1000"},
	} {
		for name, env := range envs {
			h := Host{Env: append(append([]string{}, base...), env...), UID: 1000, Cwd: "/"}
			st, err := LoadSettings(h, "", "")
			if err != nil {
				t.Fatal(err)
			}
			st.Probe = func(p string) jobs.Dir { return probes.dirs[p] }
			got, err := st.Cache(h)
			if err != nil || got != probes.want {
				t.Errorf("%s, %s: cache = %q, %v; want %s", probes.name, name, got, err, probes.want)
			}
		}
	}
}

// TestCacheNoexec: a cache that is given, and one that is chosen, is never
// on a noexec filesystem.
func TestCacheNoexec(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir, jobs.ConfigEnv + "=" + filepath.Join(dir, "site.yaml")}
	noexec := jobs.Dir{Exists: true, Writable: true, FS: "tmpfs", Local: true, NoExec: true}
	probe := func(p string) jobs.Dir { return noexec }
	tests := []struct {
		name, flag string
		env        []string
		err        string
	}{
		{"--cache", "/tmp/c", nil, "the cache /tmp/c (from --cache) is on a filesystem mounted noexec"},
		{"HPCRUN_CACHE", "", []string{"HPCRUN_CACHE=/tmp/c"}, "the cache /tmp/c (from HPCRUN_CACHE) is on a filesystem mounted noexec"},
		{"HPCRUN_SCRATCH", "", []string{"HPCRUN_SCRATCH=/tmp"}, "the scratch dir /tmp (set in HPCRUN_SCRATCH) is on a filesystem mounted noexec"},
		{"default", "", []string{"TMPDIR=/tmp"}, "no node-local dir for the image cache: /var/tmp is mounted noexec, /tmp is mounted noexec; "},
	}
	for _, tc := range tests {
		h := Host{Env: append(append([]string{}, base...), tc.env...), UID: 1000, Cwd: "/"}
		st, err := LoadSettings(h, tc.flag, "")
		if err != nil {
			t.Fatal(err)
		}
		st.Probe = probe
		if got, err := st.Cache(h); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: cache = %q, %v; want %q", tc.name, got, err, tc.err)
		}
	}
}
