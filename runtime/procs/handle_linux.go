package procs

import (
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"golang.org/x/sys/unix"
)

// ErrGone says that a process has ended, or that its pid now names another
// process.
var ErrGone = errors.New("the process has ended")

// Handle pins one process, so that a signal or a wait can never reach a
// process that took over its pid since: a pidfd where the kernel has them
// (pidfd_open and pidfd_send_signal, Linux 5.3), else the process's /proc
// directory. Lookups below an open /proc/PID directory fail once the
// process is reaped, even if the pid is reused, so the directory names the
// process for good; but before Linux 5.1 nothing sends a signal through it,
// and nothing can poll it for the process's end (see Signal and Wait).
type Handle struct {
	fd    int
	pid   int
	pidfd bool
}

// Open returns a Handle of the process with host pid pid and start time
// start (see StartTime), or ErrGone. The start time is checked after the
// process is pinned, so a pid that the caller read from a file the user
// may write is never taken for another process.
func Open(pid int, start uint64) (*Handle, error) {
	return open(pid, start, !fallback.Forced(fallback.Pidfd))
}

func open(pid int, start uint64, pidfd bool) (*Handle, error) {
	h, err := pin(pid, pidfd)
	if err != nil {
		return nil, err
	}
	if st, err := h.stat(); err != nil || st.start != start || ended(st.state) {
		h.Close()
		return nil, ErrGone
	}
	return h, nil
}

// OpenInit is Open for the init of one of the caller's containers, whose
// pid and start time were read from state the user may write: beyond the
// start time, the process must belong to the caller's effective uid (the
// state root's owner, which root has become) and be pid 1 of a pid
// namespace below /proc's, as every container's init is. Pid 1 of the
// host, another user's process or a plain process of the user named in a
// forged state.json is ErrGone: never reported as the container's init,
// never signalled.
func OpenInit(pid int, start uint64) (*Handle, error) {
	if pid <= 1 {
		return nil, ErrGone
	}
	h, err := Open(pid, start)
	if err != nil {
		return nil, err
	}
	var b []byte
	if h.pidfd {
		b, err = os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/status")
	} else {
		b, err = readAt(h.fd, "status")
	}
	nspid, uid, perr := parseStatus(string(b))
	if err != nil || perr != nil || uid != os.Geteuid() || len(nspid) < 2 || nspid[len(nspid)-1] != 1 {
		h.Close()
		return nil, ErrGone
	}
	// Read by pid through a pidfd: the process must still be the pinned
	// one, not a newcomer that took the pid between the two reads.
	if st, err := h.stat(); err != nil || st.start != start || ended(st.state) {
		h.Close()
		return nil, ErrGone
	}
	return h, nil
}

// InitAlive reports whether OpenInit finds the init alive.
func InitAlive(pid int, start uint64) bool {
	h, err := OpenInit(pid, start)
	if err != nil {
		return false
	}
	h.Close()
	return true
}

// Parent returns the caller's parent process pinned as a file: a pidfd,
// or the parent's /proc directory (see Handle). FromFile reads it back,
// in this process or in one that inherits it.
func Parent() (*os.File, error) {
	ppid := os.Getppid()
	h, err := pin(ppid, !fallback.Forced(fallback.Pidfd))
	if err != nil {
		return nil, err
	}
	// A parent that ended before it was pinned left us to a reaper, and
	// its pid may name another process by now.
	if os.Getppid() != ppid {
		h.Close()
		return nil, ErrGone
	}
	return os.NewFile(uintptr(h.fd), "parent"), nil
}

// FromFD makes a Handle of a descriptor that Parent made, perhaps in
// another process. The Handle owns fd.
func FromFD(fd int) *Handle {
	var st unix.Stat_t
	dir := unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
	return &Handle{fd: fd, pidfd: !dir}
}

// pin opens a pidfd of pid if asked to, or its /proc directory on kernels
// without pidfds.
func pin(pid int, pidfd bool) (*Handle, error) {
	if pidfd {
		fd, err := unix.PidfdOpen(pid, 0)
		if err == nil {
			return &Handle{fd: fd, pid: pid, pidfd: true}, nil
		}
		if err == unix.ESRCH {
			return nil, ErrGone
		}
		if err != unix.ENOSYS && err != unix.EPERM {
			return nil, &os.SyscallError{Syscall: "pidfd_open", Err: err}
		}
	}
	fd, err := openProc(pid)
	if err == unix.ENOENT || err == unix.ESRCH {
		return nil, ErrGone
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/" + strconv.Itoa(pid), Err: err}
	}
	return &Handle{fd: fd, pid: pid}, nil
}

// stat reads the process's /proc/PID/stat; through a pidfd, by pid, which
// is the pinned process's while the pidfd shows it alive.
func (h *Handle) stat() (stat, error) {
	var b []byte
	var err error
	if h.pidfd {
		b, err = os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/stat")
	} else {
		b, err = readAt(h.fd, "stat")
	}
	if err != nil {
		return stat{}, ErrGone
	}
	return parseStat(string(b))
}

// Signal sends sig to the process; nil if it has ended. Without
// pidfd_send_signal the process is looked up through its directory just
// before kill(2), which leaves a race of two syscalls: the process would
// have to end and be reaped, and its pid be taken, in between.
func (h *Handle) Signal(sig unix.Signal) error {
	if h.pidfd {
		if err := unix.PidfdSendSignal(h.fd, sig, nil, 0); err != nil && err != unix.ESRCH {
			return &os.SyscallError{Syscall: "pidfd_send_signal", Err: err}
		}
		return nil
	}
	return signal(h.fd, h.pid, sig)
}

// Wait waits until the process has ended, for at most timeout (forever
// when it is negative), and reports whether it has. A pidfd becomes
// readable then; a /proc directory is polled, every 20ms at most, and
// shows a zombie, or nothing once it is reaped.
func (h *Handle) Wait(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	if h.pidfd {
		return awaitPidfd(h.fd, timeout, deadline)
	}
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		if st, err := h.stat(); err != nil || ended(st.state) {
			return true
		}
		if timeout >= 0 && time.Now().Add(pause).After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}

func awaitPidfd(fd int, timeout time.Duration, deadline time.Time) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		ms := -1
		if timeout >= 0 {
			ms = max(0, int(time.Until(deadline).Milliseconds()))
		}
		n, err := unix.Poll(pfd, ms)
		if err != unix.EINTR || ms == 0 {
			return n > 0 || err != nil && err != unix.EINTR
		}
	}
}

// Close releases the handle.
func (h *Handle) Close() { unix.Close(h.fd) }

func ended(state byte) bool { return state == 'Z' || state == 'X' }
