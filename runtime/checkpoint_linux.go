package runtime

// Checkpoint and restore with CRIU (hpcrun checkpoint, hpcrun --restore).
//
// CRIU works without root when it runs inside the container's user, mount
// and pid namespaces, with CAP_SYS_ADMIN, CAP_SYS_PTRACE and
// CAP_CHECKPOINT_RESTORE there, and --unprivileged. The init sits in all
// of them and holds those capabilities (rawclone.InitCaps), so the init
// runs criu: for a checkpoint, from a connection's goroutine, on a thread
// that kept them (the main thread dropped its own); for a restore, from
// the main thread, before it drops them, in place of the job's exec.
//
// The criu is the image's own (criu in the job's PATH, /usr/sbin, /sbin)
// or a site's, a static build sent as a descriptor (HPCRUN_CRIU). Its
// images go to a directory the caller opened and sent: the init writes
// nothing of its own there but criu's log.
//
// Jobs start at a pid floor (PidFloor): in a fresh container the init's
// own threads hold the low pids, and a restore needs every pid of the
// dumped tree free.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/envlist"
)

// PidFloor is the lowest pid of a job in its container.
const PidFloor = 1000

// MinCriu is the oldest criu that works here: 3.17 fails in its vDSO
// detection on current kernels.
var MinCriu = [2]int{4, 1}

// checkpointTimeout bounds a checkpoint's call: a dump writes the job's
// whole memory.
const checkpointTimeout = 10 * time.Minute

// setPidFloor makes the next pid of the container's namespace PidFloor.
// The container's own /proc is mounted by now. A failure costs only a
// later restore's pids, and is logged.
func setPidFloor(logf func(string, ...any)) { setLastPid(PidFloor-1, logf) }

// setLastPid sets the container's ns_last_pid: the next pid is last+1.
func setLastPid(last int, logf func(string, ...any)) {
	fd, err := unix.Open("/proc/sys/kernel/ns_last_pid", unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err == nil {
		_, err = unix.Write(fd, []byte(strconv.Itoa(last)))
		unix.Close(fd)
	}
	if err != nil {
		logf("no pid floor: ns_last_pid: %v", err)
	}
}

// CheckpointInfo is what the init says of a checkpoint it took, besides
// criu's images: what a restore must match, and how to reconnect stdio.
type CheckpointInfo struct {
	Criu   string   `json:"criu"`    // criu's version
	Pid    int      `json:"pid"`     // the job's, in the container: the restored tree keeps its pids
	MaxPid int      `json:"max_pid"` // the highest pid or thread id of the tree
	Args   []string `json:"args"`    // the job's command
	Env    []string `json:"env"`     // and environment
	Cwd    string   `json:"cwd"`     // its working directory, in the container
	Rootfs string   `json:"rootfs"`  // the host path of the rootfs
	Binds  []string `json:"binds"`   // the container's mounts, DEST<-SOURCE
	// Stdio names the job's descriptors 0, 1 and 2 as criu knows them
	// (pipe:[INODE], file[MNT:INODE]); a restore hands the new ones in
	// their place. "" for one that was closed.
	Stdio []string `json:"stdio"`
}

// CheckpointSupport says why this kernel cannot checkpoint, if it cannot
// (hpcrun check).
func CheckpointSupport() error { return checkpointSupport() }

// checkpointSupport says why this kernel cannot checkpoint, if it cannot.
func checkpointSupport() error {
	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, unix.CAP_CHECKPOINT_RESTORE, 0, 0, 0); err != nil {
		return fmt.Errorf("checkpoint needs Linux 5.9 or newer: this kernel (%s) has no CAP_CHECKPOINT_RESTORE", release)
	}
	// clone3 with no arguments: EINVAL where it exists. criu restores
	// pids through its set_tid (Linux 5.5).
	if _, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); errno == unix.ENOSYS {
		return fmt.Errorf("checkpoint needs Linux 5.9 or newer: this kernel (%s) has no clone3", release)
	}
	return nil
}

// seccompMode is pid's seccomp mode: 0 for none.
func seccompMode(pid int) int {
	st, err := procStatus(pid)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(st["Seccomp"])
	return n
}

