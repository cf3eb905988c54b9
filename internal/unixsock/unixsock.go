// Package unixsock is a Unix stream socket with deadlines and descriptor
// passing, on the os package's poller: what hpcrun's control and console
// sockets need of package net, without package net. The container's init
// imports this, and package net (with net/netip and unique) would delay
// its start: Go initializes every package that sorts before net's
// dependencies ahead of the init stage, yaml and regexp among them.
package unixsock

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a connected stream socket.
type Conn struct {
	f  *os.File
	rc syscall.RawConn
}

func newConn(fd int, name string) (*Conn, error) {
	f, rc, err := pollable(fd, name)
	if err != nil {
		return nil, err
	}
	return &Conn{f: f, rc: rc}, nil
}

// pollable makes a file of fd, a non-blocking socket: os.NewFile puts it
// on the poller, so that reads, writes, accepts and the deadlines work as
// on package net's.
func pollable(fd int, name string) (*os.File, syscall.RawConn, error) {
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

func socket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	return aboveStdio(fd)
}

// aboveStdio moves fd to 3 or above: with the caller's stdout or stderr
// closed, a socket could get descriptor 1 or 2, and package os takes a
// write to those that finds the peer gone (EPIPE) for a closed stdout,
// and dies of SIGPIPE.
func aboveStdio(fd int) (int, error) {
	if fd > 2 {
		return fd, nil
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	unix.Close(fd)
	return nfd, err
}

// Dial connects to the socket at path. The connect of a Unix stream
// socket does not wait: it succeeds or fails at once (EAGAIN when the
// listener's queue is full), as net.Dial's does. Callers set a deadline
// on what follows.
func Dial(path string) (*Conn, error) {
	fd, err := socket()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "connect", Path: path, Err: err}
	}
	return newConn(fd, path)
}

// Pair is a connected pair of sockets.
func Pair() (*Conn, *Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	for i := range fds {
		if fds[i], err = aboveStdio(fds[i]); err != nil {
			unix.Close(fds[1-i])
			return nil, nil, os.NewSyscallError("fcntl", err)
		}
	}
	a, err := newConn(fds[0], "socket")
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := newConn(fds[1], "socket")
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// Read reads into b, until the deadline.
func (c *Conn) Read(b []byte) (int, error) { return c.f.Read(b) }

// Write writes b, until the deadline.
func (c *Conn) Write(b []byte) (int, error) { return c.f.Write(b) }

// SetDeadline sets the read and write deadlines; zero clears them.
func (c *Conn) SetDeadline(t time.Time) error { return c.f.SetDeadline(t) }

// SyscallConn gives the socket's descriptor, for a process to inherit.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// Close closes the socket; a Read or Write blocked on it returns.
func (c *Conn) Close() error { return c.f.Close() }

// ReadMsg reads a message into b and its control data (passed
// descriptors, which arrive close-on-exec) into oob; flags are
// recvmsg's (MSG_CTRUNC: oob was too small, descriptors were dropped).
func (c *Conn) ReadMsg(b, oob []byte) (n, oobn, flags int, err error) {
	var serr error
	err = c.rc.Read(func(fd uintptr) bool {
		n, oobn, flags, _, serr = unix.Recvmsg(int(fd), b, oob, unix.MSG_CMSG_CLOEXEC)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, 0, 0, os.NewSyscallError("recvmsg", err)
	}
	return n, oobn, flags, nil
}

// WriteMsg writes b whole, its first part with the control data oob
// (descriptors to pass): a stream socket's sendmsg may take less than b.
func (c *Conn) WriteMsg(b, oob []byte) (int, error) {
	var n int
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		n, serr = unix.SendmsgN(int(fd), b, oob, nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return n, os.NewSyscallError("sendmsg", err)
	}
	if n < len(b) {
		m, err := c.f.Write(b[n:])
		return n + m, err
	}
	return n, nil
}

// Listener is a listening socket. Its file stays when it is closed.
type Listener struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
}

// Listen makes a socket at path whose file has mode perm (the socket's
// inode's mode, set before bind, less the umask), and listens on it.
func Listen(path string, perm uint32) (*Listener, error) {
	fd, err := socket()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (*Listener, error) {
		unix.Close(fd)
		return nil, &os.PathError{Op: op, Path: path, Err: err}
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return fail("chmod", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return fail("listen", err)
	}
	f, rc, err := pollable(fd, path)
	if err != nil {
		return nil, err
	}
	return &Listener{f: f, rc: rc}, nil
}

// Accept waits for a connection. Once the listener is closed it fails
// with os.ErrClosed; other errors (EMFILE, ECONNABORTED) may pass.
func (l *Listener) Accept() (*Conn, error) {
	var nfd int
	var serr error
	err := l.rc.Read(func(fd uintptr) bool {
		nfd, _, serr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if l.closed.Load() {
			return nil, os.ErrClosed
		}
		return nil, os.NewSyscallError("accept4", err)
	}
	if nfd, err = aboveStdio(nfd); err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	return newConn(nfd, "")
}

// Close stops listening; an Accept blocked on it returns os.ErrClosed.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}
