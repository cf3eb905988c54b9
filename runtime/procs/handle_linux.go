package procs

import (
	"errors"
	"os"
	"strconv"
	"strings"
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
	// statFile: fd is the process's /proc/PID/stat, not its directory
	// (see Parent); reads of it fail the same way once it is reaped.
	statFile bool
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
// or on kernels without pidfds the parent's /proc/PID/stat, a regular
// file, never its directory: the init of a container holds it while its
// job runs, and a descriptor of a host directory there is a way out of the
// container's root (runc's CVE-2024-21626), whereas no path resolves
// below a file. A read of it fails once the parent is reaped, whoever
// takes its pid. FromFD reads it back, in this process or in one that
// inherits it.
func Parent() (*os.File, error) {
	ppid := os.Getppid()
	var f *os.File
	if h, err := pin(ppid, !fallback.Forced(fallback.Pidfd)); err != nil {
		return nil, err
	} else if h.pidfd {
		f = os.NewFile(uintptr(h.fd), "parent")
	} else {
		fd, err := unix.Openat(h.fd, "stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		h.Close()
		if err != nil {
			return nil, ErrGone
		}
		f = os.NewFile(uintptr(fd), "parent")
	}
	// A parent that ended before it was pinned left us to a reaper, and
	// its pid may name another process by now.
	if os.Getppid() != ppid {
		f.Close()
		return nil, ErrGone
	}
	return f, nil
}

// FromFD makes a Handle of a descriptor that Parent made, perhaps in
// another process. The Handle owns fd.
func FromFD(fd int) *Handle {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return &Handle{fd: fd, pidfd: true}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return &Handle{fd: fd}
	case unix.S_IFREG:
		h := &Handle{fd: fd, statFile: true}
		if b, err := preadAll(fd); err == nil {
			h.pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "(", 2)[0]))
		}
		return h
	}
	return &Handle{fd: fd, pidfd: true}
}

// preadAll reads a /proc file anew from its start.
func preadAll(fd int) ([]byte, error) {
	buf := make([]byte, 4096)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
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
	switch {
	case h.pidfd:
		b, err = os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/stat")
	case h.statFile:
		b, err = preadAll(h.fd)
	default:
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
	if h.statFile {
		if st, err := h.stat(); err != nil || ended(st.state) || h.pid <= 0 {
			return nil
		}
		if err := unix.Kill(h.pid, sig); err != nil && err != unix.ESRCH {
			return err
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
