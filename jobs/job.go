package jobs

import (
	"strconv"
	"strings"
)

// Scheduler is the batch system a job runs under.
type Scheduler string

const (
	None  Scheduler = "none"
	Slurm Scheduler = "slurm"
	PBS   Scheduler = "pbs"
)

// Job is what the environment says about the batch job hpcrun runs in.
// Unknown facts are "" (or -1 for the local rank and 0 for the local size).
type Job struct {
	Scheduler Scheduler
	// Flavor tells PBS apart: "torque", or "pbspro" (OpenPBS and PBS Pro,
	// one code base); "" for Slurm and none.
	Flavor    string
	ID        string // the job id: 313 (Slurm), 1234.server (PBS)
	Step      string // the Slurm step id; "" in the batch script and under PBS
	ArrayJob  string // the array's job id: SLURM_ARRAY_JOB_ID, PBS_ARRAY_ID
	ArrayTask string // this job's index in the array
	Rank      string // the task's rank in the step (SLURM_PROCID, or the MPI launcher's)
	LocalRank int    // the task's rank on this node; -1 when unknown
	LocalSize int    // how many tasks of the step run on this node; 0 when unknown
	SubmitDir string // where the job was submitted from
	TmpDir    string // the job's temporary dir on this node: $SLURM_TMPDIR, else $TMPDIR
	// Files are the scheduler's files that the job's variables name, to
	// be visible inside: PBS_NODEFILE, PBS_GPUFILE.
	Files []string
	// Dirs are the scheduler's dirs that the job's processes talk to it
	// through: the PMIx server's (PMIX_SERVER_TMPDIR, PMIX_SYSTEM_TMPDIR,
	// under Slurm in its spool), and munge's socket dir under Slurm.
	Dirs []string

	// Sources says which variable supplied each fact, in the order they
	// were found, for -v.
	Sources []Source
}

// Source is one fact and the variables that supplied it.
type Source struct {
	Fact, Value, From string
}

// env looks variables up in an environment given as K=V strings; the last
// of duplicates wins, as for getenv.
type env map[string]string

func newEnv(environ []string) env {
	e := make(env, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			e[k] = v
		}
	}
	return e
}

// first is the first of keys that is set and not empty, and its name.
func (e env) first(keys ...string) (value, key string) {
	for _, k := range keys {
		if v := e[k]; v != "" {
			return v, k
		}
	}
	return "", ""
}

