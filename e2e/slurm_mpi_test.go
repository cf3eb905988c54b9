package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MPI jobs under Slurm: srun --mpi=pmix starts the ranks, each task an
// hpcrun, and Slurm's PMIx server wires them up. The image is Debian 12 with
// its Open MPI 4.1.4, built against the PMIx 4.2.2 that Slurm's mpi/pmix
// plugin loads on this Debian 12 host (examples/mkmpi.sh), with
// examples/mpi/hello.c as /hello.

var mpiImagePath = "/var/tmp/hpcrun-e2e/mpi-" + sourcesHash("examples/mkmpi.sh", "examples/mpi/hello.c", "examples/mkimage.sh") + ".tar"

// mpiImage returns the Debian + Open MPI image (examples/mkmpi.sh takes
// about a minute and a half).
func mpiImage(t *testing.T) string { return mpiBuild.get(t) }

// mpiRank is one rank's line of /hello.
type mpiRank struct {
	rank, size, pid     int
	host, pidns, userns string
}

var mpiRankLine = regexp.MustCompile(`(?m)^rank (\d+) size (\d+) host (\S+) pidns (\S+) userns (\S+) pid (\d+)$`)

// mpiRanks parses the rank lines of /hello's output, by rank; a rank that
// printed twice is an error.
func mpiRanks(t *testing.T, out string) map[int]mpiRank {
	t.Helper()
	ranks := map[int]mpiRank{}
	for _, m := range mpiRankLine.FindAllStringSubmatch(out, -1) {
		r := mpiRank{host: m[3], pidns: m[4], userns: m[5]}
		r.rank, _ = strconv.Atoi(m[1])
		r.size, _ = strconv.Atoi(m[2])
		r.pid, _ = strconv.Atoi(m[6])
		if _, dup := ranks[r.rank]; dup {
			t.Errorf("rank %d reported twice", r.rank)
		}
		ranks[r.rank] = r
	}
	return ranks
}