// containerPids are the pids of the container's processes but the
// init's, as its /proc lists them.
func containerPids() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// criuPath is the criu to run: the site's, sent as a descriptor that the
// child gets as fd, else the image's.
func criuPath(env []string, site bool, fd int) (string, error) {
	if site {
		return "/proc/self/fd/" + strconv.Itoa(fd), nil
	}
	path := envlist.Value(env, "PATH")
	p, err := lookPath("criu", path+":/usr/local/sbin:/usr/sbin:/sbin", "")
	if err != nil {
		return "", fmt.Errorf("no criu in the image (PATH, /usr/sbin, /sbin): install criu %d.%d or newer in it (Debian 13's criu package), or point HPCRUN_CRIU at a static criu", MinCriu[0], MinCriu[1])
	}
	return p, nil
}

// criuCaps are criu's ambient capabilities in the container's user
// namespace.
func criuCaps(root bool) []uintptr {
	caps := []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE, unix.CAP_CHECKPOINT_RESTORE}
	if root {
		caps = append(caps, unix.CAP_SETUID, unix.CAP_SETGID)
	}
	return caps
}

// criuChild is criu as the init starts it: args run by path, with files
// as its descriptors (0, 1, 2 and the images directory as 3) and caps.
type criuChild struct {
	path  string
	args  []string
	files []uintptr
	caps  []uintptr
}

// start forks criu, in a session of its own, from the calling goroutine's
// thread, locked to it: its capabilities are criu's.
func (cc criuChild) start() (int, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	// criu's capabilities are its ambient ones alone: the thread's
	// inheritable set, which holds all of the init's, is cut to them for
	// the fork, and put back.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var old [2]unix.CapUserData
	if err := unix.Capget(&hdr, &old[0]); err != nil {
		return 0, fmt.Errorf("criu's capabilities: %w", err)
	}
	set := old
	set[0].Inheritable, set[1].Inheritable = 0, 0
	for _, c := range cc.caps {
		set[c/32].Inheritable |= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &set[0]); err != nil {
		return 0, fmt.Errorf("criu's capabilities: %w", err)
	}
	defer unix.Capset(&hdr, &old[0])
	attr := &syscall.ProcAttr{
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: cc.files,
		Sys:   &syscall.SysProcAttr{Setsid: true, AmbientCaps: cc.caps, Pdeathsig: syscall.SIGKILL},
	}
	pid, err := syscall.ForkExec(cc.path, append([]string{"criu"}, cc.args...), attr)
	if err != nil {
		return 0, fmt.Errorf("start criu (%s): %w", cc.path, err)
	}
	return pid, nil
}

// criuVersion runs criu --version, with wait to wait for a child for at
// most a time, and checks it against MinCriu.
func criuVersion(path string, extra []uintptr, caps []uintptr, wait func(int, time.Duration) (int, error)) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		w.Close()
		return "", err
	}
	defer null.Close()
	files := append([]uintptr{null.Fd(), w.Fd(), w.Fd()}, extra...)
	pid, err := criuChild{path: path, args: []string{"--version"}, files: files, caps: caps}.start()
	w.Close()
	if err != nil {
		return "", err
	}
	r.SetReadDeadline(time.Now().Add(30 * time.Second))
	out, _ := io.ReadAll(io.LimitReader(r, 4096))
	code, err := wait(pid, 30*time.Second)
	if err != nil {
		return "", fmt.Errorf("criu --version: %w", err)
	}
	v := parseCriuVersion(string(out))
	if code != 0 || v == "" {
		return "", fmt.Errorf("criu --version failed (status %d): %s", code, firstLine(string(out)))
	}
	if !criuAtLeast(v, MinCriu) {
		return v, fmt.Errorf("criu %s is too old: checkpoint needs criu %d.%d or newer (Debian 13's, or a static build through HPCRUN_CRIU)", v, MinCriu[0], MinCriu[1])
	}
	return v, nil
}