// FromEnv works out the batch job from the environment of hpcrun:
// Slurm when SLURM_JOB_ID (or the older SLURM_JOBID) is set, PBS when
// PBS_JOBID is, else none. Job.Sources names each variable it read.
func FromEnv(environ []string) Job {
	e := newEnv(environ)
	j := Job{Scheduler: None, LocalRank: -1}
	note := func(fact, value string, from ...string) {
		if value != "" {
			j.Sources = append(j.Sources, Source{fact, value, strings.Join(from, ", ")})
		}
	}
	// take sets *dst from the first of keys that is set, noting where
	// it came from.
	take := func(dst *string, fact string, keys ...string) {
		v, k := e.first(keys...)
		if v != "" {
			*dst = v
			note(fact, v, k)
		}
	}
	switch {
	case e["SLURM_JOB_ID"] != "" || e["SLURM_JOBID"] != "":
		j.Scheduler = Slurm
		take(&j.ID, "job id", "SLURM_JOB_ID", "SLURM_JOBID")
		take(&j.Step, "step", "SLURM_STEP_ID", "SLURM_STEPID")
		take(&j.ArrayJob, "array job", "SLURM_ARRAY_JOB_ID")
		take(&j.ArrayTask, "array task", "SLURM_ARRAY_TASK_ID")
		take(&j.Rank, "rank", "SLURM_PROCID")
		take(&j.SubmitDir, "submit dir", "SLURM_SUBMIT_DIR")
		take(&j.TmpDir, "tmp dir", "SLURM_TMPDIR", "TMPDIR")
		if v, k := e.first("SLURM_LOCALID"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				j.LocalRank = n
				note("local rank", v, k)
			}
		}
		// In a step, SLURM_STEP_TASKS_PER_NODE ("2(x3),1") indexed by
		// SLURM_NODEID; else the job's SLURM_NTASKS_PER_NODE, which is
		// set only when asked for.
		if n := tasksOnNode(e["SLURM_STEP_TASKS_PER_NODE"], e["SLURM_NODEID"]); n > 0 {
			j.LocalSize = n
			note("local size", strconv.Itoa(n), "SLURM_STEP_TASKS_PER_NODE", "SLURM_NODEID")
		} else if n, err := strconv.Atoi(e["SLURM_NTASKS_PER_NODE"]); err == nil && n > 0 {
			j.LocalSize = n
			note("local size", e["SLURM_NTASKS_PER_NODE"], "SLURM_NTASKS_PER_NODE")
		}
	case e["PBS_JOBID"] != "":
		j.Scheduler = PBS
		j.Flavor = "pbspro"
		if strings.HasPrefix(strings.ToUpper(e["PBS_VERSION"]), "TORQUE") ||
			e["PBS_NUM_PPN"] != "" || e["PBS_ARRAYID"] != "" || e["PBS_VNODENUM"] != "" {
			j.Flavor = "torque"
		}
		take(&j.ID, "job id", "PBS_JOBID")
		take(&j.ArrayJob, "array job", "PBS_ARRAY_ID")
		take(&j.ArrayTask, "array task", "PBS_ARRAY_INDEX", "PBS_ARRAYID")
		if j.ArrayTask != "" && j.ArrayJob == "" {
			// Torque names no array id: 1234[5].server is task 5 of 1234[].server.
			if i, k := strings.Index(j.ID, "["), strings.Index(j.ID, "]"); i > 0 && k > i {
				j.ArrayJob = j.ID[:i+1] + j.ID[k:]
				note("array job", j.ArrayJob, "PBS_JOBID")
			}
		}
		take(&j.SubmitDir, "submit dir", "PBS_O_WORKDIR")
		for _, k := range []string{"PBS_NODEFILE", "PBS_GPUFILE"} {
			if v := e[k]; v != "" {
				j.Files = append(j.Files, v)
				note(strings.ToLower(strings.TrimPrefix(k, "PBS_")), v, k)
			}
		}
		// PBS Pro's MoM makes TMPDIR a per-job dir (/var/tmp/pbs.JOBID);
		// Torque's does when $tmpdir is configured.
		take(&j.TmpDir, "tmp dir", "TMPDIR")
		if v, k := e.first("PBS_NUM_PPN"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				j.LocalSize = n
				note("local size", v, k)
			}
		}
	default:
		take(&j.TmpDir, "tmp dir", "TMPDIR")
		return j
	}
	// The PMIx server of srun --mpi=pmix or of mpirun listens in these.
	for _, k := range []string{"PMIX_SERVER_TMPDIR", "PMIX_SYSTEM_TMPDIR"} {
		if v := e[k]; strings.HasPrefix(v, "/") {
			j.Dirs = append(j.Dirs, v)
			note(strings.ToLower(strings.ReplaceAll(k, "_", " ")), v, k)
		}
	}
	if j.Scheduler == Slurm {
		j.Dirs = append(j.Dirs, MungeDir) // srun and sbatch inside talk to munged
	}
	// An MPI launcher inside the job (mpirun, mpiexec) says more about
	// the task than the batch system does.
	if j.Rank == "" {
		take(&j.Rank, "rank", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
	}
	if j.LocalRank < 0 {
		if v, k := e.first("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				j.LocalRank = n
				note("local rank", v, k)
			}
		}
	}
	if v, k := e.first("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"); v != "" && j.LocalSize == 0 {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			j.LocalSize = n
			note("local size", v, k)
		}
	}
	return j
}

// MungeDir is where munged's socket is, which Slurm's commands use.
const MungeDir = "/run/munge"

// tasksOnNode reads Slurm's compressed tasks-per-node list ("2(x3),1":
// 2 tasks on each of the first three nodes, then 1) at node index node.
func tasksOnNode(list, node string) int {
	idx, err := strconv.Atoi(node)
	if list == "" || err != nil || idx < 0 {
		return 0
	}
	for _, part := range strings.Split(list, ",") {
		count, reps := part, "1"
		if i := strings.Index(part, "(x"); i > 0 && strings.HasSuffix(part, ")") {
			count, reps = part[:i], part[i+2:len(part)-1]
		}
		c, err1 := strconv.Atoi(count)
		r, err2 := strconv.Atoi(reps)
		if err1 != nil || err2 != nil || c < 0 || r < 1 {
			return 0
		}
		if idx < r {
			return c
		}
		idx -= r
	}
	return 0
}

// Name is a name for the task's container that is unique on the node
// while the task runs: slurm-JOB.STEP.RANK ("batch" for the batch script's
// step), pbs-JOB.RANK; "" outside a batch job.
func (j Job) Name() string {
	rank := j.Rank
	if rank == "" {
		rank = "0"
	}
	switch j.Scheduler {
	case Slurm:
		step := j.Step
		if step == "" {
			step = "batch"
		}
		return "slurm-" + j.ID + "." + step + "." + rank
	case PBS:
		// 1234[5].server → 1234-5.server: brackets are no use in a name.
		id := strings.NewReplacer("[", "-", "]", "").Replace(j.ID)
		return "pbs-" + id + "." + rank
	}
	return ""
}
