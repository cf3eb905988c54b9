package main

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
		o    runOptions
		job  jobs.Job
		want group
		err  string
	}{
		{"srun, 4 tasks on this node", runOptions{}, step, group{"slurm-313.2", 4}, ""},
		{"--no-join", runOptions{noJoin: true}, step, group{}, ""},
		{"one task on this node", runOptions{}, alone, group{}, ""},
		{"the batch script", runOptions{}, batch, group{}, ""},
		{"no scheduler", runOptions{}, none, group{}, ""},
		{"a named run", runOptions{name: "db"}, step, group{}, ""},
		{"detached", runOptions{detach: true}, step, group{}, ""},
		{"--join-count in a step", runOptions{joinCount: 2}, step, group{"slurm-313.2", 2}, ""},
		{"--join-count alone in a step", runOptions{joinCount: 2}, alone, group{"slurm-313.2", 2}, ""},
		{"--join-tag under mpirun", runOptions{joinTag: "sim"}, mpirun, group{"sim", 8}, ""},
		{"--join-tag and --join-count", runOptions{joinTag: "sim", joinCount: 3}, none, group{"sim", 3}, ""},
		{"--join-tag with no count", runOptions{joinTag: "sim"}, none, group{}, "give --join-count"},
		{"--join-count with no tag", runOptions{joinCount: 3}, none, group{}, "needs --join-tag"},
		{"a bad tag", runOptions{joinTag: "a/b", joinCount: 2}, none, group{}, "bad --join-tag"},
		{"--no-join with a tag", runOptions{noJoin: true, joinTag: "x"}, step, group{}, "cannot be used with"},
		{"a tag and --name", runOptions{joinTag: "x", joinCount: 2, name: "n"}, none, group{}, "cannot be used with --name"},
		{"a negative count", runOptions{joinCount: -1}, step, group{}, "bad --join-count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := joinGroup(&tc.o, tc.job)
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
