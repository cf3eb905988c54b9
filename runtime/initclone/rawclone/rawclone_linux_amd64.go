package rawclone

import "unsafe"

// Supported says whether this package clones on this platform.
const Supported = true

// System call numbers and flags of linux/amd64 that the code below uses.
const (
	sysRead         = 0
	sysWrite        = 1
	sysOpen         = 2
	sysClose        = 3
	sysIoctl        = 16
	sysFcntl        = 72
	sysExecve       = 59
	sysWait4        = 61
	sysSetsid       = 112
	sysCapset       = 126
	sysPrctl        = 157
	sysClockGettime = 228
	sysExitGroup    = 231
	sysDup3         = 292
	sysPipe2        = 293
	sysRtSigprocmsk = 14
	sysPrlimit64    = 302
	sysGetrlimit    = 97
	rlimitNofile    = 7

	oRdonly    = 0
	oCloexec   = 0x80000
	fSetfd     = 2
	tcgets     = 0x5401
	eintr      = 4
	sigchld    = 17
	cloneVM    = 0x100
	cloneVfork = 0x4000

	prSetPdeathsig    = 1
	prCapbsetRead     = 23
	prCapAmbient      = 47
	prCapAmbientRaise = 2
	capV3             = 0x20080522
	sigSetmask        = 2
	clockMonotonic    = 1
)

// cloneOp is one system call of the child: nr and its arguments. nr
// opSignals resets the signal handlers instead.
type cloneOp struct {
	nr   uintptr
	args [6]uintptr
	_    uintptr // 64 bytes: the assembly steps by a shift
}

const opSignals = ^uintptr(0)

// cloneProg is what the child reads; the assembly knows the offsets of
// its first fields. It is on the heap (rawClone's pointer argument
// escapes), and so is everything the ops point to: held here, they can
// neither be collected nor moved with a growing stack while the ops hold
// their addresses as uintptrs.
type cloneProg struct {
	ops     *cloneOp
	nops    uintptr
	all     uint64    // every signal: blocked around the clone
	old     uint64    // the caller's mask, back in both before they go on
	failOp  uintptr   // set by a child that failed: its op's index + 1
	failErr uintptr   // and the errno
	act     [4]uint64 // scratch for the child's rt_sigaction queries
	dfl     [4]uint64 // SIG_DFL
	// What the ops point to.
	hdr        capHeader
	data       [2]capData
	nofile     [2]uint64 // the soft and hard RLIMIT_NOFILE to restore
	path       []byte
	argv, envv []*byte
	opList     []cloneOp
}

// capHeader and capData are capset's arguments.
type capHeader struct {
	version uint32
	pid     int32
}

type capData struct {
	effective, permitted, inheritable uint32
}

func rawClone(flags uintptr, p *cloneProg) (pid uintptr, errno uintptr)

func rawSyscall6(nr, a1, a2, a3, a4, a5, a6 uintptr) (r uintptr, errno uintptr)

// Spawn clones and execs as a describes, and returns the child's pid once
// it has exec'd, or the errno of the clone or of the child's first failed
// system call. A caller with other goroutines that may be opening
// descriptors holds syscall.ForkLock around it, as syscall.ForkExec does.
func Spawn(a *Attr) (pid int, errno uintptr) {
	p := &cloneProg{all: ^uint64(0), hdr: capHeader{version: capV3}}
	var ok bool
	if p.path, ok = cstring(a.Path); !ok {
		return 0, einval
	}
	if p.argv, ok = cstrings(a.Argv); !ok {
		return 0, einval
	}
	if p.envv, ok = cstrings(a.Env); !ok {
		return 0, einval
	}
	for _, c := range a.Caps {
		if c >= 64 {
			return 0, einval
		}
	}
	for _, f := range a.Files {
		if f < 0 {
			return 0, einval
		}
	}
	ops := make([]cloneOp, 0, 20+len(a.Caps)+2*len(a.Files))
	add := func(nr uintptr, args ...uintptr) {
		op := cloneOp{nr: nr}
		copy(op.args[:], args)
		ops = append(ops, op)
	}
	// The order is syscall.forkAndExecInChild's for the same attributes.
	add(sysSetsid)
	if a.Pdeathsig != 0 {
		add(sysPrctl, prSetPdeathsig, uintptr(a.Pdeathsig))
	}
	if len(a.Caps) > 0 {
		// The child has every capability in its new user namespace; it
		// keeps these, and they become ambient, so that they outlive the
		// exec.
		for _, c := range a.Caps {
			bit := uint32(1) << (c % 32)
			p.data[c/32].effective |= bit
			p.data[c/32].permitted |= bit
			p.data[c/32].inheritable |= bit
		}
		add(sysCapset, uintptr(unsafe.Pointer(&p.hdr)), uintptr(unsafe.Pointer(&p.data)))
		for _, c := range a.Caps {
			add(sysPrctl, prCapAmbient, prCapAmbientRaise, c)
		}
	}
	// Descriptors: Files[i] becomes i. First each that a lower one would
	// overwrite moves out of the way, above them all.
	fd := make([]int, len(a.Files))
	next := len(fd)
	for i, f := range a.Files {
		fd[i] = f
		next = max(next, f+1)
	}
	for i, f := range fd {
		if f < i {
			add(sysDup3, uintptr(f), uintptr(next), oCloexec)
			fd[i] = next
			next++
		}
	}
	for i, f := range fd {
		if f == i {
			add(sysFcntl, uintptr(i), fSetfd, 0)
		} else {
			add(sysDup3, uintptr(f), uintptr(i), 0)
		}
	}
	// Standard streams that are not among them are closed.
	for i := len(fd); i < 3; i++ {
		add(sysClose, uintptr(i))
	}
	// Go's package syscall raises the soft limit on open files to the
	// hard one, and its ForkExec puts the caller's back in the child.
	if soft, hard := nofile(); soft != origNofile[0] && hard == origNofile[1] {
		p.nofile = origNofile
		add(sysPrlimit64, 0, rlimitNofile, uintptr(unsafe.Pointer(&p.nofile)), 0)
	}
	add(opSignals)
	add(sysRtSigprocmsk, sigSetmask, uintptr(unsafe.Pointer(&p.old)), 0, 8)
	add(sysExecve, uintptr(unsafe.Pointer(&p.path[0])), uintptr(unsafe.Pointer(&p.argv[0])), uintptr(unsafe.Pointer(&p.envv[0])))
	p.opList = ops
	p.ops, p.nops = &ops[0], uintptr(len(ops))

	r, errno := rawClone(a.Flags|cloneVM|cloneVfork|sigchld, p)
	if errno != 0 {
		return 0, errno
	}
	if p.failOp != 0 {
		// The child has exited: reap it.
		for {
			if _, e := rawSyscall6(sysWait4, r, 0, 0, 0, 0, 0); e != eintr {
				break
			}
		}
		return 0, p.failErr
	}
	return int(r), 0
}

