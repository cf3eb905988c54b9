/*
 * hello.c: an MPI job that shows what its ranks share on a node.
 *
 * Each rank prints one line:
 *
 *   rank R size N host H pidns pid:[I] userns user:[J] pid P
 *
 * (the namespaces as readlink(/proc/self/ns/...) gives them, P as getpid()
 * gives it), so that ranks in one container show one pid and one user
 * namespace, and ranks in containers of their own show several.
 *
 * Then rank 1 sends rank 0 a 4 MiB buffer. Over Open MPI's shared-memory
 * BTL (vader, OMPI_MCA_btl=self,vader) a message that large goes by its
 * single-copy mechanism: with cma, rank 0 reads rank 1's buffer with
 * process_vm_readv(2), addressed by the pid rank 1 published of itself, which
 * only names rank 1 when both share a pid namespace. Before Open MPI's own
 * transfer, rank 0 tries process_vm_readv on rank 1 itself and says how that
 * went ("cma direct: ..."). Then the MPI transfer, checked word by word; rank 0
 * ends with
 *
 *   cma transfer ok (single copy mechanism cma, 4194304 bytes)
 *
 * only when the data arrived intact and vader's single_copy_mechanism (read
 * with MPI_T) is still cma, not a fallback ("emulated", "none": copies
 * through the shared segment). Anything else is a "FAIL: ..." line and exit
 * status 1. Open MPI 4.1 itself refuses cma between ranks in different user
 * namespaces: with OMPI_MCA_btl_vader_single_copy_mechanism=cma it aborts in
 * MPI_Init ("CMA support is not available due to different user
 * namespaces"), else it warns and falls back.
 *
 * Last, every rank takes part in an MPI_Allreduce of rank+1 and prints
 *
 *   allreduce rank R sum S
 *
 * (S is N(N+1)/2 on every rank when the collective works).
 *
 *   hello --any    the transfer may go by any BTL and mechanism (self,tcp
 *                  between containers); it must still arrive intact, and
 *                  rank 0 ends with "transfer ok (...)"
 *
 * Build: mpicc -O2 -o hello hello.c (examples/mkmpi.sh does, in the image).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define NBYTES (4u << 20)

static void ns(const char *name, char *out, size_t n)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/ns/%s", name);
	ssize_t len = readlink(path, out, n - 1);
	if (len < 0)
		snprintf(out, n, "?(%s)", strerror(errno));
	else
		out[len] = 0;
}

static uint64_t word(size_t i) { return (i + 1) * 0x9E3779B97F4A7C15ull ^ 0x5EEDC0FFEEull; }

/* vader_mechanism: btl_vader_single_copy_mechanism after MPI_Init, by name
 * ("cma", "none", ...), read through the MPI tool interface. */
static void vader_mechanism(char *out, int n)
{
	int provided, idx, count, val, verbosity, bind, scope, nitems, nl, dl;
	MPI_T_cvar_handle h;
	MPI_T_enum en;
	MPI_Datatype dt;
	char name[256], desc[1024];

	snprintf(out, n, "unknown");
	if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
		return;
	if (MPI_T_cvar_get_index("btl_vader_single_copy_mechanism", &idx) != MPI_SUCCESS) {
		snprintf(out, n, "unknown (no btl_vader_single_copy_mechanism variable)");
		goto done;
	}
	nl = sizeof name, dl = sizeof desc;
	if (MPI_T_cvar_get_info(idx, name, &nl, &verbosity, &dt, &en, desc, &dl, &bind, &scope) != MPI_SUCCESS ||
	    MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) != MPI_SUCCESS)
		goto done;
	if (MPI_T_cvar_read(h, &val) == MPI_SUCCESS) {
		snprintf(out, n, "%d", val);
		if (en != MPI_T_ENUM_NULL && MPI_T_enum_get_info(en, &nitems, name, &(int){sizeof name}) == MPI_SUCCESS) {
			for (int i = 0; i < nitems; i++) {
				int v, l = sizeof name;
				if (MPI_T_enum_get_item(en, i, &v, name, &l) == MPI_SUCCESS && v == val) {
					snprintf(out, n, "%s", name);
					break;
				}
			}
		}
	}
	MPI_T_cvar_handle_free(&h);