// parseCriuVersion finds the version in criu --version's output
// ("Version: 4.1.1"); "" if there is none.
func parseCriuVersion(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// criuAtLeast reports whether version v is min or newer.
func criuAtLeast(v string, min [2]int) bool {
	parts := strings.SplitN(v, ".", 3)
	var n [2]int
	for i := 0; i < 2 && i < len(parts); i++ {
		x, err := strconv.Atoi(parts[i])
		if err != nil {
			return false
		}
		n[i] = x
	}
	return n[0] > min[0] || n[0] == min[0] && n[1] >= min[1]
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// stdioNames names pid's descriptors 0, 1 and 2 for criu (see
// CheckpointInfo.Stdio), and lists the --external arguments of a dump.
func stdioNames(pid int) (names, external []string, err error) {
	base := "/proc/" + strconv.Itoa(pid)
	for fd := 0; fd < 3; fd++ {
		link, err := os.Readlink(base + "/fd/" + strconv.Itoa(fd))
		if err != nil {
			names = append(names, "")
			continue
		}
		name, ext, err := stdioName(pid, fd, link, base)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, name)
		if ext != "" {
			external = append(external, "--external", ext)
		}
	}
	return names, external, nil
}

// stdioName is stdioNames for one descriptor, whose /proc link is link.
func stdioName(pid, fd int, link, base string) (name, external string, err error) {
	std := [3]string{"stdin", "stdout", "stderr"}[fd]
	switch {
	case strings.HasPrefix(link, "pipe:["):
		return link, "", nil
	case strings.HasPrefix(link, "socket:["):
		return "", "", fmt.Errorf("the job's %s is a socket (%s): hpcrun checkpoint handles a job whose standard streams are pipes, files or /dev/null", std, link)
	case strings.HasPrefix(link, "/dev/pts/") || strings.HasPrefix(link, "/dev/tty"):
		return "", "", fmt.Errorf("the job's %s is a terminal (%s): checkpoint a job that runs without one (hpcrun run -d, or under sbatch)", std, link)
	case strings.HasPrefix(link, "/"):
		// A file or a device (/dev/null), most often the host's, on a
		// mount that the container does not have: external to criu,
		// and replaced by the restore's own.
		var st unix.Stat_t
		if err := unix.Stat(base+"/fd/"+strconv.Itoa(fd), &st); err != nil {
			return "", "", err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			if err := appendOnly(pid, fd); err != nil {
				return "", "", fmt.Errorf("the job's %s: %w", std, err)
			}
		}
		mnt, err := fdMountID(base, fd)
		if err != nil {
			return "", "", err
		}
		key := fmt.Sprintf("file[%x:%x]", mnt, st.Ino)
		return key, key, nil
	}
	return "", "", fmt.Errorf("the job's %s is %s, which hpcrun checkpoint cannot reconnect", std, link)
}

// appendOnly puts pid's descriptor fd, a file open for writing only, in
// append mode (its open file, which the caller's stdout shares). criu
// checks at a restore that a file has the size it had at the dump, but
// not a log's, open to append: the restore's stdout, another file, passes.
// Appending changes nothing for a job's output, written in sequence.
func appendOnly(pid, fd int) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(dup)
	fl, err := unix.FcntlInt(uintptr(dup), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_ACCMODE != unix.O_WRONLY || fl&unix.O_APPEND != 0 {
		return err
	}
	_, err = unix.FcntlInt(uintptr(dup), unix.F_SETFL, fl|unix.O_APPEND)
	return err
}

// fdMountID is the mount id of the file of pid's descriptor fd.
func fdMountID(base string, fd int) (int, error) {
	b, err := readProcFile(base + "/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "mnt_id:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("%s/fdinfo/%d has no mnt_id", base, fd)
}

// readProcFile reads a small /proc file.
func readProcFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// criuLogError is the last error criu logged in dir's log, for a failure
// message; "" if there is none.
func criuLogError(dir int, log string) string {
	fd, err := unix.Openat(dir, log, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), log)
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 8<<20))
	// criu's last errors are its summary ("Dumping FAILED."): the first
	// says what went wrong.
	for _, l := range bytes.Split(b, []byte("\n")) {
		if i := bytes.Index(l, []byte("Error (")); i >= 0 {
			msg := string(l[i:])
			if j := strings.Index(msg, "): "); j >= 0 {
				msg = msg[j+3:]
			}
			return strings.TrimSpace(msg)
		}
	}
	return ""
}

