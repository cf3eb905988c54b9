package runtime

// The meeting of a group's members before its container starts (see
// Containers.Join). The tasks of a group come one by one and each may
// fail on its own: a different image, an unpack that fills the disk, a
// task killed. A task that fails alone would leave the others waiting
// for it in MPI_Init until the time limit, for nothing kills them. So
// every member registers as soon as it knows it is one, says which image
// it will run once it has it, and no member goes on until all have; the
// first member to see a problem records it, and every member ends with
// that same reason.
//
// The meeting is a directory under the state root, "join:ID" (a name no
// container ID can take), holding:
//   - m.PID.N, one per member, which the member keeps flock'ed for its
//     whole life (the descriptor is close-on-exec: nothing it starts
//     holds it). Empty while the member gets ready, then "ready IMAGE".
//     A file no longer locked is a member that has ended.
//   - outcome, "go" or "fail REASON", written once by whoever sees it
//     first (link(2) of a finished file: the first writer wins, and no
//     reader ever sees half of it).
//   - gen, the launch that the members came from (see Enter).
//
// A directory in which no member lives any more is an earlier group's
// (same tag, or a requeued step) and is cleared by the next to come,
// unless it is of the same launch and the newcomer started before the
// group last changed (or whenever it started, for a Slurm step's group,
// which its launch runs once): then the newcomer is a task that came
// late, and it hears the group's outcome at once instead of waiting for
// tasks that have already ended (see cameLate).
// Members watch the directory with inotify: a member's end closes its
// file, which the watch sees as IN_CLOSE_WRITE.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/procs"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

const (
	groupPrefix = "join:"
	memberPre   = "m."
	outcomeFile = "outcome"
	genFile     = "gen"
)

// ErrGroup is what every member of a group that cannot start returns,
// wrapped with the one reason that all of them print.
var ErrGroup = errors.New("group failed")

// GroupError is a group's recorded failure.
type GroupError struct{ Reason string }

func (e *GroupError) Error() string { return e.Reason }
func (e *GroupError) Unwrap() error { return ErrGroup }

// Member is this process's place in a group's meeting.
type Member struct {
	id      string
	members int
	dir     int      // the meeting's directory
	self    *os.File // m.PID, locked
	since   time.Time
	gen     string
	born    time.Time // when this process started; zero if unknown
	// once: the group's launch runs it once, so a member of it is late
	// whenever it started (see cameLate).
	once bool
}

// Enter registers this process as a member of group id, which members
// tasks make. Call it before anything that may fail, and Close the
// member when the process is done with the group. gen names the launch
// the tasks came from (the process that started them all, such as the
// step's slurmstepd; "" when unknown): a task that comes after the other
// tasks of its launch have failed and ended gets their failure at once.
func (c *Containers) Enter(id string, members int, gen string) (*Member, error) {
	return c.enterAt(id, members, gen, started(), false)
}

// enterAt is Enter for a process that started at born (zero: unknown);
// once as for Member.
func (c *Containers) enterAt(id string, members int, gen string, born time.Time, once bool) (*Member, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	if members < 1 {
		return nil, errors.New("a group needs one member or more")
	}
	root, err := unix.Open(c.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: c.Root, Err: err}
	}
	defer unix.Close(root)
	for range 10 {
		dir, err := openGroupDir(root, groupPrefix+id)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", id, err)
		}
		m := &Member{id: id, members: members, dir: dir, since: time.Now(), gen: termsafe.Line(gen), born: born, once: once}
		ok, err := m.register(root)
		if ok || err != nil {
			if err != nil {
				unix.Close(dir)
				return nil, fmt.Errorf("group %s: %w", id, err)
			}
			if reason, failed := strings.CutPrefix(readOutcome(dir), "fail "); failed {
				m.Close()
				return nil, &GroupError{Reason: reason}
			}
			return m, nil
		}
		unix.Close(dir) // cleared away meanwhile: open the new one
	}
	return nil, fmt.Errorf("group %s: its directory keeps being removed under %s", id, c.Root)
}

