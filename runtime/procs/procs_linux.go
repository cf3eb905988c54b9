// Package procs finds, measures and pauses the processes of a running
// container from /proc alone. hpcrun names a container by the host pid of
// its init, PID 1 of the container's pid namespace; the container's
// processes are those in that namespace, or in one nested below it (a job
// may run bubblewrap or hpcrun itself).
//
// hpcrun creates no cgroup of its own: its containers share theirs with the
// caller, often a Slurm step. So there is no cgroup to read totals from,
// and freezing the shared one would freeze hpcrun, the step's other tasks
// and slurmstepd's helpers with them. Totals are the sums over the
// processes. Where the cgroup is delegated to the caller, FreezeCgroup
// moves the container's processes into a child cgroup and freezes that;
// elsewhere Freeze stops them with SIGSTOP, sweeping /proc until a sweep
// finds nothing left running: unlike a freezer, signals do not reach the
// children that processes fork while a sweep goes on. It also differs in
// ways the caller may see: a parent waiting with WUNTRACED learns that its
// child stopped, and Thaw continues also the processes that had stopped
// themselves before.
package procs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is one process of a container.
type Proc struct {
	Pid     int           // on the host
	NSPid   int           // in the container's pid namespace
	PPid    int           // on the host
	UID     int           // real uid, on the host
	State   byte          // R, S, D, T, t, Z, ... as in proc(5)
	CPU     time.Duration // user and system time
	RSS     int64         // resident bytes
	Start   uint64        // start time in clock ticks since boot, against pid reuse
	Comm    string        // the kernel's short name of the command
	Cmdline []string      // empty for zombies
}

// Stats are the totals of a container.
type Stats struct {
	CPU   time.Duration
	RSS   int64 // pages shared by several processes count once for each, as in ps
	Procs int
}

// tick is the unit of the times in /proc/PID/stat: 1/USER_HZ seconds, and
// USER_HZ is 100 on every architecture Go builds for, whatever the kernel's
// own HZ. (sysconf(_SC_CLK_TCK) would need cgo to ask.)
const tick = time.Second / 100

// List returns the processes of the container whose init has host pid
// init, init included, in the order of their pids inside. Processes that end
// while it reads /proc are left out.
func List(init int) ([]Proc, error) {
	var procs []Proc
	if err := scan(init, func(p Proc, _ int) { procs = append(procs, p) }); err != nil {
		return nil, err
	}
	slices.SortFunc(procs, func(a, b Proc) int { return a.NSPid - b.NSPid })
	return procs, nil
}

// Collect sums CPU time and resident memory over the container's processes.
func Collect(init int) (Stats, error) {
	procs, err := List(init)
	s := Stats{Procs: len(procs)}
	for _, p := range procs {
		s.CPU += p.CPU
		s.RSS += p.RSS
	}
	return s, err
}

// StartTime returns when host pid started, in clock ticks since boot. A pid
// and its start time name a process for good: the pid alone may be reused.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	st, err := parseStat(string(b))
	return st.start, err
}

// Alive reports whether the process that had host pid and start time
// start still runs. One that has exited but that nobody has reaped yet, a
// zombie, does not: it runs nothing and holds nothing, and may stay a
// zombie for good where the process that inherits orphans (the node's
// init, or a subreaper) does not reap them.
func Alive(pid int, start uint64) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st, err := parseStat(string(b))
	return err == nil && st.start == start && st.state != 'Z' && st.state != 'X'
}

// scan calls fn for each process of the container of init, init first, with
// the process's /proc directory open as dir. Everything about a process is
// read through that directory, and a signal sent through it (see signal)
// reaches only that process: if the process ends and another one takes its
// pid, the directory goes stale instead of describing the newcomer.
func scan(init int, fn func(p Proc, dir int)) error {
	dir, err := openProc(init)
	if err != nil {
		return fmt.Errorf("process %d: %w", init, err)
	}
	defer unix.Close(dir)
	ns, err := pidNS(dir)
	if err != nil {
		return fmt.Errorf("process %d: pid namespace: %w", init, err)
	}
	p, nspid, err := read(dir, init)
	if err != nil {
		return fmt.Errorf("process %d: %w", init, err)
	}
	// A stale pid that now names a process of the caller must not
	// make List report, and Freeze stop, every process on the host.
	level := len(nspid) - 1
	if level < 1 || nspid[level] != 1 {
		return fmt.Errorf("process %d is not the init of a container (its pid in its own namespace is %d)", init, nspid[level])
	}
	p.NSPid = 1
	fn(p, dir)

	d, err := os.Open("/proc")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == init {
			continue
		}
		if err := scanOne(pid, ns, level, fn); err != nil {
			return fmt.Errorf("process %d: %w", pid, err)
		}
	}
	return nil
}

// scanOne calls fn for pid if it lives in pid namespace ns, at depth level
// of /proc's view, or below it.
func scanOne(pid int, ns nsID, level int, fn func(p Proc, dir int)) error {
	dir, err := openProc(pid)
	if err != nil {
		return nil // gone
	}
	defer unix.Close(dir)
	if !inside(dir, ns) {
		return nil
	}
	p, nspid, err := read(dir, pid)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ESRCH):
		return nil // gone meanwhile
	case err != nil:
		return err
	case len(nspid) <= level:
		return fmt.Errorf("NSpid %v: not below the container's namespace", nspid)
	}
	p.NSPid = nspid[level]
	fn(p, dir)
	return nil
}

