package e2e

// A bundle's linux.resources are applied in a cgroup of the container's
// own where linux.cgroupsPath leads to one delegated to its user (as
// Slurm's task/cgroup plugin or an admin delegates one), in cgroup v1 and
// in cgroup v2; without one, create names what is not applied in one
// warning line, and the container runs.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// delegateCgroup makes cgroup dir for the test user, as an admin
// delegates one: the directory and, for cgroup v2, its cgroup.procs,
// cgroup.threads and cgroup.subtree_control are the user's. It and what
// is left below it go when the test ends.
func delegateCgroup(t *testing.T, dir string, v2 bool) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("delegate a cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroupTree(t, dir) })
	files := []string{""}
	if v2 {
		files = append(files, "cgroup.procs", "cgroup.threads", "cgroup.subtree_control")
	}
	for _, f := range files {
		if err := os.Chown(filepath.Join(dir, f), testUID, testGID); err != nil {
			t.Fatal(err)
		}
	}
}

// removeCgroupTree removes cgroup dir and the cgroups below it, deepest
// first, killing what is left in them.
func removeCgroupTree(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(t, filepath.Join(dir, e.Name()))
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for i := 0; i < 200 && syscall.Rmdir(dir) == syscall.EBUSY; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("cgroup %s left behind", dir)
	}
}

func needCgroupRoot(t *testing.T) {
	t.Helper()
	needUserns(t)
	if os.Geteuid() != 0 || !asOther {
		t.Skip("delegating a cgroup needs root")
	}
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
	}
	return strings.TrimSpace(string(b))
}

// cgroup v1: the pids and memory hierarchies, each with a cgroup
// delegated to the test user; the bundle's cgroupsPath names one below
// it. The init and the job are in it, under the bundle's limits, and
// delete removes it.
func TestOCICgroupsV1(t *testing.T) {
	t.Parallel()
	needCgroupRoot(t)
	unique := fmt.Sprintf("hpcrun-e2e-cg1-%d", os.Getpid())
	for _, c := range []string{"pids", "memory"} {
		mnt := filepath.Join("/sys/fs/cgroup", c)
		var fs syscall.Statfs_t
		if err := syscall.Statfs(mnt, &fs); err != nil || fs.Type != 0x27e0eb { // CGROUP_SUPER_MAGIC
			t.Fatalf("no cgroup v1 %s hierarchy at %s (%v): this test needs a hybrid or v1 host", c, mnt, err)
		}
		delegateCgroup(t, filepath.Join(mnt, unique), false)
	}
	bundle, root := ociBundle(t, "exec sleep 1000", func(spec map[string]any) {
		linux(spec)["cgroupsPath"] = "/" + unique + "/c1"
		linux(spec)["resources"] = map[string]any{
			"pids":   map[string]any{"limit": 50},
			"memory": map[string]any{"limit": 64 << 20},
		}
	})
	id := "cg-v1"
	t.Cleanup(func() { lc(t, root, "delete", "--force", id) })
	r := mustLC(t, root, "create", "--bundle", bundle, id)
	if strings.Contains(r.stderr, "linux.resources") {
		t.Errorf("create warned about the limits it should have applied: %s", r)
	}
	_, initPid := ociStatus(t, root, id)
	pids := filepath.Join("/sys/fs/cgroup/pids", unique, "c1")
	mem := filepath.Join("/sys/fs/cgroup/memory", unique, "c1")
	cg := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", initPid))
	for _, want := range []string{":pids:/" + unique + "/c1\n", ":memory:/" + unique + "/c1\n"} {
		if !strings.Contains(cg+"\n", want) {
			t.Errorf("the init is not in the bundle's cgroup %q: %q", want, cg)
		}
	}
	if v := readTrim(t, filepath.Join(pids, "pids.max")); v != "50" {
		t.Errorf("pids.max %q, want 50", v)
	}
	if v := readTrim(t, filepath.Join(mem, "memory.limit_in_bytes")); v != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes %q, want %d", v, 64<<20)
	}
	mustLC(t, root, "start", id)
	waitStatus(t, root, id, "running")
	// The job, forked by the init after it joined, is in it too.
	if procs := strings.Fields(readTrim(t, filepath.Join(pids, "cgroup.procs"))); len(procs) < 2 {
		t.Errorf("pids cgroup holds %q, want the init and the job", procs)
	}
	mustLC(t, root, "kill", id, "KILL")
	waitStatus(t, root, id, "stopped")
	mustLC(t, root, "delete", id)
	for _, d := range []string{pids, mem} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("delete left cgroup %s: %v", d, err)
		}
	}
}

