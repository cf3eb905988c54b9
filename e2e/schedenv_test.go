package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// srun --mpi=pmix -n 2 hpcrun --image IMAGE, where the image's Env sets
// SLURM_JOB_ID and PMIX_RANK (as an image built inside a job may): each
// task sees the step's values, not the image's, so srun and MPI inside
// find their job. The image's other variables, OMPI_MCA_* defaults
// included, still apply.
func TestSchedulerEnvWinsOverImage(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	dir := tempDirOwned(t)
	image := genImage{
		env:    []string{"PATH=/bin", "SLURM_JOB_ID=999999", "PMIX_RANK=77", "OMPI_MCA_image_default=kept"},
		layers: [][]byte{busyboxLayer(t)},
	}.oci(t, "v1").writeTar(t, filepath.Join(dir, "sched-env.tar"))
	r, _ := srunMPI(t, 2, nil, image, "sh", "-c",
		`echo "task $SLURM_PROCID job=$SLURM_JOB_ID host-job=$SLURM_JOBID rank=$PMIX_RANK mca=$OMPI_MCA_image_default"`)
	if r.code != 0 {
		t.Fatalf("srun: %s", r)
	}
	got := lines(r.stdout)
	if len(got) != 2 {
		t.Fatalf("want a line from each of 2 tasks: %s", r)
	}
	for _, l := range got {
		var task, job, hostJob, rank, mca string
		for _, f := range strings.Fields(l) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "job":
				job = v
			case "host-job":
				hostJob = v
			case "rank":
				rank = v
			case "mca":
				mca = v
			}
		}
		task = strings.Fields(l)[1]
		if job == "999999" || job != hostJob || job == "" {
			t.Errorf("task %s: SLURM_JOB_ID=%q, want the step's (SLURM_JOBID=%q), not the image's 999999", task, job, hostJob)
		}
		if rank != task {
			t.Errorf("task %s: PMIX_RANK=%q, want the task's rank, not the image's 77", task, rank)
		}
		if mca != "kept" {
			t.Errorf("task %s: the image's OMPI_MCA_image_default=%q, want kept (the host sets none)", task, mca)
		}
	}
}