// openGroupDir opens (making it if need be) a meeting's directory,
// locked, as a descriptor relative to the state root.
func openGroupDir(root int, name string) (int, error) {
	if err := unix.Mkdirat(root, name, 0o700); err != nil && err != unix.EEXIST {
		return -1, &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	dir, err := unix.Openat(root, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if err := unix.Flock(dir, unix.LOCK_EX); err != nil {
		unix.Close(dir)
		return -1, &os.PathError{Op: "lock", Path: name, Err: err}
	}
	return dir, nil
}

// register clears an earlier group's leftovers and adds this process's
// member file, under the directory's lock. It reports false when the
// directory it holds was removed meanwhile (Sweep).
func (m *Member) register(root int) (bool, error) {
	defer unix.Flock(m.dir, unix.LOCK_UN)
	var here, named unix.Stat_t
	if unix.Fstat(m.dir, &here) != nil || unix.Fstatat(root, groupPrefix+m.id, &named, unix.AT_SYMLINK_NOFOLLOW) != nil ||
		here.Ino != named.Ino || here.Dev != named.Dev {
		return false, nil
	}
	v := readGroup(m.dir, m.id, m.members)
	if !v.anyAlive() && !m.cameLate(&here) {
		clearDir(m.dir)
		if m.gen != "" {
			writeSmall(m.dir, genFile, m.gen)
		}
	}
	memberSeq++
	pid := strconv.Itoa(os.Getpid()) + "." + strconv.Itoa(memberSeq)
	tmp := ".t" + pid
	fd, err := unix.Openat(m.dir, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	// Locked before it is named a member, so that no one ever sees the
	// member file of a live process unlocked.
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		unix.Unlinkat(m.dir, tmp, 0)
		return false, &os.PathError{Op: "lock", Path: tmp, Err: err}
	}
	if err := unix.Renameat2(m.dir, tmp, m.dir, memberPre+pid, unix.RENAME_NOREPLACE); err != nil {
		unix.Close(fd)
		unix.Unlinkat(m.dir, tmp, 0)
		return false, &os.PathError{Op: "rename", Path: memberPre + pid, Err: err}
	}
	m.self = os.NewFile(uintptr(fd), memberPre+pid)
	return true, nil
}

// cameLate reports whether this process is a task of the launch whose
// ended group it found (dir, as stat'ed): the same launch (gen), and
// started before the group's last change. Why the start too: a parent
// that runs the group again, such as a shell, is the same launch, but
// its new tasks start after the old group ended, and must not inherit
// its outcome or its members. The margin is /proc's clock tick, to
// which the start is rounded down; a task that it misjudges waits for
// join_timeout, rather than taking an old group's outcome as its own.
// A launch that runs its group once (a Slurm step's slurmstepd: a later
// step is another group) needs no start: on a loaded node a task may
// start after the others of its step have failed and ended.
func (m *Member) cameLate(dir *unix.Stat_t) bool {
	const tick = 10 * time.Millisecond
	if m.gen == "" || readSmall(m.dir, genFile) != m.gen {
		return false
	}
	changed := time.Unix(dir.Mtim.Unix())
	return m.once || !m.born.IsZero() && m.born.Add(tick).Before(changed)
}

// started is when this process started, on the clock of file times, to
// /proc's tick (USER_HZ, 100 on every Linux); zero when unknown.
func started() time.Time {
	ticks, err := procs.StartTime(os.Getpid())
	var boot unix.Timespec
	if err != nil || unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil {
		return time.Time{}
	}
	age := time.Duration(boot.Nano()) - time.Duration(ticks)*(time.Second/100)
	return time.Now().Add(-age)
}

// memberSeq tells apart the member files of one process (tests enter a
// group more than once).
var memberSeq int

// clearDir removes every entry of a meeting's directory.
func clearDir(dir int) {
	for _, name := range dirNames(dir) {
		unix.Unlinkat(dir, name, 0)
	}
}

// dirNames lists a directory given as a descriptor.
func dirNames(dir int) []string {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return names
}

// Ready says that this member has its image (a manifest digest, or for a
// plain directory its path) and can start.
func (m *Member) Ready(image string) error {
	if _, err := m.self.WriteAt([]byte("ready "+termsafe.Line(image)+"\n"), 0); err != nil {
		return fmt.Errorf("group %s: %w", m.id, err)
	}
	return nil
}

// Fail records why this member cannot start, unless another member
// recorded a reason first, and returns the group's error: the same for
// every member.
func (m *Member) Fail(reason string) error {
	return m.settle("fail " + termsafe.Line(reason))
}

// settle records the group's outcome if none is yet, and acts on the one
// recorded: nil to start, or the group's failure.
func (m *Member) settle(outcome string) error {
	tmp := ".o" + strconv.Itoa(os.Getpid())
	// O_NONBLOCK: a fifo left there must not hold the member forever.
	if fd, err := unix.Openat(m.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600); err == nil {
		_, werr := unix.Write(fd, []byte(outcome+"\n"))
		unix.Close(fd)
		if werr == nil {
			unix.Linkat(m.dir, tmp, m.dir, outcomeFile, 0) // EEXIST: someone was first
		}
		unix.Unlinkat(m.dir, tmp, 0)
	}
	got := readOutcome(m.dir)
	if got == "" {
		// Not even recorded (a full disk can refuse the file): this
		// member's own outcome stands for it.
		got = outcome
	}
	if got == "go" {
		return nil
	}
	return &GroupError{Reason: strings.TrimPrefix(got, "fail ")}
}

// Wait returns once the group can start (nil), or with its failure. It
// waits at most timeout for members that have not come yet; members
// that came are waited for as long as they live, for an unpack may take
// minutes.
func (m *Member) Wait(timeout time.Duration) error {
	watch := m.watch()
	if watch >= 0 {
		defer unix.Close(watch)
	}
	for {
		v := readGroup(m.dir, m.id, m.members)
		start, reason := v.verdict(time.Since(m.since), timeout)
		switch {
		case start:
			return m.settle("go")
		case reason != "":
			return m.settle("fail " + reason)
		}
		m.sleep(watch)
	}
}

// watch is an inotify descriptor on the meeting's directory, or -1 where
// inotify is not to be had (then Wait polls).
func (m *Member) watch() int {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return -1
	}
	const events = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_DELETE
	if _, err := unix.InotifyAddWatch(fd, "/proc/self/fd/"+strconv.Itoa(m.dir), events); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

// sleep waits for a change in the meeting's directory, or a while.
func (m *Member) sleep(watch int) {
	const poll = 250 * time.Millisecond // the timeout's tick, and the fallback's
	if watch < 0 {
		time.Sleep(poll / 5)
		return
	}
	fds := []unix.PollFd{{Fd: int32(watch), Events: unix.POLLIN}}
	unix.Poll(fds, int(poll/time.Millisecond))
	buf := make([]byte, 4096)
	for {
		if n, err := unix.Read(watch, buf); n <= 0 || err != nil {
			return
		}
	}
}

// Close ends this process's membership: to the others, it has ended.
func (m *Member) Close() {
	if m.self != nil {
		m.self.Close()
	}
	unix.Close(m.dir)
}

// memberState is one member file, as read.
type memberState struct {
	pid   int
	alive bool   // its process still holds the lock
	image string // set once ready
}

// groupView is a meeting's directory, as read.
type groupView struct {
	id      string
	want    int // members the group needs
	members []memberState
	outcome string // "", "go" or "fail REASON"
}

func (v groupView) anyAlive() bool {
	return slices.ContainsFunc(v.members, func(s memberState) bool { return s.alive })
}

// verdict decides, from one reading of the meeting, whether a member
// starts (true), fails (a reason), or waits (neither). waited is how
// long this member has been waiting, against timeout.
func (v groupView) verdict(waited, timeout time.Duration) (bool, string) {
	switch {
	case v.outcome == "go":
		return true, ""
	case strings.HasPrefix(v.outcome, "fail "):
		return false, strings.TrimPrefix(v.outcome, "fail ")
	}
	var images []string
	ready := 0
	for _, s := range v.members {
		if !s.alive {
			return false, fmt.Sprintf("a task of group %s (pid %d) ended before the group started (killed, or failed without a word); every task of the group stops: see that task's output and the job's log, then rerun", v.id, s.pid)
		}
		if s.image != "" {
			ready++
			if !slices.Contains(images, s.image) {
				images = append(images, s.image)
			}
		}
	}
	switch {
	case len(images) > 1:
		return false, fmt.Sprintf("the tasks of group %s ask for different images (%s on one, %s on another); give every task the same --image, or each its own --join-tag, or --no-join", v.id, images[0], images[1])
	case len(v.members) > v.want:
		return false, fmt.Sprintf("%d tasks came to group %s, which is for %d; give --join-count the number of tasks on this node, or each run its own --join-tag", len(v.members), v.id, v.want)
	case ready == v.want:
		return true, ""
	case len(v.members) < v.want && waited >= timeout:
		return false, fmt.Sprintf("only %d of the %d tasks of group %s came within %s; give --join-count the number of tasks on this node, or --no-join", len(v.members), v.want, v.id, timeout)
	}
	return false, ""
}

// readGroup reads a meeting's directory.
func readGroup(dir int, id string, want int) groupView {
	v := groupView{id: id, want: want, outcome: readOutcome(dir)}
	for _, name := range dirNames(dir) {
		num, _, _ := strings.Cut(strings.TrimPrefix(name, memberPre), ".")
		pid, err := strconv.Atoi(num)
		if !strings.HasPrefix(name, memberPre) || err != nil {
			continue
		}
		if s, ok := readMember(dir, name); ok {
			s.pid = pid
			v.members = append(v.members, s)
		}
	}
	return v
}

// readMember reads a member file and whether its process holds it.
func readMember(dir int, name string) (memberState, bool) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return memberState{}, false // cleared meanwhile
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return memberState{}, false // planted: no member's
	}
	var s memberState
	s.alive = unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB) == unix.EWOULDBLOCK
	// Room for "ready " and a rootfs path of up to PATH_MAX: a line cut
	// short would never read as ready, and the group would wait forever.
	buf := make([]byte, 8192)
	n, _ := unix.Pread(fd, buf, 0)
	if line, ok := strings.CutPrefix(string(buf[:max(n, 0)]), "ready "); ok && strings.HasSuffix(line, "\n") {
		s.image = strings.TrimSuffix(line, "\n")
	}
	return s, true
}