// cgroup v2, where the unified tree has a controller (on a hybrid host,
// hugetlb): hpcrun's caller runs in a leaf of a delegated subtree, and
// the container's cgroup goes beside it, with hugetlb enabled for it in
// the subtree's top. pause freezes within it; delete removes it.
func TestOCICgroupsV2(t *testing.T) {
	t.Parallel()
	needCgroupRoot(t)
	mnt, err := procs.Cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	if ctrls := readTrim(t, filepath.Join(mnt, "cgroup.controllers")); !strings.Contains(" "+ctrls+" ", " hugetlb ") {
		t.Fatalf("the cgroup v2 tree at %s offers %q, no hugetlb: this test needs it", mnt, ctrls)
	}
	// The root cgroup shares hugetlb out (it may: it is exempt from the
	// rule that a cgroup with processes cannot). Left on: other cgroups
	// may use it by now.
	if err := os.WriteFile(filepath.Join(mnt, "cgroup.subtree_control"), []byte("+hugetlb"), 0); err != nil {
		t.Fatal(err)
	}
	unique := fmt.Sprintf("hpcrun-e2e-cg2-%d", os.Getpid())
	top := filepath.Join(mnt, unique)
	delegateCgroup(t, top, true)
	caller := filepath.Join(top, "caller")
	if err := os.Mkdir(caller, 0o755); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(top, "hugetlb.*.max"))
	if len(matches) == 0 {
		t.Fatalf("%s has no hugetlb.*.max", top)
	}
	// The smallest page size; the limit, four pages of it.
	size, limit := "", 0
	for _, m := range matches {
		sz := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "hugetlb."), ".max")
		if strings.Contains(sz, ".") { // hugetlb.2MB.rsvd.max
			continue
		}
		n, _ := strconv.Atoi(strings.TrimRight(sz, "KMGB"))
		n <<= map[string]int{"KB": 10, "MB": 20, "GB": 30}[strings.TrimLeft(sz, "0123456789")]
		if size == "" || 4*n < limit {
			size, limit = sz, 4*n
		}
	}
	dir, err := os.Open(caller)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	bundle, root := ociBundle(t, "exec sleep 1000", func(spec map[string]any) {
		linux(spec)["cgroupsPath"] = "/" + unique + "/c1"
		linux(spec)["resources"] = map[string]any{
			"hugepageLimits": []any{map[string]any{"pageSize": size, "limit": limit}},
		}
	})
	id := "cg-v2"
	t.Cleanup(func() { lc(t, root, "delete", "--force", id) })
	r := run(t, opts{files: true, cgroupFD: int(dir.Fd())}, "--root", root, "create", "--bundle", bundle, id)
	if r.code != 0 || strings.Contains(r.stderr, "linux.resources") {
		t.Fatalf("create in a delegated cgroup v2 subtree: %s", r)
	}
	c1 := filepath.Join(top, "c1")
	_, initPid := ociStatus(t, root, id)
	if cg := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", initPid)); !strings.Contains(cg+"\n", "0::/"+unique+"/c1\n") {
		t.Errorf("the init is not in the bundle's cgroup: %q", cg)
	}
	if v := readTrim(t, filepath.Join(c1, "hugetlb."+size+".max")); v != strconv.Itoa(limit) || limit == 0 {
		t.Errorf("hugetlb.%s.max %q, want %d", size, v, limit)
	}
	mustLC(t, root, "start", id)
	waitStatus(t, root, id, "running")
	mustLC(t, root, "pause", id)
	if b, err := os.ReadFile(filepath.Join(c1, "hpcrun-"+id, "cgroup.events")); err != nil || !strings.Contains(string(b), "frozen 1") {
		t.Errorf("pause did not freeze within the container's cgroup: %q, %v", b, err)
	}
	mustLC(t, root, "resume", id)
	if st, _ := ociStatus(t, root, id); st != "running" {
		t.Errorf("after resume: %s", st)
	}
	mustLC(t, root, "kill", id, "KILL")
	waitStatus(t, root, id, "stopped")
	mustLC(t, root, "delete", id)
	if _, err := os.Stat(c1); !os.IsNotExist(err) {
		t.Errorf("delete left cgroup %s: %v", c1, err)
	}

	// Relative: below the caller's own cgroup, which holds the caller, so
	// that cgroup v2 cannot share hugetlb out to a child of it: one line
	// says so, and the container runs without the limit.
	for _, f := range []string{"", "cgroup.procs", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(caller, f), testUID, testGID); err != nil {
			t.Fatal(err)
		}
	}
	bundle, root = ociBundle(t, "echo ran", func(spec map[string]any) {
		linux(spec)["cgroupsPath"] = "c2"
		linux(spec)["resources"] = map[string]any{
			"hugepageLimits": []any{map[string]any{"pageSize": size, "limit": limit}},
		}
	})
	r = run(t, opts{files: true, cgroupFD: int(dir.Fd())}, "--root", root, "run", "--bundle", bundle, "cg-v2-rel")
	if r.code != 0 || r.stdout != "ran\n" || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "linux.resources.hugepageLimits (") || !strings.Contains(r.stderr, "its parent holds processes") {
		t.Errorf("want the job's output and one line saying the caller's cgroup holds processes: %s", r)
	}
	t.Logf("%s", r.stderr)
	if _, err := os.Stat(filepath.Join(caller, "c2")); !os.IsNotExist(err) {
		t.Errorf("a cgroup that could not be used was left: %v", err)
	}
}

// Without a delegated cgroup, the limits are named in one warning line
// that says why, nothing is made, and the container runs.
func TestOCICgroupsNotDelegated(t *testing.T) {
	t.Parallel()
	needUserns(t)
	unique := fmt.Sprintf("hpcrun-e2e-cg0-%d", os.Getpid())
	bundle, root := ociBundle(t, "echo ran", func(spec map[string]any) {
		linux(spec)["cgroupsPath"] = "/" + unique + "/c1"
		linux(spec)["resources"] = map[string]any{
			"pids":   map[string]any{"limit": 50},
			"memory": map[string]any{"limit": 64 << 20},
		}
	})
	r := lc(t, root, "run", "--bundle", bundle, "cg-none")
	if r.code != 0 || r.stdout != "ran\n" || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("want the job's output and one warning line: %s", r)
	}
	t.Logf("%s", r.stderr)
	for _, want := range []string{"linux.resources.memory (cannot make cgroup ", "linux.resources.pids (cannot make cgroup ", "/" + unique + ": permission denied"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the warning does not say %q: %q", want, r.stderr)
		}
	}
	for _, c := range []string{"pids", "memory"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, unique)); !os.IsNotExist(err) {
			t.Errorf("a cgroup was made: %v", err)
		}
	}
}
