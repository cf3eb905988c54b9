// Package unixsock is a Unix stream socket with deadlines and descriptor
// passing, on the os package's poller: what hpcrun's control and console
// sockets need of package net, without package net. The container's init
// imports this, and package net (with net/netip and unique) would delay
// its start: Go initializes every package that sorts before net's
// dependencies ahead of the init stage, yaml and regexp among them.
package unixsock

import (
	"os"
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
	// A non-blocking descriptor: os.NewFile puts it on the poller, so
	// that reads, writes and the deadlines work as on a net.Conn.
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Conn{f: f, rc: rc}, nil
}

func socket() (int, error) {
	return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
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
// descriptors, which arrive close-on-exec) into oob.
func (c *Conn) ReadMsg(b, oob []byte) (n, oobn int, err error) {
	var serr error
	err = c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, serr = unix.Recvmsg(int(fd), b, oob, unix.MSG_CMSG_CLOEXEC)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, 0, os.NewSyscallError("recvmsg", err)
	}
	return n, oobn, nil
}

// WriteMsg writes b with the control data oob (descriptors to pass).
func (c *Conn) WriteMsg(b, oob []byte) (n int, err error) {
	var serr error
	err = c.rc.Write(func(fd uintptr) bool {
		n, serr = unix.SendmsgN(int(fd), b, oob, nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return n, os.NewSyscallError("sendmsg", err)
	}
	return n, nil
}

// Listener is a listening socket. Its file stays when it is closed.
type Listener struct {
	f  *os.File
	rc syscall.RawConn
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
	f := os.NewFile(uintptr(fd), path)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Listener{f: f, rc: rc}, nil
}

// Accept waits for a connection.
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
		return nil, os.NewSyscallError("accept4", err)
	}
	return newConn(nfd, "")
}

// Close stops listening; an Accept blocked on it returns an error.
func (l *Listener) Close() error { return l.f.Close() }