// checkpoint dumps the job's tree with criu into the directory sent as
// fds[0] (fds[1]: a site's criu). The job stays stopped while the caller
// puts the checkpoint in place; its commit ends it (unless leave, r.all),
// anything else continues it: no failure after the dump loses the job.
func (c *ctl) checkpoint(r request, reply func(response)) {
	defer closeAll(r.fds)
	fail := func(err error) { reply(response{err: err.Error(), status: StatusFailed}) }
	if len(r.fds) < 1 || len(r.fds) > 2 {
		fail(errors.New("checkpoint: no images directory sent"))
		return
	}
	c.mu.Lock()
	job, ended := c.st.job, c.st.ended
	c.mu.Unlock()
	switch {
	case ended:
		return
	case job == 0:
		fail(errors.New("the container's job has not started: there is nothing to checkpoint"))
		return
	}
	if err := checkpointSupport(); err != nil {
		fail(err)
		return
	}
	if !holdsCap(unix.CAP_CHECKPOINT_RESTORE) {
		fail(errors.New("this container's init holds no CAP_CHECKPOINT_RESTORE (hpcrun clones it so on amd64 only): checkpoint is not available here"))
		return
	}
	if pid := seccompedTask(); pid != 0 {
		fail(fmt.Errorf("pid %d of the job runs under a seccomp filter, which criu cannot dump without CAP_SYS_ADMIN on the host: run it without one (no linux.seccomp in the bundle, and not under a tool that adds one)", pid))
		return
	}
	if err := undumpable(job); err != nil {
		fail(err)
		return
	}
	if !c.criuMu.TryLock() {
		fail(errors.New("a checkpoint of this container is already under way"))
		return
	}
	defer c.criuMu.Unlock()
	c.criuExits.begin()
	defer c.criuExits.end()

	var info *CheckpointInfo
	err := c.onCriuThread(func() error {
		var err error
		info, err = c.dump(job, r.fds, r.all)
		return err
	})
	if err != nil {
		fail(err)
		return
	}
	b, _ := json.Marshal(info)
	if _, err := r.conn.Write(response{pid: job, info: string(b)}.encode()); err != nil {
		c.resume(job, r.all, "the caller hung up")
		return
	}
	// The caller's commit, once the checkpoint is in place.
	r.conn.SetDeadline(time.Now().Add(commitWait))
	var ack [1]byte
	if n, _ := r.conn.Read(ack[:]); n != 1 || ack[0] != commitByte {
		c.resume(job, r.all, "the caller did not put the checkpoint in place")
		return
	}
	if !r.all {
		// The job ends, and the container with it: killed, its status
		// is 137.
		c.logf("checkpoint: committed; the job ends")
		c.signal(unix.SIGKILL, true, func(response) {})
	}
}

// commitByte is the caller's commit of a checkpoint: the job may end.
const commitByte = 'c'

// commitWait bounds the wait for it.
const commitWait = 2 * time.Minute

// resume continues a job whose checkpoint did not go through: criu left
// it stopped (unless leave, where it runs on).
func (c *ctl) resume(job int, leave bool, why string) {
	c.logf("checkpoint: %s; the job goes on", why)
	if !leave {
		c.signal(unix.SIGCONT, true, func(response) {})
	}
}

