package procs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoDelegatedCgroup says that the container's cgroup is not one its
// owner may manage, so pause falls back to the signal sweep.
var ErrNoDelegatedCgroup = errors.New("the container's cgroup is not delegated to you")

// FreezeCgroup pauses the container of init with the cgroup v2 freezer,
// where the cgroup that holds its init is delegated to the caller (owned
// by the caller, as systemd's Delegate=yes or a site's delegation leaves
// it; for root, marked delegated by systemd): it makes a child cgroup named name there, moves every process of
// the container but init into it, sweeping until none is left outside (a
// process forked meanwhile lands in its parent's old cgroup), freezes it,
// and moves in any straggler, which freezes as it joins. init stays where
// it is and runs on, to serve the container's control requests. It
// returns the child cgroup's path, for ThawCgroup.
//
// Only cgroup v2: a task frozen by v1's freezer ignores even SIGKILL until
// it is thawed, so a paused container could not be killed, nor its job
// cancelled. A v2 frozen process still dies of SIGKILL.
//
// It returns ErrNoDelegatedCgroup when there is no such cgroup, and then
// has changed nothing; on any other failure it undoes what it did.
func FreezeCgroup(init int, name string) (string, error) {
	parent, rel, err := delegatedCgroup(init)
	if err != nil {
		return "", err
	}
	child, childRel := filepath.Join(parent, name), path.Join(rel, name)
	if err := os.Mkdir(child, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("make cgroup %s: %w", child, err)
	}
	fail := func(err error) (string, error) {
		ThawCgroup(init, child)
		return "", err
	}
	if _, err := os.Stat(filepath.Join(child, "cgroup.freeze")); err != nil {
		return fail(fmt.Errorf("%w: %s has no cgroup.freeze (Linux 5.2 or later)", ErrNoDelegatedCgroup, child))
	}
	if err := moveAll(init, child, childRel, 2); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(child, "cgroup.freeze"), []byte("1"), 0); err != nil {
		return fail(fmt.Errorf("freeze cgroup %s: %w", child, err))
	}
	if err := moveAll(init, child, childRel, 1); err != nil {
		return fail(err)
	}
	if err := waitFrozen(child, true); err != nil {
		return fail(err)
	}
	return child, nil
}

// ThawCgroup undoes FreezeCgroup: it thaws the child cgroup, moves its
// processes back to the parent and removes it, so that nothing of
// hpcrun's is left in a cgroup tree that its manager (systemd, Slurm)
// removes when the job ends.
func ThawCgroup(init int, child string) error {
	var errs []error
	if err := os.WriteFile(filepath.Join(child, "cgroup.freeze"), []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("thaw cgroup %s: %w", child, err))
	}
	parent := filepath.Dir(child)
	// The processes go back a few times over, should one fork as it goes.
	for range 10 {
		pids, err := cgroupProcs(child)
		if err != nil || len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			writePid(parent, pid)
		}
	}
	if err := RemoveCgroup(child); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RemoveCgroup removes a child cgroup that FreezeCgroup made, or one
// that create made for a bundle's limits (v1 or v2), once its
// processes are gone; "" or one removed already is no error. A cgroup
// whose last process has just died may stay busy for a moment. The path
// comes from a file the user may write, and root removes it too (Slurm
// deletes containers as root, as their owner): only an empty directory of
// a cgroup hierarchy that the caller owns goes, through its parent
// opened without following a symlink, never any other directory.
func RemoveCgroup(child string) error {
	if child == "" {
		return nil
	}
	parent, err := unix.Open(filepath.Dir(child), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", child, err)
	}
	defer unix.Close(parent)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(parent, &fs); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", child, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC && fs.Type != unix.CGROUP_SUPER_MAGIC {
		return fmt.Errorf("remove cgroup %s: it is not in a cgroup hierarchy; left alone", child)
	}
	name := filepath.Base(child)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", child, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("remove cgroup %s: it is not a cgroup of yours (uid %d); left alone", child, st.Uid)
	}
	// Busy for as long as a process that left it is still being torn
	// down, which on a loaded node takes more than a moment.
	deadline := time.Now().Add(removeBusyFor)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err = unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	return fmt.Errorf("remove cgroup %s: %w", child, err)
}

