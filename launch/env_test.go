package launch

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// TestEnv follows jobs.EnvRule through Build: the host's variables, the
// image's over them but for the scheduler's, --cleanenv, the config's
// pass and deny lists, then --env-file and --env over everything.
func TestEnv(t *testing.T) {
	dir := t.TempDir()
	file := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ab := file("ab.env", "# defaults\nexport A=1\n\nB='2 two'\n")
	a3 := file("a3.env", "A=3\n")
	bad := file("bad.env", "A=1\noops\n")

	host := []string{
		"HOME=/home/alice", "USER=alice", "TERM=xterm", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
		"LD_LIBRARY_PATH=/opt/lib", "LD_PRELOAD=/opt/lib/x.so", "FOO=bar", "SECRET_TOKEN=s",
		"TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3",
	}
	image := []string{
		"PATH=/opt/conda/bin:/usr/bin", "LANG=en_US.UTF-8", "SLURM_PROCID=0", "SLURM_JOB_ID=99",
		"PMIX_RANK=0", "OMPI_MCA_btl=^openib", "LD_LIBRARY_PATH=/opt/img/lib", "EMPTY=",
	}
	// The host's order, then the image's new names, then --env's.
	tests := []struct {
		name     string
		image    []string // nil for image
		cleanEnv bool
		env      []string
		files    []string
		pass     []string
		deny     []string
		want     []string
		err      string
		usage    bool
	}{
		{name: "the image's over the host's, but for the scheduler's",
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "PATH=/opt/conda/bin:/usr/bin", "LANG=en_US.UTF-8",
				"FOO=bar", "SECRET_TOKEN=s", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3",
				"OMPI_MCA_btl=^openib", "LD_LIBRARY_PATH=/opt/img/lib", "EMPTY="}},
		{name: "the default PATH, when the image sets none", image: []string{"LANG=en_US.UTF-8"},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "PATH=" + runtime.DefaultPath, "LANG=en_US.UTF-8",
				"FOO=bar", "SECRET_TOKEN=s", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3"}},
		{name: "--cleanenv", cleanEnv: true,
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3",
				"PATH=/opt/conda/bin:/usr/bin", "LANG=en_US.UTF-8", "OMPI_MCA_btl=^openib", "LD_LIBRARY_PATH=/opt/img/lib", "EMPTY="}},
		{name: "--cleanenv with the config's pass list", cleanEnv: true, image: []string{}, pass: []string{"FOO", "SECRET_*", "LD_*"},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "FOO=bar", "SECRET_TOKEN=s", "TMPDIR=/tmp/job",
				"SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3", "PATH=" + runtime.DefaultPath}},
		{name: "the config's deny list, the scheduler's aside", image: []string{}, deny: []string{"FOO", "SECRET_*", "SLURM_*", "TERM"},
			want: []string{"HOME=/home/alice", "USER=alice", "PATH=" + runtime.DefaultPath, "LANG=C.UTF-8",
				"TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3"}},
		{name: "--env over everything", image: []string{"LANG=en_US.UTF-8"},
			env: []string{"SLURM_PROCID=9", "PATH=/x", "LANG=fr_FR.UTF-8", "NEW=1", "LD_PRELOAD=/y.so"},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "PATH=/x", "LANG=fr_FR.UTF-8",
				"FOO=bar", "SECRET_TOKEN=s", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=9", "PMIX_RANK=3", "NEW=1", "LD_PRELOAD=/y.so"}},
		{name: "--env K copies the host's, even with --cleanenv", cleanEnv: true, image: []string{},
			env: []string{"FOO", "LD_LIBRARY_PATH", "NOT_ON_HOST"},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3",
				"PATH=" + runtime.DefaultPath, "FOO=bar", "LD_LIBRARY_PATH=/opt/lib"}},
		{name: "--env K copies the host's, over the image's",
			image: []string{"LANG=en_US.UTF-8"}, env: []string{"LANG"},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "PATH=" + runtime.DefaultPath, "LANG=C.UTF-8",
				"FOO=bar", "SECRET_TOKEN=s", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3"}},
		{name: "--env-file, in order, then --env", cleanEnv: true, image: []string{"A=0"},
			files: []string{ab, a3}, env: []string{"B=4"},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3",
				"PATH=" + runtime.DefaultPath, "A=3", "B=4"}},
		{name: "--env-file, quotes dropped", cleanEnv: true, image: []string{},
			files: []string{ab},
			want: []string{"HOME=/home/alice", "USER=alice", "TERM=xterm", "TMPDIR=/tmp/job", "SLURM_JOB_ID=7", "SLURM_PROCID=3", "PMIX_RANK=3",
				"PATH=" + runtime.DefaultPath, "A=1", "B=2 two"}},
		{name: "--env-file missing", files: []string{filepath.Join(dir, "none.env")},
			err: "--env-file: open " + filepath.Join(dir, "none.env") + ": no such file or directory"},
		{name: "--env-file with a bad line", files: []string{bad},
			err: "--env-file " + bad + `:2: want NAME=VALUE, got "oops"`},
		{name: "a bad --env", env: []string{"1A=x"},
			err: `--env: bad variable "1A=x": want NAME=VALUE`, usage: true},
		{name: "an empty --env", env: []string{"=x"},
			err: `--env: bad variable "=x": want NAME=VALUE`, usage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.h.Env = host
			img := tc.image
			if img == nil {
				img = image
			}
			j.im = newImage(t, baseImage, img, store.ImageConfig{})
			j.r.CleanEnv, j.r.Env, j.r.EnvFiles = tc.cleanEnv, tc.env, tc.files
			j.st.Conf.EnvPass = jobs.Setting[[]string]{Value: tc.pass, From: "test"}
			j.st.Conf.EnvDeny = jobs.Setting[[]string]{Value: tc.deny, From: "test"}
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			// hpcrun's marks are TestMarks'; here, only that they are there.
			marks := []string{"HPCRUN_CONTAINER=1", "HPCRUN_IMAGE="}
			got := slices.DeleteFunc(slices.Clone(cfg.Spec.Process.Env), func(kv string) bool { return slices.Contains(marks, kv) })
			if len(got) != len(cfg.Spec.Process.Env)-len(marks) {
				t.Errorf("env %q lacks hpcrun's marks %q", cfg.Spec.Process.Env, marks)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("env:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