// dump runs criu dump of the job into fds[0] on the calling thread (see
// onCriuThread), and says what a restore needs.
func (c *ctl) dump(job int, fds []int, leave bool) (*CheckpointInfo, error) {
	wait := func(pid int, d time.Duration) (int, error) {
		code, ok := c.criuExits.wait(pid, d)
		if !ok {
			unix.Kill(-pid, unix.SIGKILL) // criu leads its session
			c.criuExits.wait(pid, 0)
			return 0, fmt.Errorf("criu did not end within %v, and was killed", d)
		}
		return code, nil
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	extra := []uintptr{uintptr(fds[0])}
	if len(fds) == 2 {
		extra = append(extra, uintptr(fds[1]))
	}
	path, err := criuPath(c.cfg.Env, len(fds) == 2, 4)
	if err != nil {
		return nil, err
	}
	caps := criuCaps(false)
	version, err := criuVersion(path, extra, caps, wait)
	if err != nil {
		return nil, err
	}
	names, external, err := stdioNames(job)
	if err != nil {
		return nil, fmt.Errorf("cannot checkpoint: %w", err)
	}
	// The job stays stopped once dumped, until the caller commits: it
	// must not write what its restore will write again. criu does not
	// kill it itself: the container would end with its job, and criu
	// with it.
	stay := "--leave-stopped"
	if leave {
		stay = "--leave-running"
	}
	args := []string{"dump", "-t", strconv.Itoa(job), "-D", "/proc/self/fd/3", "-o", "dump.log", "-v2",
		"--unprivileged", "--shell-job", stay}
	args = append(args, external...)
	start := time.Now()
	pid, err := criuChild{path: path, args: args, files: append([]uintptr{null.Fd(), null.Fd(), null.Fd()}, extra...), caps: caps}.start()
	if err != nil {
		return nil, err
	}
	code, err := wait(pid, dumpTimeout)
	if err == nil && code != 0 {
		why := criuLogError(fds[0], "dump.log")
		switch {
		case why == "":
			why = fmt.Sprintf("status %d", code)
		case strings.Contains(why, "No space left on device"):
			why = "the checkpoint's filesystem is full (" + why + "): free space there, or checkpoint elsewhere"
		}
		err = fmt.Errorf("criu dump failed: %s", why)
	}
	if err != nil {
		if !leave {
			c.signal(unix.SIGCONT, true, func(response) {}) // a failed dump may leave it stopped
		}
		return nil, err
	}
	c.logf("checkpoint: criu %s dumped pid %d in %v", version, job, time.Since(start).Round(time.Millisecond))
	return &CheckpointInfo{Criu: version, Pid: job, MaxPid: maxPid(), Args: c.cfg.Args, Env: c.cfg.Env, Cwd: c.cfg.Cwd,
		Rootfs: c.cfg.Rootfs, Binds: mountList(c.cfg), Stdio: names}, nil
}

// dumpTimeout bounds a dump; the caller waits a minute longer.
const dumpTimeout = checkpointTimeout - time.Minute

// onCriuThread runs f on a thread of its own that holds the init's
// capabilities and is in the job's namespaces and session keyring, as the
// main thread is (the namespaces and keyring a run adds are that thread's
// alone): criu runs where the job does, and never with the caller's keys.
// The thread is thrown away after.
func (c *ctl) onCriuThread(f func() error) error {
	done := make(chan error, 1)
	go func() {
		// Locked to the end: the goroutine's exit ends the thread.
		goruntime.LockOSThread()
		done <- func() error {
			for _, ns := range []struct {
				flag uint64
				name string
			}{{unix.CLONE_NEWNET, "net"}, {unix.CLONE_NEWIPC, "ipc"}, {unix.CLONE_NEWUTS, "uts"}, {unix.CLONE_NEWCGROUP, "cgroup"}} {
				if c.cfg.Unshare&ns.flag == 0 {
					continue
				}
				fd, err := unix.Open("/proc/1/task/1/ns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("checkpoint: the job's %s namespace: %w", ns.name, err)
				}
				err = unix.Setns(fd, int(ns.flag))
				unix.Close(fd)
				if err != nil {
					return fmt.Errorf("checkpoint: join the job's %s namespace: %w", ns.name, err)
				}
			}
			if c.cfg.Keyring != "" {
				if err := joinKeyring(c.cfg.Keyring); err != nil {
					return fmt.Errorf("checkpoint: %w", err)
				}
			}
			return f()
		}()
	}()
	return <-done
}

// holdsCap reports whether the calling thread holds capability c.
func holdsCap(c uint) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Permitted&(1<<(c%32)) != 0
}

// undumpable says what of the container's processes criu cannot save
// rootless, if anything: an established TCP connection (criu needs
// CAP_NET_ADMIN over the host's network to restore it) or SysV shared
// memory (the IPC namespace is the host's). Found here, they are refused
// in a line that says so; criu's own message is obscure.
func undumpable(job int) error {
	sockets := map[string]int{}
	for _, pid := range containerPids() {
		dir := "/proc/" + strconv.Itoa(pid)
		if maps, err := readProcFile(dir + "/maps"); err == nil && bytes.Contains(maps, []byte(" /SYSV")) {
			return fmt.Errorf("pid %d of the job maps SysV shared memory, which criu cannot save rootless (the IPC namespace is the host's): use POSIX shared memory or files", pid)
		}
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil {
				if ino, ok := strings.CutPrefix(l, "socket:["); ok {
					sockets[strings.TrimSuffix(ino, "]")] = pid
				}
			}
		}
	}
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := readProcFile("/proc/" + strconv.Itoa(job) + "/net/" + table)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			// sl local rem st ... inode (the tenth field); 01 is ESTABLISHED.
			if len(f) > 9 && f[3] == "01" {
				if pid, ok := sockets[f[9]]; ok {
					return fmt.Errorf("pid %d of the job has an established TCP connection, which criu cannot save rootless (it needs CAP_NET_ADMIN over the host's network): close it before the checkpoint", pid)
				}
			}
		}
	}
	return nil
}