// distinct is the sorted set of what f gives for each rank.
func distinct(ranks map[int]mpiRank, f func(mpiRank) string) []string {
	set := map[string]bool{}
	for _, r := range ranks {
		set[f(r)] = true
	}
	var s []string
	for k := range set {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// srunMPI runs `srun --mpi=pmix -N1 -n N hpcrun --image IMAGE CMD...` as the
// test user, with env, from a directory of its own, with the default cache
// and state dirs. The job is cancelled if
// it outlives the test; if the test fails, the run and what the Slurm daemons
// logged about the job are printed.
func srunMPI(t *testing.T, n int, env []string, image string, cmd ...string) (result, time.Duration) {
	t.Helper()
	name := fmt.Sprintf("hpcrun-mpi-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
	var r result
	t.Cleanup(func() {
		exec.Command("scancel", "--name="+name).Run()
		if t.Failed() {
			// slurmctld keeps an ended job for MinJobAge (30 s).
			ids, _ := exec.Command("squeue", "-h", "-t", "all", "--name="+name, "-o", "%i").Output()
			t.Logf("%s\n%s", r, slurmLogs(lines(string(ids))...))
		}
	})
	args := append([]string{"--mpi=pmix", "--job-name=" + name, "--time=3", "--kill-on-bad-exit=1",
		"-N1", "-n", strconv.Itoa(n), binPath, "--image", image}, cmd...)
	start := time.Now()
	r = runRaw(opts{dir: tempDirOwned(t), env: env, timeout: 4 * time.Minute}, "srun", args...)
	return r, time.Since(start)
}

// uncache removes image from the default cache of every task of an
// `srun -N1 -n N` step, as the test user (hpcrun rmi): the next step
// starts cold.
func uncache(t *testing.T, n int, image string) {
	t.Helper()
	r := runRaw(opts{dir: tempDirOwned(t), env: []string{"HPCRUN=" + binPath, "IMAGE=" + image}, timeout: time.Minute},
		"srun", "-N1", "-n", strconv.Itoa(n), "sh", "-c", `$HPCRUN rmi "$IMAGE" >/dev/null 2>&1; ! $HPCRUN images | grep -q "$IMAGE"`)
	if r.code != 0 {
		t.Fatalf("removing %s from the cache: %s", image, r)
	}
}

// srun --mpi=pmix -n 4 hpcrun ... /hello: an Open MPI job of four ranks on
// one node, each rank an hpcrun task.
//
// pmix: the ranks find Slurm's PMIx server from inside their containers and
// learn their rank and the job's size from it (a rank that missed it would
// be a singleton, rank 0 of 1), and rank 1 sends rank 0 4 MiB over TCP
// (OMPI_MCA_btl=self,tcp), intact. This works with a container per task.
//
// one container per node: the ranks of a step on a node share one container,
// as MPI's shared-memory transports need. All four report one pid namespace
// and one user namespace (not the host's), and rank 1's 4 MiB reach rank 0
// by the vader BTL's single-copy CMA (process_vm_readv of the peer, by its
// pid): OMPI_MCA_btl_vader_single_copy_mechanism=cma makes Open MPI abort
// rather than fall back, and /hello says "cma transfer ok" only when vader's
// mechanism is still cma and the data is intact. And PMIx's shared-memory
// store under PMIX_SERVER_TMPDIR (the slurmd's spool dir) is visible inside:
// otherwise each rank prints a "PMIX ERROR" from gds/ds12 and falls back on
// fetching the job's data from the server.
//
// With a container per task, vader cannot work at all: Open MPI 4.1 refuses
// CMA between user namespaces (with cma forced it aborts in MPI_Init: "CMA
// support is not available due to different user namespaces"), and even a
// copy through the shared segments crashes, because opal's mmap shmem
// attaches a peer's segment only when the peer's pid differs from its own,
// and each rank is pid 5 or 6 in its own pid namespace.
func TestSlurmMPI(t *testing.T) {
	t.Parallel()
	slurmUp(t)
	image := mpiImage(t)
	hostUserns, _ := os.Readlink("/proc/self/ns/user")
	hostPidns, _ := os.Readlink("/proc/self/ns/pid")
	const n = 4

	// checkRanks checks that ranks 0..n-1 each reported once, in a job of
	// size n; it says whether they did.
	checkRanks := func(t *testing.T, r result) bool {
		t.Helper()
		ranks := mpiRanks(t, r.stdout)
		ok := len(ranks) == n
		for i := range n {
			if rk, found := ranks[i]; !found || rk.size != n {
				ok = false
			}
		}
		if !ok {
			t.Errorf("want ranks 0 to %d, each of size %d; got %d rank lines", n-1, n, len(ranks))
		}
		// The result of a collective, on every rank.
		for i := range n {
			if want := fmt.Sprintf("allreduce rank %d sum %d\n", i, n*(n+1)/2); !strings.Contains(r.stdout, want) {
				t.Errorf("rank %d: want %q", i, strings.TrimSpace(want))
				ok = false
			}
		}
		return ok
	}

	// Cold (the image in no task's cache), then warm.
	for _, phase := range []string{"cold", "warm"} {
		t.Run("pmix "+phase, func(t *testing.T) {
			if phase == "cold" {
				uncache(t, n, image)
			}
			r, took := srunMPI(t, n, []string{"OMPI_MCA_btl=self,tcp"}, image, "/hello", "--any")
			t.Logf("srun --mpi=pmix -n %d hpcrun --image mpi.tar /hello --any, %s: exit %d in %v", n, phase, r.code, took.Round(10*time.Millisecond))
			checkRanks(t, r)
			if !strings.Contains(r.stdout, "transfer ok (4194304 bytes intact") {
				t.Errorf("rank 0 did not get rank 1's 4 MiB intact over TCP")
			}
			if r.err != nil || r.code != 0 {
				t.Errorf("want exit 0, got %d (%v)", r.code, r.err)
			}
		})
	}

	t.Run("one container per node", func(t *testing.T) {
		env := []string{"OMPI_MCA_btl=self,vader", "OMPI_MCA_btl_vader_single_copy_mechanism=cma"}
		r, took := srunMPI(t, n, env, image, "/hello")
		t.Logf("srun --mpi=pmix -n %d hpcrun /hello over vader with cma: exit %d in %v", n, r.code, took.Round(10*time.Millisecond))
		if checkRanks(t, r) {
			ranks := mpiRanks(t, r.stdout)
			pidns := distinct(ranks, func(r mpiRank) string { return r.pidns })
			userns := distinct(ranks, func(r mpiRank) string { return r.userns })
			pids := distinct(ranks, func(r mpiRank) string { return strconv.Itoa(r.pid) })
			if len(pidns) != 1 || len(userns) != 1 {
				t.Errorf("want the %d ranks in one pid and one user namespace, got pid namespaces %v, user namespaces %v", n, pidns, userns)
			}
			if len(pids) != n {
				t.Errorf("want %d distinct pids, got %v", n, pids)
			}
			if pidns[0] == hostPidns || userns[0] == hostUserns {
				t.Errorf("the ranks run in the host's namespaces (%s, %s), not a container's", hostPidns, hostUserns)
			}
		}
		if !strings.Contains(r.stdout, "cma transfer ok (single copy mechanism cma, 4194304 bytes)") {
			t.Errorf("no CMA transfer from rank 1 to rank 0")
		}
		if strings.Contains(r.stderr, "different user namespaces") {
			t.Errorf("Open MPI found the ranks in different user namespaces")
		}
		if strings.Contains(r.stderr, "PMIX ERROR") {
			t.Errorf("PMIx failed inside the container: is PMIX_SERVER_TMPDIR (the slurmd spool's pmix.JOB.STEP) bound?")
		}
		if r.err != nil || r.code != 0 {
			t.Errorf("want exit 0, got %d (%v)", r.code, r.err)
		}
	})
}
