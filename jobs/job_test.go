package jobs

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The environments below are as the schedulers set them. The Slurm ones
// were captured from Slurm 22.05 on the test cluster (scripts/slurm-up.sh):
// a batch script, a task of `srun -n 2` and an array task.
var (
	slurmBatch = []string{
		"SLURMD_NODENAME=vm1", "SLURM_CLUSTER_NAME=hpcrun", "SLURM_CPUS_ON_NODE=1", "SLURM_GTIDS=0",
		"SLURM_JOBID=313", "SLURM_JOB_CPUS_PER_NODE=1(x2)", "SLURM_JOB_ID=313", "SLURM_JOB_NAME=probe.sh",
		"SLURM_JOB_NODELIST=vm[1-2]", "SLURM_JOB_NUM_NODES=2", "SLURM_LOCALID=0", "SLURM_NNODES=2",
		"SLURM_NODEID=0", "SLURM_NPROCS=2", "SLURM_NTASKS=2", "SLURM_PROCID=0",
		"SLURM_SUBMIT_DIR=/tmp/envprobe", "SLURM_SUBMIT_HOST=vm", "SLURM_TASKS_PER_NODE=1(x2)",
		"SLURM_TASK_PID=18502", "TMPDIR=/tmp",
	}
	slurmStep = []string{
		"SLURMD_NODENAME=vm2", "SLURM_DISTRIBUTION=cyclic", "SLURM_GTIDS=1", "SLURM_JOBID=313",
		"SLURM_JOB_ID=313", "SLURM_LOCALID=0", "SLURM_NNODES=2", "SLURM_NODEID=1", "SLURM_NTASKS=2",
		"SLURM_PROCID=1", "SLURM_STEPID=0", "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=2",
		"SLURM_STEP_TASKS_PER_NODE=1(x2)", "SLURM_SUBMIT_DIR=/tmp/envprobe", "SLURM_TASKS_PER_NODE=1(x2)",
		"TMPDIR=/tmp",
	}
	slurmArray = []string{
		"SLURM_ARRAY_JOB_ID=314", "SLURM_ARRAY_TASK_COUNT=2", "SLURM_ARRAY_TASK_ID=0",
		"SLURM_ARRAY_TASK_MAX=1", "SLURM_ARRAY_TASK_MIN=0", "SLURM_ARRAY_TASK_STEP=1", "SLURM_JOBID=315",
		"SLURM_JOB_ID=315", "SLURM_LOCALID=0", "SLURM_NODEID=0", "SLURM_PROCID=0",
		"SLURM_SUBMIT_DIR=/home/u/run", "TMPDIR=/tmp",
	}
	// An srun step with 3 tasks on the first node and 1 on the second,
	// seen from the second task of the first node, under a site that
	// gives each job its own SLURM_TMPDIR.
	slurmUneven = []string{
		"SLURM_JOB_ID=99", "SLURM_STEP_ID=2", "SLURM_PROCID=1", "SLURM_LOCALID=1", "SLURM_NODEID=0",
		"SLURM_STEP_TASKS_PER_NODE=3,1", "SLURM_TMPDIR=/local/slurm/99", "TMPDIR=/tmp",
	}
	// OpenPBS / PBS Pro: a subjob of an array, as its MoM sets it.
	pbsPro = []string{
		"PBS_ENVIRONMENT=PBS_BATCH", "PBS_JOBID=1234[5].pbs01", "PBS_ARRAY_ID=1234[].pbs01",
		"PBS_ARRAY_INDEX=5", "PBS_JOBNAME=sim", "PBS_JOBDIR=/home/u", "PBS_NODEFILE=/var/spool/pbs/aux/1234[5].pbs01",
		"PBS_O_HOST=login1", "PBS_O_WORKDIR=/home/u/run", "PBS_QUEUE=workq", "PBS_TASKNUM=1",
		"PBS_MOMPORT=15003", "NCPUS=4", "OMP_NUM_THREADS=4", "TMPDIR=/var/tmp/pbs.1234[5].pbs01",
	}
	// Torque: an array task; Torque names only the index.
	torque = []string{
		"PBS_ENVIRONMENT=PBS_BATCH", "PBS_JOBID=77[3].torque1", "PBS_ARRAYID=3", "PBS_JOBNAME=sim-3",
		"PBS_NODEFILE=/var/spool/torque/aux/77[3].torque1", "PBS_NUM_NODES=1", "PBS_NUM_PPN=8", "PBS_NP=8",
		"PBS_O_WORKDIR=/home/u/run", "PBS_QUEUE=batch", "PBS_TASKNUM=1", "PBS_NODENUM=0", "PBS_VNODENUM=0",
		"PBS_VERSION=TORQUE-6.1.3", "TMPDIR=/tmp/77[3].torque1",
	}
	// Open MPI's mpirun inside a PBS job.
	pbsMPI = append([]string{"OMPI_COMM_WORLD_RANK=6", "OMPI_COMM_WORLD_LOCAL_RANK=2", "OMPI_COMM_WORLD_LOCAL_SIZE=4"},
		"PBS_JOBID=9.srv", "PBS_O_WORKDIR=/w")
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		want    Job
		sources map[string]string // fact -> variables
	}{
		{"none", []string{"HOME=/home/u", "TMPDIR=/scratch/tmp"}, Job{Scheduler: None, LocalRank: -1, TmpDir: "/scratch/tmp"},
			map[string]string{"tmp dir": "TMPDIR"}},
		{"slurm batch", slurmBatch, Job{Scheduler: Slurm, ID: "313", Rank: "0", LocalRank: 0, SubmitDir: "/tmp/envprobe", TmpDir: "/tmp"},
			map[string]string{"job id": "SLURM_JOB_ID", "local rank": "SLURM_LOCALID"}},
		{"slurm step", slurmStep, Job{Scheduler: Slurm, ID: "313", Step: "0", Rank: "1", LocalRank: 0, LocalSize: 1, SubmitDir: "/tmp/envprobe", TmpDir: "/tmp"},
			map[string]string{"step": "SLURM_STEP_ID", "local size": "SLURM_STEP_TASKS_PER_NODE, SLURM_NODEID", "rank": "SLURM_PROCID"}},
		{"slurm array", slurmArray, Job{Scheduler: Slurm, ID: "315", ArrayJob: "314", ArrayTask: "0", Rank: "0", LocalRank: 0, SubmitDir: "/home/u/run", TmpDir: "/tmp"},
			map[string]string{"array job": "SLURM_ARRAY_JOB_ID", "array task": "SLURM_ARRAY_TASK_ID"}},
		{"slurm uneven", slurmUneven, Job{Scheduler: Slurm, ID: "99", Step: "2", Rank: "1", LocalRank: 1, LocalSize: 3, TmpDir: "/local/slurm/99"},
			map[string]string{"tmp dir": "SLURM_TMPDIR"}},
		{"srun --mpi=pmix", append(slurmStep[:len(slurmStep):len(slurmStep)], "PMIX_SERVER_TMPDIR=/var/spool/slurmd/pmix.313.0/", "PMIX_SYSTEM_TMPDIR=/tmp", "PMIX_RANK=1"),
			Job{Scheduler: Slurm, ID: "313", Step: "0", Rank: "1", LocalRank: 0, LocalSize: 1, SubmitDir: "/tmp/envprobe", TmpDir: "/tmp",
				Dirs: []string{"/var/spool/slurmd/pmix.313.0/", "/tmp"}},
			map[string]string{"pmix server tmpdir": "PMIX_SERVER_TMPDIR", "pmix system tmpdir": "PMIX_SYSTEM_TMPDIR"}},
		{"old slurm", []string{"SLURM_JOBID=5", "SLURM_STEPID=1"}, Job{Scheduler: Slurm, ID: "5", Step: "1", LocalRank: -1},
			map[string]string{"job id": "SLURM_JOBID", "step": "SLURM_STEPID"}},
		{"pbs pro", pbsPro, Job{Scheduler: PBS, Flavor: "pbspro", ID: "1234[5].pbs01", ArrayJob: "1234[].pbs01", ArrayTask: "5", LocalRank: -1, SubmitDir: "/home/u/run", TmpDir: "/var/tmp/pbs.1234[5].pbs01",
			Files: []string{"/var/spool/pbs/aux/1234[5].pbs01"}},
			map[string]string{"job id": "PBS_JOBID", "array task": "PBS_ARRAY_INDEX", "submit dir": "PBS_O_WORKDIR", "nodefile": "PBS_NODEFILE"}},
		{"torque", torque, Job{Scheduler: PBS, Flavor: "torque", ID: "77[3].torque1", ArrayJob: "77[].torque1", ArrayTask: "3", LocalRank: -1, LocalSize: 8, SubmitDir: "/home/u/run", TmpDir: "/tmp/77[3].torque1",
			Files: []string{"/var/spool/torque/aux/77[3].torque1"}},
			map[string]string{"array task": "PBS_ARRAYID", "array job": "PBS_JOBID", "local size": "PBS_NUM_PPN"}},
		{"mpirun under pbs", pbsMPI, Job{Scheduler: PBS, Flavor: "pbspro", ID: "9.srv", Rank: "6", LocalRank: 2, LocalSize: 4, SubmitDir: "/w"},
			map[string]string{"rank": "OMPI_COMM_WORLD_RANK", "local rank": "OMPI_COMM_WORLD_LOCAL_RANK", "local size": "OMPI_COMM_WORLD_LOCAL_SIZE"}},
		{"empty job id", []string{"SLURM_JOB_ID=", "PBS_JOBID="}, Job{Scheduler: None, LocalRank: -1}, nil},
		{"last duplicate wins", []string{"SLURM_JOB_ID=1", "SLURM_JOB_ID=2"}, Job{Scheduler: Slurm, ID: "2", LocalRank: -1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FromEnv(tc.env)
			sources := got.Sources
			got.Sources = nil
			if tc.want.Scheduler == Slurm {
				tc.want.Dirs = append(tc.want.Dirs, MungeDir)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("FromEnv:\n got %+v\nwant %+v", got, tc.want)
			}
			for fact, from := range tc.sources {
				found := false
				for _, s := range sources {
					if s.Fact == fact {
						found = true
						if s.From != from {
							t.Errorf("%s from %q, want %q", fact, s.From, from)
						}
					}
				}
				if !found {
					t.Errorf("no source for %s in %+v", fact, sources)
				}
			}
		})
	}
}