// removeBusyFor is how long RemoveCgroup retries a cgroup that is busy.
const removeBusyFor = 2 * time.Second

// delegatedCgroup is the cgroup v2 directory of process init, when the
// caller owns it and may move processes in and out of it, and its path as
// /proc/PID/cgroup shows it.
func delegatedCgroup(init int) (dir, rel string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(init) + "/cgroup")
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel = p
		}
	}
	if rel == "" || rel == "/" {
		return "", "", ErrNoDelegatedCgroup
	}
	mnt, err := Cgroup2Mount()
	if err != nil {
		return "", "", err
	}
	dir = filepath.Join(mnt, rel)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoDelegatedCgroup, err)
	}
	if int(st.Uid) != os.Geteuid() || unix.Access(dir, unix.W_OK) != nil ||
		unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK) != nil {
		return "", "", ErrNoDelegatedCgroup
	}
	// Root owns every cgroup, delegated or not: for root, only one that
	// systemd marked delegated (Delegate=yes) counts.
	if os.Geteuid() == 0 && !markedDelegated(dir) {
		return "", "", ErrNoDelegatedCgroup
	}
	return dir, rel, nil
}

// markedDelegated reports whether systemd marked a cgroup delegated, with
// the trusted.delegate or user.delegate attribute.
func markedDelegated(dir string) bool {
	buf := make([]byte, 8)
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		if n, err := unix.Getxattr(dir, attr, buf); err == nil && string(buf[:n]) == "1" {
			return true
		}
	}
	return false
}

// Cgroup2Mount is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) >= 5 && f[3] == "/" {
			return UnescapeMountinfo(f[4]), nil
		}
	}
	return "", fmt.Errorf("%w: no cgroup v2 hierarchy is mounted", ErrNoDelegatedCgroup)
}

// UnescapeMountinfo undoes the octal escapes (\040 for a space, \011,
// \012, \134) of a path in /proc/PID/mountinfo.
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// moveAll moves every process of the container of init but init into the
// cgroup dir (rel, as /proc/PID/cgroup shows it), sweeping /proc until
// settle sweeps in a row find none left outside.
func moveAll(init int, dir, rel string, settle int) error {
	deadline := time.Now().Add(freezeTimeout)
	for settled := 0; settled < settle; {
		moved := 0
		var errs []error
		err := scan(init, func(p Proc, pdir int) {
			if p.Pid == init || p.State == 'Z' || p.State == 'X' {
				return
			}
			b, err := readAt(pdir, "cgroup")
			if err != nil || bytes.Contains(append([]byte("\n"), b...), []byte("\n0::"+rel+"\n")) {
				return
			}
			moved++
			if err := writePid(dir, p.Pid); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("move process %d into cgroup %s: %w", p.Pid, dir, err))
			}
		})
		if err = errors.Join(append(errs, err)...); err != nil {
			return err
		}
		if moved == 0 {
			settled++
			continue
		}
		settled = 0
		if time.Now().After(deadline) {
			return fmt.Errorf("processes kept appearing outside cgroup %s for %v", dir, freezeTimeout)
		}
	}
	return nil
}

func writePid(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

func cgroupProcs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// waitFrozen waits until the kernel reports the cgroup frozen (or
// thawed): a process in uninterruptible sleep freezes only once it wakes.
func waitFrozen(dir string, frozen bool) error {
	want := []byte("frozen 0\n")
	if frozen {
		want = []byte("frozen 1\n")
	}
	deadline := time.Now().Add(freezeTimeout)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		if bytes.Contains(b, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s did not freeze within %v; all run on", dir, freezeTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}