// seccompedTask is a process of the container, but the init, that runs
// under a seccomp filter; 0 if none does.
func seccompedTask() int {
	for _, pid := range containerPids() {
		if seccompMode(pid) != 0 {
			return pid
		}
	}
	return 0
}

// maxPid is the highest pid or thread id in the container but the
// init's: a restore starts its own pids above it, so that none of them
// takes one that criu restores.
func maxPid() int {
	top := 0
	for _, pid := range containerPids() {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				top = max(top, tid)
			}
		}
		top = max(top, pid)
	}
	return top
}

// mountList is the container's mounts, DEST<-SOURCE, for a restore to
// compare.
func mountList(cfg *initConfig) []string {
	var l []string
	for _, m := range cfg.Mounts {
		l = append(l, m.Destination+"<-"+m.Source)
	}
	return l
}

// restoreJob restores the checkpoint in the directory dir (a descriptor
// of the init's; criu, a site's criu, -1 for the image's) in place of the job's exec, from the main thread, which
// still holds criu's capabilities, and returns the restored job's pid:
// criu restores it as the init's child (--restore-sibling), under the pid
// it had.
func restoreJob(cfg *initConfig, dir, criu int, logf func(string, ...any)) (int, error) {
	if err := checkpointSupport(); err != nil {
		return 0, err
	}
	if !holdsCap(unix.CAP_CHECKPOINT_RESTORE) {
		return 0, errors.New("this container's init holds no CAP_CHECKPOINT_RESTORE (hpcrun clones it so on amd64 only): restore is not available here")
	}
	extra := []uintptr{uintptr(dir)}
	if criu >= 0 {
		extra = append(extra, uintptr(criu))
	}
	path, err := criuPath(cfg.Env, criu >= 0, 4)
	if err != nil {
		return 0, err
	}
	caps := criuCaps(cfg.UID == 0)
	version, err := criuVersion(path, extra, caps, waitChild)
	if err != nil {
		return 0, err
	}
	// The init's own threads, and criu, take pids above the tree's.
	setLastPid(max(cfg.RestoreMaxPid, PidFloor-1), logf)
	// The tree stays stopped until its credentials are checked.
	args := []string{"restore", "-D", "/proc/self/fd/3", "-o", "restore.log", "-v2", "--unprivileged", "--shell-job",
		"--restore-detached", "--restore-sibling", "--skip-file-rwx-check", "--leave-stopped"}
	// The new stdio takes the old one's place: criu gets it as 5, 6 and
	// 7, its own 0, 1 and 2 staying as they are (--shell-job keeps its
	// stdin for the job's terminal settings).
	files := append([]uintptr{0, 1, 2}, extra...)
	if len(files) == 4 {
		files = append(files, ^uintptr(0)) // closed: no site's criu
	}
	files = append(files, 0, 1, 2)
	seen := map[string]bool{}
	for fd, name := range cfg.RestoreStdio {
		if name != "" && !seen[name] && fd < 3 {
			seen[name] = true
			args = append(args, "--inherit-fd", fmt.Sprintf("fd[%d]:%s", 5+fd, name))
		}
	}
	start := time.Now()
	pid, err := criuChild{path: path, args: args, files: files, caps: caps}.start()
	if err != nil {
		return 0, err
	}
	code, err := waitChild(pid, restoreTimeout)
	if err == nil && code != 0 {
		why := criuLogError(dir, "restore.log")
		if why == "" {
			why = fmt.Sprintf("status %d", code)
		}
		err = fmt.Errorf("criu restore failed: %s (its log: restore.log in the checkpoint directory)", why)
	}
	if err != nil {
		unix.Kill(-1, unix.SIGKILL) // whatever criu left
		return 0, err
	}
	job, err := restoredTree(cfg)
	if err != nil {
		unix.Kill(-1, unix.SIGKILL)
		return 0, fmt.Errorf("restore: %w", err)
	}
	unix.Kill(-1, unix.SIGCONT)
	logf("restored pid %d with criu %s in %v", job, version, time.Since(start).Round(time.Millisecond))
	return job, nil
}