func TestTasksOnNode(t *testing.T) {
	tests := []struct {
		list, node string
		want       int
	}{
		{"1(x2)", "0", 1}, {"1(x2)", "1", 1}, {"1(x2)", "2", 0},
		{"2(x3),1", "2", 2}, {"2(x3),1", "3", 1}, {"4", "0", 4},
		{"", "0", 0}, {"2", "", 0}, {"x", "0", 0}, {"2(x0)", "0", 0}, {"2(x", "0", 0}, {"3,1", "-1", 0},
	}
	for _, tc := range tests {
		if got := tasksOnNode(tc.list, tc.node); got != tc.want {
			t.Errorf("tasksOnNode(%q, %q) = %d, want %d", tc.list, tc.node, got, tc.want)
		}
	}
}

func TestJobName(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{nil, ""},
		{slurmBatch, "slurm-313.batch.0"},
		{slurmStep, "slurm-313.0.1"},
		{[]string{"SLURM_JOB_ID=7"}, "slurm-7.batch.0"},
		{pbsPro, "pbs-1234-5.pbs01.0"},
		{pbsMPI, "pbs-9.srv.6"},
	}
	for _, tc := range tests {
		if got := FromEnv(tc.env).Name(); got != tc.want {
			t.Errorf("Name() of %q = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestChooseScratch(t *testing.T) {
	local := Dir{Exists: true, Writable: true, Free: 1 << 30, FS: "ext4", Local: true}
	tmpfs := Dir{Exists: true, Writable: true, Free: 1 << 30, FS: "tmpfs", Local: true}
	noexec := Dir{Exists: true, Writable: true, Free: 1 << 30, FS: "tmpfs", Local: true, NoExec: true}
	nfs := Dir{Exists: true, Writable: true, Free: 1 << 30, FS: "nfs"}
	readOnly := Dir{Exists: true, Free: 1 << 30, FS: "ext4", Local: true}
	site := Config{Scratch: Setting[string]{"/local/scratch", "/etc/hpcrun/config.yaml:2"}}
	tests := []struct {
		name     string
		conf     Config
		dirs     map[string]Dir
		want     string
		from     string // a part of From
		why, err string // a part of the Why joined, of the error
	}{
		{"configured", site, map[string]Dir{"/local/scratch": local, "/var/tmp": local}, "/local/scratch", "config.yaml:2", "", ""},
		{"configured missing", site, nil, "", "", "", "/local/scratch (set in /etc/hpcrun/config.yaml:2) does not exist"},
		{"configured unwritable", site, map[string]Dir{"/local/scratch": readOnly}, "", "", "", "is not writable"},
		{"configured noexec", site, map[string]Dir{"/local/scratch": noexec, "/var/tmp": local}, "", "", "", "(set in /etc/hpcrun/config.yaml:2) is on a filesystem mounted noexec"},
		{"var tmp", Config{}, map[string]Dir{"/var/tmp": local, "/tmp": tmpfs}, "/var/tmp", "the first usable of /var/tmp, /tmp: node-local ext4", "", ""},
		{"var tmp noexec", Config{}, map[string]Dir{"/var/tmp": noexec, "/tmp": tmpfs}, "/tmp", "node-local tmpfs", "/var/tmp is mounted noexec", ""},
		{"var tmp missing", Config{}, map[string]Dir{"/tmp": tmpfs}, "/tmp", "first usable", "/var/tmp does not exist", ""},
		{"var tmp on nfs", Config{}, map[string]Dir{"/var/tmp": nfs, "/tmp": tmpfs}, "/tmp", "first usable", "/var/tmp is on nfs, not node-local", ""},
		{"var tmp read-only", Config{}, map[string]Dir{"/var/tmp": readOnly, "/tmp": tmpfs}, "/tmp", "first usable", "/var/tmp is not writable", ""},
		{"all noexec", Config{}, map[string]Dir{"/var/tmp": noexec, "/tmp": noexec}, "", "", "",
			"no node-local dir for the image cache: /var/tmp is mounted noexec, /tmp is mounted noexec; set cache: or scratch: in the site config (/etc/hpcrun/config.yaml)"},
		{"all unusable", Config{}, map[string]Dir{"/var/tmp": nfs}, "", "", "", "/var/tmp is on nfs, not node-local, /tmp does not exist; set cache: or scratch:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probed := map[string]bool{}
			got, err := ChooseScratch(tc.conf, func(p string) Dir { probed[p] = true; return tc.dirs[p] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--cache") {
					t.Errorf("err = %q: want one line that names --cache", err)
				}
				return
			}
			if err != nil || got.Dir != tc.want || !strings.Contains(got.From, tc.from) {
				t.Fatalf("got %+v, %v; want %s from %q", got, err, tc.want, tc.from)
			}
			if w := strings.Join(got.Why, ", "); tc.why != "" && !strings.Contains(w, tc.why) || tc.why == "" && w != "" {
				t.Errorf("why = %q, want %q", w, tc.why)
			}
			for p := range probed {
				if p != tc.conf.Scratch.Value && !slices.Contains(Candidates, p) {
					t.Errorf("probed %s, which is neither configured nor a candidate", p)
				}
			}
		})
	}
}

func TestCheckCache(t *testing.T) {
	local := Dir{Exists: true, Writable: true, FS: "ext4", Local: true}
	noexec := Dir{Exists: true, Writable: true, FS: "tmpfs", Local: true, NoExec: true}
	tests := []struct {
		name string
		dir  string
		dirs map[string]Dir
		err  string
	}{
		{"local", "/scratch/u/cache", map[string]Dir{"/scratch/u/cache": local}, ""},
		{"noexec", "/tmp/c", map[string]Dir{"/tmp/c": noexec}, "the cache /tmp/c (from HPCRUN_CACHE) is on a filesystem mounted noexec"},
		{"missing below noexec", "/tmp/a/b", map[string]Dir{"/tmp": noexec}, "mounted noexec"},
		{"missing below local", "/scratch/a/b", map[string]Dir{"/scratch": local}, ""},
		{"nothing exists", "/x/y", nil, ""},
	}
	for _, tc := range tests {
		err := CheckCache(tc.dir, "HPCRUN_CACHE", func(p string) Dir { return tc.dirs[p] })
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: CheckCache(%s) = %v, want %q", tc.name, tc.dir, err, tc.err)
		}
	}
}

func TestProbeDir(t *testing.T) {
	d := ProbeDir(t.TempDir())
	if !d.Exists || !d.Writable || d.FS == "" || d.Free == 0 {
		t.Errorf("ProbeDir(a temp dir) = %+v", d)
	}
	if d := ProbeDir("/nonexistent/dir"); d.Exists {
		t.Errorf("ProbeDir(missing) = %+v", d)
	}
}
