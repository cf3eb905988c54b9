package runtime

// A bundle's linux.resources, applied where the container's cgroup is the
// caller's to manage (delegated), as rootless runc applies them: the
// container gets a cgroup of its own, in each hierarchy whose controller
// the limits need, at linux.cgroupsPath (see cgroupPath); the limits are
// written there, and the init joins it before it forks anything, so that
// every process of the container is held by them. What cannot be applied
// (no delegated cgroup, a controller that is not there, a file the kernel
// lacks) is named in create's one warning line; a value the kernel
// refuses in a cgroup that is the caller's is an error.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// containerCgroups are a container's own cgroups, limits written, for its
// init to join.
type containerCgroups struct {
	dirs []cgDir
	// made are the cgroups made for the container, deepest first, which
	// delete removes (see State.Cgroups).
	made []string
	// unapplied are what could not be applied, for the warning line;
	// join adds to it.
	unapplied []string
}

// cgDir is one open container cgroup.
type cgDir struct {
	fd   int
	path string
	res  []string // the linux.resources entries it applies
}

// prepareCgroups makes or opens the cgroups that spec's linux.resources
// need and writes the limits into them. nil, with what is not applied,
// where nothing can be; an error for a spec whose values cannot be
// written, and then nothing made is left.
func prepareCgroups(spec *specs.Spec, id string) (*containerCgroups, error) {
	if spec.Linux == nil || spec.Linux.Resources == nil || len(cgroupLimits(spec.Linux.Resources)) == 0 {
		return nil, nil
	}
	r := spec.Linux.Resources
	v1, err := cgroupV1Mounts()
	if err != nil {
		return nil, err
	}
	v2mnt, _ := procs.Cgroup2Mount()
	var v2ctrls []string
	if v2mnt != "" {
		b, _ := os.ReadFile(filepath.Join(v2mnt, "cgroup.controllers"))
		v2ctrls = strings.Fields(string(b))
	}
	v1w := cgroupV1Writes(r)
	v2w, notV2, err := cgroupV2Writes(r)
	if err != nil {
		return nil, err
	}
	cg := &containerCgroups{}
	plan := planCgroups(v1w, v2w, notV2, v1, v2ctrls)
	not := plan.not
	groups, order := plan.groups, plan.order
	own := ownCgroups()
	ok := true
	for _, h := range order {
		mnt, rel := v2mnt, own[""]
		if h != "" {
			mnt, rel = v1[h], own[h]
		}
		res := resNames(groups[h])
		p, err := cgroupPath(spec.Linux.CgroupsPath, rel, id)
		if err != nil {
			cg.remove()
			return nil, err
		}
		if err := cg.apply(mnt, p, h, groups[h], res, not); err != nil {
			var na notApplied
			if !errors.As(err, &na) {
				cg.remove()
				return nil, err
			}
			ok = false
			for _, r := range res {
				not(r, string(na))
			}
		}
	}
	cg.unapplied = plan.unapplied()
	if len(cg.dirs) == 0 && ok && len(cg.unapplied) == 0 {
		return nil, nil
	}
	return cg, nil
}

// notApplied is a hierarchy's limits that cannot be applied, and why: a
// warning, not an error.
type notApplied string

func (n notApplied) Error() string { return string(n) }

func resNames(ws []cgWrite) []string {
	var r []string
	for _, w := range ws {
		if !slices.Contains(r, w.Res) {
			r = append(r, w.Res)
		}
	}
	return r
}

// apply makes or opens cgroup p (relative to mnt, the mount of hierarchy
// h; "" for v2), walking down from the mount without following a
// symlink, each step checked to be in a cgroup file system, and writes
// ws there. A cgroup that is not the caller's to manage is notApplied; a
// file that is not there or that the kernel refuses to set goes to skip.
func (cg *containerCgroups) apply(mnt, p, h string, ws []cgWrite, res []string, skip func(res, reason string)) error {
	name := "cgroup " + filepath.Join(mnt, p)
	fd, err := openCgroupDir(mnt)
	if err != nil {
		return notApplied(name + ": " + err.Error())
	}
	var made []string
	var parents []int // the open dirs above the target, to enable v2 controllers in
	defer func() {
		for _, f := range parents {
			unix.Close(f)
		}
	}()
	cur := mnt
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || err == unix.EEXIST {
				if err == nil {
					made = append(made, filepath.Join(cur, c))
				}
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if err != nil {
			unix.Close(fd)
			cg.undo(made)
			return notApplied(fmt.Sprintf("cannot make cgroup %s: %v; none there is delegated to you", filepath.Join(cur, c), err))
		}
		parents = append(parents, fd)
		fd, cur = next, filepath.Join(cur, c)
	}
	fail := func(err error) error {
		unix.Close(fd)
		cg.undo(made)
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(err)
	}
	if euid := os.Geteuid(); euid != 0 && int(st.Uid) != euid {
		return fail(notApplied(fmt.Sprintf("%s belongs to uid %d, not delegated to you", name, st.Uid)))
	}
	if h == "" {
		// cgroup v2: the controllers are enabled in each parent's
		// cgroup.subtree_control from the deepest that was there down.
		first := len(parents) - max(len(made), 1)
		for _, pfd := range parents[first:] {
			if err := enableControllers(pfd, ws); err != nil {
				return fail(notApplied(name + ": " + err.Error()))
			}
		}
	} else if h == "cpuset" {
		// A new v1 cpuset has no cpus nor mems, and takes no process
		// until it has: each made one gets its parent's.
		for i, pfd := range parents[len(parents)-len(made):] {
			cfd := fd
			if i+1 < len(made) {
				cfd = parents[len(parents)-len(made)+i+1]
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := readCgroupFile(pfd, f); err == nil {
					writeCgroupFile(cfd, f, strings.TrimSpace(string(b)))
				}
			}
		}
	}
	for _, w := range ws {
		err := writeCgroupFile(fd, w.File, w.Value)
		switch {
		case err == nil && w.File == "memory.kmem.limit_in_bytes":
			// Linux 6.1 and later take the value and ignore it.
			if b, _ := readCgroupFile(fd, w.File); strings.TrimSpace(string(b)) != w.Value {
				skip(w.Res, "the kernel ignores "+w.File)
			}
		case err == nil:
		case errors.Is(err, unix.ENOENT):
			skip(w.Res, "the kernel has no "+w.File)
		case errors.Is(err, unix.ENODEV):
			// A device this node does not have: a bundle made elsewhere.
			skip(w.Res, fmt.Sprintf("%s %q: no such device here", w.File, w.Value))
		case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) || err == unix.Errno(524): // ENOTSUPP
			skip(w.Res, fmt.Sprintf("%s: %v", w.File, err))
		default:
			return fail(fmt.Errorf("linux.resources.%s: %s %q in %s: %w", w.Res, w.File, w.Value, name, err))
		}
	}
	slices.Reverse(made)
	cg.made = append(cg.made, made...)
	cg.dirs = append(cg.dirs, cgDir{fd: fd, path: cur, res: res})
	return nil
}