done:
	MPI_T_finalize();
}

int main(int argc, char **argv)
{
	int rank, size, failed = 0, any = argc > 1 && strcmp(argv[1], "--any") == 0;
	char host[256] = "?", pidns[64], userns[64];

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	gethostname(host, sizeof host);
	ns("pid", pidns, sizeof pidns);
	ns("user", userns, sizeof userns);
	printf("rank %d size %d host %s pidns %s userns %s pid %d\n", rank, size, host, pidns, userns, (int)getpid());
	fflush(stdout);

	if (size < 2) {
		MPI_Finalize();
		return 0;
	}
	uint64_t *buf = malloc(NBYTES);
	if (buf == NULL) {
		perror("malloc");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	size_t nw = NBYTES / sizeof *buf;
	for (size_t i = 0; i < nw; i++)
		buf[i] = rank == 1 ? word(i) : 0;

	/* Rank 1 tells rank 0 its pid and where its buffer is; rank 0 reads the
	 * first page with process_vm_readv, as vader's cma would. */
	long where[2] = {(long)getpid(), (long)(uintptr_t)buf};
	if (rank == 1)
		MPI_Send(where, 2, MPI_LONG, 0, 1, MPI_COMM_WORLD);
	if (rank == 0) {
		uint64_t page[512] = {0};
		MPI_Recv(where, 2, MPI_LONG, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		struct iovec local = {page, sizeof page}, remote = {(void *)(uintptr_t)where[1], sizeof page};
		ssize_t got = process_vm_readv((pid_t)where[0], &local, 1, &remote, 1, 0);
		int ok = got == (ssize_t)sizeof page;
		for (size_t i = 0; ok && i < 512; i++)
			ok = page[i] == word(i);
		if (ok)
			printf("cma direct: ok: rank 0 read rank 1's buffer from pid %ld\n", where[0]);
		else if (got < 0)
			printf("cma direct: failed: process_vm_readv(pid %ld): %s\n", where[0], strerror(errno));
		else
			printf("cma direct: failed: process_vm_readv(pid %ld) read %zd bytes, not rank 1's data\n",
			       where[0], got);
		fflush(stdout);
	}

	/* The transfer: rendezvous, and over vader with cma one process_vm_readv
	 * by rank 0 (a get) of rank 1's buffer. */
	if (rank == 1)
		MPI_Send(buf, NBYTES, MPI_BYTE, 0, 2, MPI_COMM_WORLD);
	if (rank == 0) {
		char mech[128];
		MPI_Recv(buf, NBYTES, MPI_BYTE, 1, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		size_t bad = 0;
		for (size_t i = 0; i < nw; i++)
			bad += buf[i] != word(i);
		vader_mechanism(mech, sizeof mech);
		if (bad != 0) {
			printf("FAIL: transfer: %zu of %zu words differ from rank 1's (single copy mechanism %s)\n", bad, nw,
			       mech);
			failed = 1;
		} else if (any) {
			printf("transfer ok (%u bytes intact; vader's single copy mechanism %s)\n", NBYTES, mech);
		} else if (strcmp(mech, "cma") != 0) {
			printf("FAIL: cma transfer: the data arrived, but by a fallback: single copy mechanism %s, not cma\n",
			       mech);
			failed = 1;
		} else {
			printf("cma transfer ok (single copy mechanism %s, %u bytes)\n", mech, NBYTES);
		}
		fflush(stdout);
	}
	MPI_Bcast(&failed, 1, MPI_INT, 0, MPI_COMM_WORLD);
	free(buf);
	long mine = rank + 1, sum = 0;
	MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
	printf("allreduce rank %d sum %ld\n", rank, sum);
	fflush(stdout);
	MPI_Finalize();
	return failed;
}