// restoreTimeout bounds a restore.
const restoreTimeout = 10 * time.Minute

// waitChild waits for the init's child pid, for at most d (the init's
// reaper does not run yet), and kills its session when d runs out.
func waitChild(pid int, d time.Duration) (int, error) {
	t := time.AfterFunc(d, func() { unix.Kill(-pid, unix.SIGKILL) })
	defer t.Stop()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if ws.Signaled() && ws.Signal() == syscall.SIGKILL && !t.Stop() {
		return 0, fmt.Errorf("criu did not end within %v, and was killed", d)
	}
	return WaitStatusCode(ws), nil
}

// restoredTree checks the tree criu restored, stopped, before it runs on:
// every process holds the job's uid and gid, no_new_privs where the job
// had it, and no capability beyond the job's, whatever the checkpoint's
// images said; and it returns its root, the init's one child.
func restoredTree(cfg *initConfig) (int, error) {
	root := 0
	for _, pid := range containerPids() {
		st, err := procStatus(pid)
		if err != nil {
			continue // gone
		}
		if st["PPid"] == "1" {
			if root != 0 {
				return 0, fmt.Errorf("criu left more than one process beside the job (%d, %d)", root, pid)
			}
			root = pid
		}
		if err := checkCreds(cfg, pid, st); err != nil {
			return 0, err
		}
	}
	if root == 0 {
		return 0, errors.New("criu restored no process")
	}
	return root, nil
}

// checkCreds says how pid's credentials (its /proc status fields) exceed
// the job's, if they do.
func checkCreds(cfg *initConfig, pid int, st map[string]string) error {
	for _, k := range []string{"Uid", "Gid"} {
		want := strconv.Itoa(int(cfg.UID))
		if k == "Gid" {
			want = strconv.Itoa(int(cfg.GID))
		}
		for _, id := range strings.Fields(st[k]) {
			if id != want {
				return fmt.Errorf("restored pid %d has %s %s, not the job's %s: the checkpoint was altered", pid, k, st[k], want)
			}
		}
	}
	if cfg.NoNewPrivs && st["NoNewPrivs"] != "1" {
		return fmt.Errorf("restored pid %d runs without no_new_privs, which the job had: the checkpoint was altered", pid)
	}
	for k, allowed := range map[string]uint64{"CapPrm": cfg.Caps.Permitted, "CapEff": cfg.Caps.Permitted, "CapInh": cfg.Caps.Inheritable,
		"CapAmb": cfg.Caps.Ambient, "CapBnd": ^uint64(0)} {
		v, err := strconv.ParseUint(st[k], 16, 64)
		if err != nil || v&^allowed != 0 {
			return fmt.Errorf("restored pid %d holds capabilities %s %s beyond the job's: the checkpoint was altered", pid, k, st[k])
		}
	}
	return nil
}

// procStatus is pid's /proc status, field by field.
func procStatus(pid int) (map[string]string, error) {
	b, err := readProcFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// Checkpoint has container id's init checkpoint its job into dir, which
// the caller made and owns; criu is a site's criu, or nil for the
// image's. Once the caller has put the checkpoint in place, commit(true)
// ends the job, and the container with it, unless leave; commit(false)
// continues it, as a caller that never commits does.
func (c *Containers) Checkpoint(id string, dir, criu *os.File, leave bool) (*State, *CheckpointInfo, func(bool) error, error) {
	sd, err := c.openDir(id)
	if err != nil {
		return nil, nil, nil, err
	}
	defer sd.Close()
	s, err := loadAt(int(sd.Fd()), sd.Name(), id)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case s.Members > 0:
		return nil, nil, nil, fmt.Errorf("container %s is a group container of an MPI step: hpcrun checkpoint takes one job, not a step's tasks", id)
	case s.Status == StatusPaused:
		return nil, nil, nil, fmt.Errorf("container %s is paused: resume it first", id)
	case s.Status != StatusRunning:
		return nil, nil, nil, fmt.Errorf("container %s is %s: only a running job can be checkpointed", id, s.Status)
	}
	info, commit, err := checkpointJob(atDir(sd), dir, criu, leave)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	return s, info, commit, nil
}