func openProc(pid int) (int, error) {
	return unix.Open("/proc/"+strconv.Itoa(pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// nsID names a namespace by its nsfs file, as the /proc/PID/ns links do.
type nsID struct{ dev, ino uint64 }

// pidNS returns the pid namespace of the process whose /proc directory is
// dir.
func pidNS(dir int) (nsID, error) {
	fd, err := unix.Openat(dir, "ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nsID{}, err
	}
	defer unix.Close(fd)
	return nsOf(fd)
}

func nsOf(fd int) (nsID, error) {
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	return nsID{uint64(st.Dev), uint64(st.Ino)}, err
}

// inside reports whether the process whose /proc directory is dir lives in
// pid namespace ns or in one nested below it. Climbing from its namespace
// to the parents ends at the namespace of the caller: the kernel shows no
// further. Another user's process cannot be inspected, and is no
// container's of ours.
func inside(dir int, ns nsID) bool {
	fd, err := unix.Openat(dir, "ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	for {
		id, err := nsOf(fd)
		if err == nil && id == ns {
			unix.Close(fd)
			return true
		}
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return false
		}
		fd = parent
	}
}

// read reads the process whose /proc directory is dir, and its pids from
// /proc's pid namespace down to its own. NSPid is left to the caller.
func read(dir, pid int) (Proc, []int, error) {
	b, err := readAt(dir, "stat")
	if err != nil {
		return Proc{}, nil, err
	}
	st, err := parseStat(string(b))
	if err != nil {
		return Proc{}, nil, err
	}
	b, err = readAt(dir, "status")
	if err != nil {
		return Proc{}, nil, err
	}
	nspid, uid, err := parseStatus(string(b))
	if err != nil {
		return Proc{}, nil, err
	}
	b, err = readAt(dir, "statm")
	if err != nil {
		return Proc{}, nil, err
	}
	// statm: total program size, then resident pages.
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return Proc{}, nil, fmt.Errorf("statm %q: %w", b, err)
	}
	b, err = readAt(dir, "cmdline")
	if err != nil {
		return Proc{}, nil, err
	}
	p := Proc{
		Pid:     pid,
		PPid:    st.ppid,
		UID:     uid,
		State:   st.state,
		CPU:     time.Duration(st.ticks) * tick,
		RSS:     resident * int64(os.Getpagesize()),
		Start:   st.start,
		Comm:    st.comm,
		Cmdline: parseCmdline(b),
	}
	return p, nspid, nil
}

// readAt reads file name of the /proc directory dir.
func readAt(dir int, name string) ([]byte, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(f)
}

// stat is what List takes from /proc/PID/stat.
type stat struct {
	comm  string
	state byte
	ppid  int
	ticks uint64 // user and system time
	start uint64
}

// parseStat parses a /proc/PID/stat line. The command name, in
// parentheses, may itself hold spaces and parentheses, unescaped: it ends at
// the last ')', after which no field can hold one.
func parseStat(s string) (stat, error) {
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("malformed stat %q", s)
	}
	// f[0] is field 3 of proc(5), the state; field n is f[n-3].
	f := strings.Fields(s[end+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("malformed stat %q", s)
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	start, err4 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return stat{}, fmt.Errorf("malformed stat %q: %w", s, err)
	}
	return stat{comm: s[open+1 : end], state: f[0][0], ppid: ppid, ticks: utime + stime, start: start}, nil
}

// parseStatus takes from /proc/PID/status the process's pids (NSpid: from
// the pid namespace of /proc down to the process's own) and its real uid.
func parseStatus(s string) (nspid []int, uid int, err error) {
	uid = -1
	for line := range strings.Lines(s) {
		key, val, _ := strings.Cut(line, ":")
		f := strings.Fields(val)
		switch {
		case key == "NSpid":
			for _, v := range f {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, 0, fmt.Errorf("status: NSpid: %w", err)
				}
				nspid = append(nspid, n)
			}
		case key == "Uid" && len(f) > 0:
			if uid, err = strconv.Atoi(f[0]); err != nil {
				return nil, 0, fmt.Errorf("status: Uid: %w", err)
			}
		}
	}
	if len(nspid) == 0 || uid < 0 {
		return nil, 0, errors.New("status: no NSpid or Uid (Linux 4.1 or later needed)")
	}
	return nspid, uid, nil
}

// parseCmdline splits /proc/PID/cmdline, arguments each ended by a NUL. A
// process that rewrote its arguments (setproctitle) may leave off the last
// NUL.
func parseCmdline(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// Descendants lists the live processes below pid (not zombies), from
// /proc.
func Descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pp, state, ok := StatParent(b); ok && state != 'Z' {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q, n := parent[p], 0; n < len(parent); q, n = parent[q], n+1 {
			if q == pid {
				out = append(out, p)
				break
			}
			if _, ok := parent[q]; !ok {
				break
			}
		}
	}
	return out
}

// StatParent reads the state and parent pid of a /proc/PID/stat line,
// which may be cut short after them. The command name, in parentheses,
// may hold spaces and parentheses: the fields are counted after its last
// ')'.
func StatParent(b []byte) (ppid int, state byte, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, f[0][0], err == nil
}
