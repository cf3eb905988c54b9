package unixsock

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair is Pair, closed when the test ends.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A message larger than the socket's buffer arrives whole, its
// descriptor with it, close-on-exec.
func TestWriteMsgWhole(t *testing.T) {
	a, b := pair(t)
	msg := bytes.Repeat([]byte("x"), 4<<20)
	done := make(chan error, 1)
	go func() {
		_, err := a.WriteMsg(msg, unix.UnixRights(int(os.Stdin.Fd())))
		done <- err
	}()
	b.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(msg))
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, flags, err := b.ReadMsg(buf, oob)
	if err != nil || flags&unix.MSG_CTRUNC != 0 {
		t.Fatalf("ReadMsg: %v, flags %#x", err, flags)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v", err)
	}
	if fl, _ := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
		t.Error("a passed descriptor is not close-on-exec")
	}
	unix.Close(fds[0])
	if _, err := io.ReadFull(b, buf[n:]); err != nil {
		t.Fatalf("the rest: %v", err)
	}
	if err := <-done; err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("WriteMsg: %v; message intact: %v", err, bytes.Equal(buf, msg))
	}
}

// Descriptors beyond what oob holds are dropped, and the flags say so.
func TestReadMsgTruncated(t *testing.T) {
	a, b := pair(t)
	in := int(os.Stdin.Fd())
	if _, err := a.WriteMsg([]byte("x"), unix.UnixRights(in, in, in, in, in, in)); err != nil {
		t.Fatal(err)
	}
	_, _, flags, err := b.ReadMsg(make([]byte, 8), make([]byte, unix.CmsgSpace(4)))
	if err != nil || flags&unix.MSG_CTRUNC == 0 {
		t.Fatalf("ReadMsg: %v, flags %#x; want MSG_CTRUNC", err, flags)
	}
}

// A listener's socket file has the mode asked for; Accept answers a
// Dial, times out with its peer's deadline, and fails with os.ErrClosed
// once the listener is closed.
func TestListenDialAccept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	old := unix.Umask(0)
	l, err := Listen(path, 0o600)
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v, %v", st.Mode(), err)
	}
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		ended <- err
	}()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	if err := <-ended; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Accept after Close: %v, want os.ErrClosed", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the socket file went with the listener: %v", err)
	}
}