// readOutcome reads a meeting's recorded outcome, "" if none.
func readOutcome(dir int) string { return readSmall(dir, outcomeFile) }

// readSmall reads a file of the meeting, at most 8 KiB, without the
// final newline; "" if it is missing or no small regular file (see
// readStateAt).
func readSmall(dir int, name string) string {
	b, err := readStateAt(dir, name, 8192)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// writeSmall writes a file of the meeting whole, under the directory's
// lock; a failure leaves it missing, which only costs a late task the
// wait for the group's timeout.
func writeSmall(dir int, name, text string) {
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return
	}
	if _, err := unix.Write(fd, []byte(text+"\n")); err != nil {
		unix.Close(fd)
		unix.Unlinkat(dir, name, 0)
		return
	}
	unix.Close(fd)
}

// failedKeep is how long a failed group's directory outlives its members:
// a task of the same launch that comes late (slow to start, or started
// after a sleep) hears the group's reason from it at once, instead of
// finding nothing and waiting join_timeout for tasks that have ended. A
// new launch with the same name clears it whenever it comes.
const failedKeep = 10 * time.Minute

// keepFailed reports whether a meeting that failed changed (its outcome
// was recorded) less than failedKeep before now.
func keepFailed(dir int, v groupView, now time.Time) bool {
	if !strings.HasPrefix(v.outcome, "fail ") {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(dir, &st) != nil {
		return false
	}
	return now.Sub(time.Unix(st.Mtim.Unix())) < failedKeep
}

// sweepGroups removes the meetings in which no member lives any more.
func (c *Containers) sweepGroups(names []string) {
	if c.fd == nil {
		return
	}
	root := int(c.fd.Fd())
	for _, name := range names {
		id, ok := strings.CutPrefix(name, groupPrefix)
		if !ok {
			continue
		}
		dir, err := unix.Openat(root, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// Only one that no one is entering (Enter holds the lock), in
		// which no member lives, and which no task of its launch may
		// still come to (see keepFailed).
		if unix.Flock(dir, unix.LOCK_EX|unix.LOCK_NB) == nil {
			if v := readGroup(dir, id, 0); !v.anyAlive() && !keepFailed(dir, v, time.Now()) {
				clearDir(dir)
				unix.Unlinkat(root, name, unix.AT_REMOVEDIR)
			}
		}
		unix.Close(dir)
	}
}
