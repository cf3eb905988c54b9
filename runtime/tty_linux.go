package runtime

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal: /dev/ptmx, unlocked, and its slave.
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a terminal: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock the terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("terminal number: %w", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open the terminal: %w", err)
	}
	return m, s, nil
}

// NewConsole makes the terminal of a container whose config asks for one,
// as runc does with --console-socket: a new pty whose master is sent over
// the unix socket at path (SCM_RIGHTS), for the caller to drive. It
// returns the slave, which becomes the process's stdio.
func NewConsole(path string) (*os.File, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	defer master.Close()
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		slave.Close()
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	if _, _, err := conn.WriteMsgUnix([]byte(master.Name()), unix.UnixRights(int(master.Fd())), nil); err != nil {
		slave.Close()
		return nil, fmt.Errorf("console socket: send the terminal: %w", err)
	}
	return slave, nil
}

// RelayedTerminal is a pty for `exec -t`: the process gets the slave, and
// the caller's terminal (put in raw mode) is relayed to the master, window
// size included.
type RelayedTerminal struct {
	master, slave *os.File
	in            *os.File
	saved         *unix.Termios
	out           chan struct{}
	winch         chan os.Signal
}

// NewRelayedTerminal opens a pty relayed to in and out.
func NewRelayedTerminal(in, out *os.File) (*RelayedTerminal, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	t := &RelayedTerminal{master: master, slave: slave, in: in, out: make(chan struct{}), winch: make(chan os.Signal, 1)}
	if st, err := unix.IoctlGetTermios(int(in.Fd()), unix.TCGETS); err == nil {
		t.saved = st
		raw := *st
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		unix.IoctlSetTermios(int(in.Fd()), unix.TCSETS, &raw)
		t.resize()
		signal.Notify(t.winch, syscall.SIGWINCH)
		go func() {
			for range t.winch {
				t.resize()
			}
		}()
	}
	go io.Copy(master, in)
	go func() {
		io.Copy(out, master) // ends with EIO once the slave is closed everywhere
		close(t.out)
	}()
	return t, nil
}

func (t *RelayedTerminal) resize() {
	if ws, err := unix.IoctlGetWinsize(int(t.in.Fd()), unix.TIOCGWINSZ); err == nil {
		unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// Stdio is the slave, as the process's three streams.
func (t *RelayedTerminal) Stdio() Stdio { return Stdio{In: t.slave, Out: t.slave, Err: t.slave} }

// Close restores the caller's terminal once the output has drained.
func (t *RelayedTerminal) Close() {
	t.slave.Close()
	select {
	case <-t.out:
	case <-time.After(time.Second):
	}
	signal.Stop(t.winch)
	close(t.winch)
	if t.saved != nil {
		unix.IoctlSetTermios(int(t.in.Fd()), unix.TCSETS, t.saved)
	}
	t.master.Close()
}