// enableControllers enables in cgroup v2 dir fd's cgroup.subtree_control
// the controllers that ws need, where they are not yet.
func enableControllers(fd int, ws []cgWrite) error {
	b, err := readCgroupFile(fd, "cgroup.subtree_control")
	if err != nil {
		return err
	}
	on := strings.Fields(string(b))
	var add []string
	for _, w := range ws {
		if !slices.Contains(on, w.Ctrl) && !slices.Contains(add, "+"+w.Ctrl) {
			add = append(add, "+"+w.Ctrl)
		}
	}
	if len(add) == 0 {
		return nil
	}
	err = writeCgroupFile(fd, "cgroup.subtree_control", strings.Join(add, " "))
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("cannot enable %s for the container's cgroup: its parent holds processes (cgroup v2 lets only a cgroup without processes share out its controllers); give a linux.cgroupsPath beside the caller's cgroup", strings.Join(add, " "))
	}
	if err != nil {
		return fmt.Errorf("enable %s in cgroup.subtree_control: %w", strings.Join(add, " "), err)
	}
	return nil
}

// openCgroupDir opens a cgroup hierarchy's mount point, checked to be one.
func openCgroupDir(mnt string) (int, error) {
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil || (fs.Type != unix.CGROUP_SUPER_MAGIC && fs.Type != unix.CGROUP2_SUPER_MAGIC) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not a cgroup file system", mnt)
	}
	return fd, nil
}

func readCgroupFile(dir int, name string) ([]byte, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<16))
}

func writeCgroupFile(dir int, name, value string) error {
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte(value))
	return err
}

// join moves process pid, the container's init before it forks anything,
// into each of the container's cgroups. One it cannot join (cgroup v2
// lets a process move only within a subtree whose top is the mover's)
// is removed and its limits named as not applied.
func (cg *containerCgroups) join(pid int) {
	if cg == nil || pid <= 0 {
		return
	}
	kept := cg.dirs[:0]
	for _, d := range cg.dirs {
		if err := writeCgroupFile(d.fd, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			for _, r := range d.res {
				cg.unapplied = append(cg.unapplied, fmt.Sprintf("linux.resources.%s (cannot move the container into cgroup %s: %v)", r, d.path, err))
			}
			unix.Close(d.fd)
			continue
		}
		kept = append(kept, d)
	}
	cg.dirs = kept
}

// close closes the open cgroups; what was made stays, for delete.
func (cg *containerCgroups) close() {
	if cg == nil {
		return
	}
	for _, d := range cg.dirs {
		unix.Close(d.fd)
	}
	cg.dirs = nil
}

// remove removes what was made, for a create that failed.
func (cg *containerCgroups) remove() {
	if cg == nil {
		return
	}
	cg.close()
	removeCgroups(cg.made)
	cg.made = nil
}

func (cg *containerCgroups) undo(made []string) {
	slices.Reverse(made)
	removeCgroups(made)
}

// removeCgroups removes the cgroups a container's create made, deepest
// first: only empty ones of the caller's (see procs.RemoveCgroup). The
// paths come from the state file, which its user may write.
func removeCgroups(made []string) error {
	var errs []error
	for _, p := range made {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			errs = append(errs, fmt.Errorf("state names cgroup %q, not a clean absolute path; left alone", p))
			continue
		}
		errs = append(errs, procs.RemoveCgroup(p))
	}
	return errors.Join(errs...)
}

// cgroupV1Mounts maps each cgroup v1 controller to its hierarchy's mount
// point (cpu and cpuacct, say, to one mounted for both).
func cgroupV1Mounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fs, pf := strings.Fields(post), strings.Fields(pre)
		if !ok || len(fs) < 3 || fs[0] != "cgroup" || len(pf) < 5 || pf[3] != "/" {
			continue
		}
		for _, o := range strings.Split(fs[2], ",") {
			if _, seen := m[o]; !seen && o != "rw" && o != "ro" && !strings.HasPrefix(o, "name=") {
				m[o] = procs.UnescapeMountinfo(pf[4])
			}
		}
	}
	return m, sc.Err()
}

// ownCgroups maps each cgroup v1 controller to the caller's cgroup in it,
// and "" to its cgroup v2 one, from /proc/self/cgroup.
func ownCgroups() map[string]string {
	own := map[string]string{}
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			own[c] = f[2]
		}
	}
	return own
}
