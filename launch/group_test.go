package launch

import (
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/jobs"
)

func TestJoinGroup(t *testing.T) {
	step := jobs.FromEnv([]string{"SLURM_JOB_ID=313", "SLURM_STEP_ID=2", "SLURM_PROCID=1", "SLURM_NODEID=0", "SLURM_STEP_TASKS_PER_NODE=4,2"})
	alone := jobs.FromEnv([]string{"SLURM_JOB_ID=313", "SLURM_STEP_ID=2", "SLURM_NODEID=1", "SLURM_STEP_TASKS_PER_NODE=4,1"})
	batch := jobs.FromEnv([]string{"SLURM_JOB_ID=313", "SLURM_NTASKS_PER_NODE=4"})
	mpirun := jobs.FromEnv([]string{"PBS_JOBID=7.srv", "OMPI_COMM_WORLD_LOCAL_SIZE=8"})
	none := jobs.FromEnv(nil)
	tests := []struct {
		name string
		r    Request
		job  jobs.Job
		want Group
		err  string
	}{
		{"srun, 4 tasks on this node", Request{}, step, Group{"slurm-313.2", 4, true}, ""},
		{"--no-join", Request{NoJoin: true}, step, Group{}, ""},
		{"one task on this node", Request{}, alone, Group{}, ""},
		{"the batch script", Request{}, batch, Group{}, ""},
		{"no scheduler", Request{}, none, Group{}, ""},
		{"a named run", Request{Name: "db"}, step, Group{}, ""},
		{"detached", Request{Detach: true}, step, Group{}, ""},
		{"--join-count in a step", Request{JoinCount: 2}, step, Group{"slurm-313.2", 2, true}, ""},
		{"--join-count alone in a step", Request{JoinCount: 2}, alone, Group{"slurm-313.2", 2, true}, ""},
		{"--join-tag under mpirun", Request{JoinTag: "sim"}, mpirun, Group{"sim", 8, false}, ""},
		{"--join-tag and --join-count", Request{JoinTag: "sim", JoinCount: 3}, none, Group{"sim", 3, false}, ""},
		{"--join-tag with no count", Request{JoinTag: "sim"}, none, Group{}, "give --join-count"},
		{"--join-count with no tag", Request{JoinCount: 3}, none, Group{}, "needs --join-tag"},
		{"a bad tag", Request{JoinTag: "a/b", JoinCount: 2}, none, Group{}, "bad --join-tag"},
		{"--no-join with a tag", Request{NoJoin: true, JoinTag: "x"}, step, Group{}, "cannot be used with"},
		{"a tag and --name", Request{JoinTag: "x", JoinCount: 2, Name: "n"}, none, Group{}, "cannot be used with --name"},
		{"a negative count", Request{JoinCount: -1}, step, Group{}, "bad --join-count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := JoinGroup(&tc.r, tc.job)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