// origNofile is RLIMIT_NOFILE as the process started with it: this
// package is initialized before package syscall raises it.
var origNofile = func() [2]uint64 {
	soft, hard := nofile()
	return [2]uint64{soft, hard}
}()

// nofile is the process's RLIMIT_NOFILE.
func nofile() (soft, hard uint64) {
	var lim [2]uint64
	rawSyscall6(sysGetrlimit, rlimitNofile, uintptr(unsafe.Pointer(&lim)), 0, 0, 0, 0)
	return lim[0], lim[1]
}

const einval = 22

// capKnown reports whether the kernel knows capability c: PR_CAPBSET_READ
// fails with EINVAL for one beyond its last.
func capKnown(c uintptr) bool {
	_, errno := rawSyscall6(sysPrctl, prCapbsetRead, c, 0, 0, 0, 0)
	return errno == 0
}

// cstrings is ss as a NULL-terminated array of C strings.
func cstrings(ss []string) ([]*byte, bool) {
	out := make([]*byte, len(ss)+1)
	for i, s := range ss {
		b, ok := cstring(s)
		if !ok {
			return nil, false
		}
		out[i] = &b[0]
	}
	return out, true
}

// Pipe returns a pipe, both ends close-on-exec.
func Pipe() (r, w int, errno uintptr) {
	var fds [2]int32
	_, errno = rawSyscall6(sysPipe2, uintptr(unsafe.Pointer(&fds)), oCloexec, 0, 0, 0, 0)
	return int(fds[0]), int(fds[1]), errno
}

// Close closes fd.
func Close(fd int) { rawSyscall6(sysClose, uintptr(fd), 0, 0, 0, 0, 0) }

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	var termios [64]byte // struct termios is 60 bytes
	_, errno := rawSyscall6(sysIoctl, uintptr(fd), tcgets, uintptr(unsafe.Pointer(&termios)), 0, 0, 0)
	return errno == 0
}

// ReadFile returns the contents of path, a file of /proc that reads in a
// loop; false if it cannot be read or is longer than limit.
func ReadFile(path string, limit int) ([]byte, bool) {
	p, ok := cstring(path)
	if !ok {
		return nil, false
	}
	fd, errno := rawSyscall6(sysOpen, uintptr(unsafe.Pointer(&p[0])), oRdonly|oCloexec, 0, 0, 0, 0)
	if errno != 0 {
		return nil, false
	}
	defer Close(int(fd))
	buf := make([]byte, 0, min(4096, limit+1))
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, false
			}
			buf = append(buf, 0)[:len(buf)]
		}
		free := buf[len(buf):cap(buf)]
		n, errno := rawSyscall6(sysRead, fd, uintptr(unsafe.Pointer(&free[0])), uintptr(len(free)), 0, 0, 0)
		switch {
		case errno == eintr:
		case errno != 0:
			return nil, false
		case n == 0:
			return buf, true
		default:
			buf = buf[:len(buf)+int(n)]
		}
	}
}

// WriteExit writes s to fd and ends the process with code.
func WriteExit(fd int, s string, code int) {
	b := []byte(s)
	for len(b) > 0 {
		n, errno := rawSyscall6(sysWrite, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		if errno == eintr {
			continue
		}
		if errno != 0 {
			break
		}
		b = b[n:]
	}
	for {
		rawSyscall6(sysExitGroup, uintptr(code), 0, 0, 0, 0, 0)
	}
}

// Now reads the monotonic clock, in nanoseconds: time.Now's monotonic
// reading, which this package cannot call.
func Now() int64 {
	var ts [2]int64
	rawSyscall6(sysClockGettime, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0, 0, 0, 0)
	return ts[0]*1e9 + ts[1]
}
