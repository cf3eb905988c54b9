package jobs

import (
	"reflect"
	"strings"
	"testing"
)

func TestContainerEnv(t *testing.T) {
	host := []string{"HOME=/home/a", "USER=a", "TERM=xterm", "PATH=/host/bin", "FOO=host",
		"LD_LIBRARY_PATH=/host/lib", "LD_PRELOAD=/host/x.so", "SLURM_JOB_ID=42", "PMIX_RANK=3",
		"OMPI_COMM_WORLD_SIZE=8", "PBS_JOBID=7", "LANG=C.UTF-8", "bad"}
	image := []string{"PATH=/opt/py/bin:/usr/bin", "LANG=C", "PYTHONUNBUFFERED=1"}
	tests := []struct {
		name string
		o    EnvOptions
		want []string
	}{
		{"host passes, image wins, LD_* dropped", EnvOptions{Host: host, Image: image, DefaultPath: "/def"},
			[]string{"HOME=/home/a", "USER=a", "TERM=xterm", "PATH=/opt/py/bin:/usr/bin", "FOO=host",
				"SLURM_JOB_ID=42", "PMIX_RANK=3", "OMPI_COMM_WORLD_SIZE=8", "PBS_JOBID=7", "LANG=C", "PYTHONUNBUFFERED=1"}},
		{"default PATH when the image has none", EnvOptions{Host: []string{"PATH=/host/bin"}, DefaultPath: "/def"},
			[]string{"PATH=/def"}},
		{"cleanenv", EnvOptions{Host: host, Image: image, DefaultPath: "/def", CleanEnv: true},
			[]string{"HOME=/home/a", "USER=a", "TERM=xterm", "SLURM_JOB_ID=42", "PMIX_RANK=3",
				"OMPI_COMM_WORLD_SIZE=8", "PBS_JOBID=7", "PATH=/opt/py/bin:/usr/bin", "LANG=C", "PYTHONUNBUFFERED=1"}},
		{"--env wins over all, K alone copies from the host", EnvOptions{Host: host, Image: image, DefaultPath: "/def", CleanEnv: true,
			Set: []string{"LANG=de_DE", "FOO", "LD_LIBRARY_PATH=/mine", "NOPE", "PATH=/p"}},
			[]string{"HOME=/home/a", "USER=a", "TERM=xterm", "SLURM_JOB_ID=42", "PMIX_RANK=3",
				"OMPI_COMM_WORLD_SIZE=8", "PBS_JOBID=7", "PATH=/p", "LANG=de_DE", "PYTHONUNBUFFERED=1", "FOO=host",
				"LD_LIBRARY_PATH=/mine"}},
		{"config pass list with --cleanenv, deny list", EnvOptions{Host: append(host, "LIC_SERVER=x", "LIC_PORT=1", "SECRET=s", "SLURM_CONF=/c"),
			DefaultPath: "/def", CleanEnv: true, Pass: []string{"LIC_*", "SECRET"}, Deny: []string{"SECRET", "SLURM_*", "TERM"},
			Set: []string{"TERM"}},
			[]string{"HOME=/home/a", "USER=a", "SLURM_JOB_ID=42", "PMIX_RANK=3", "OMPI_COMM_WORLD_SIZE=8", "PBS_JOBID=7",
				"LIC_SERVER=x", "LIC_PORT=1", "SLURM_CONF=/c", "PATH=/def", "TERM=xterm"}},
		{"deny without --cleanenv", EnvOptions{Host: []string{"A=1", "AWS_KEY=k", "AWS=2"}, DefaultPath: "/d", Deny: []string{"AWS_*"}},
			[]string{"A=1", "AWS=2", "PATH=/d"}},
		{"the scheduler's host values win over the image's, its other values stay", EnvOptions{
			Host:        []string{"SLURM_JOB_ID=42", "PMIX_RANK=3", "PMI_RANK=3", "FOO=host"},
			Image:       []string{"SLURM_JOB_ID=7", "PMIX_RANK=0", "PMI_RANK=0", "FOO=img", "OMPI_MCA_btl=^openib", "SLURM_CONF=/img"},
			DefaultPath: "/d"},
			[]string{"SLURM_JOB_ID=42", "PMIX_RANK=3", "PMI_RANK=3", "FOO=img", "PATH=/d", "OMPI_MCA_btl=^openib", "SLURM_CONF=/img"}},
		{"the scheduler's host values win with --cleanenv and a deny list too", EnvOptions{
			Host:  []string{"SLURM_JOB_ID=42", "PBS_JOBID=9"},
			Image: []string{"SLURM_JOB_ID=7", "PBS_JOBID=1"}, DefaultPath: "/d", CleanEnv: true, Deny: []string{"SLURM_*", "PBS_*"}},
			[]string{"SLURM_JOB_ID=42", "PBS_JOBID=9", "PATH=/d"}},
		{"--env still wins over the scheduler's", EnvOptions{
			Host: []string{"SLURM_JOB_ID=42"}, Image: []string{"SLURM_JOB_ID=7"}, DefaultPath: "/d", Set: []string{"SLURM_JOB_ID=5"}},
			[]string{"SLURM_JOB_ID=5", "PATH=/d"}},
		{"HPCRUNENV_K sets K over the image's, even with --cleanenv; --env wins", EnvOptions{
			Host:  []string{"HPCRUNENV_FOO=1", "HPCRUNENV_LANG=fr", "HPCRUNENV_LD_PRELOAD=/x.so", "HPCRUNENV_1BAD=x", "HPCRUNENV_=y", "HPCRUNENV_B=h"},
			Image: []string{"LANG=C", "FOO=img"}, DefaultPath: "/d", CleanEnv: true, Deny: []string{"FOO", "HPCRUNENV_*"},
			Set: []string{"B=set"}},
			[]string{"PATH=/d", "LANG=fr", "FOO=1", "LD_PRELOAD=/x.so", "B=set"}},
		{"HPCRUNENV_K passes not as itself", EnvOptions{Host: []string{"HPCRUNENV_A=1", "X=2"}, DefaultPath: "/d"},
			[]string{"X=2", "PATH=/d", "A=1"}},
		{"hpcrun's marks over the image's and the host's; HPCRUNENV_ and --env over them", EnvOptions{
			Host:  []string{"HPCRUN_CONTAINER=outer", "PS1=$ ", "HPCRUNENV_PS1=> "},
			Image: []string{"HPCRUN_IMAGE=img"}, DefaultPath: "/d",
			Marks: []string{"HPCRUN_CONTAINER=1", "HPCRUN_IMAGE=py3.tar", "PS1=(hpcrun) $ "}, Set: []string{"HPCRUN_IMAGE=mine"}},
			[]string{"HPCRUN_CONTAINER=1", "PS1=> ", "PATH=/d", "HPCRUN_IMAGE=mine"}},
		{"image may set LD_LIBRARY_PATH", EnvOptions{Host: host[:7], Image: []string{"LD_LIBRARY_PATH=/usr/local/cuda/lib64"}, DefaultPath: "/d", CleanEnv: true},
			[]string{"HOME=/home/a", "USER=a", "TERM=xterm", "PATH=/d", "LD_LIBRARY_PATH=/usr/local/cuda/lib64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ContainerEnv(tc.o); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestIsSchedulerVar(t *testing.T) {
	for _, k := range []string{"SLURM_PROCID", "SLURMD_NODENAME", "PBS_NODEFILE", "PMI_RANK", "PMIX_NAMESPACE", "OMPI_COMM_WORLD_RANK"} {
		if !IsSchedulerVar(k) {
			t.Errorf("%s is not a scheduler variable", k)
		}
	}
	for _, k := range []string{"HOME", "XSLURM_X", "PATH", "OMP_NUM_THREADS", "PMIRANDOM"} {
		if IsSchedulerVar(k) {
			t.Errorf("%s taken for a scheduler variable", k)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	got, err := ParseEnvFile("f", []byte("# comment\n\nA=1\nexport B=two words\nC=\"quoted\"\nD='single'\nE=\nF=a=b\n"))
	want := []string{"A=1", "B=two words", "C=quoted", "D=single", "E=", "F=a=b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{"NOEQUALS\n", "=x\n", "1A=x\n", "A B=x\n"} {
		if _, err := ParseEnvFile("f", []byte("OK=1\n"+bad)); err == nil || !strings.HasPrefix(err.Error(), "f:2:") {
			t.Errorf("%q: err = %v, want f:2:", bad, err)
		}
	}
}

func TestCheckEnvEntry(t *testing.T) {
	for _, ok := range []string{"A=1", "A=", "A", "_x9=y"} {
		if err := CheckEnvEntry(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "=1", "9A=1", "A-B=1"} {
		if err := CheckEnvEntry(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
