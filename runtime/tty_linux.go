package runtime

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/initclone"

	"github.com/hpcrun/hpcrun/internal/unixsock"
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
	conn, err := unixsock.Dial(path)
	if err != nil {
		slave.Close()
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	// The caller listens: a full socket buffer must not hold create.
	conn.SetDeadline(time.Now().Add(callTimeout))
	if _, err := conn.WriteMsg([]byte(master.Name()), unix.UnixRights(int(master.Fd()))); err != nil {
		slave.Close()
		return nil, fmt.Errorf("console socket: send the terminal: %w", err)
	}
	return slave, nil
}

// RelayedTerminal is a pty for `exec -t` whose stdin is no terminal: the
// process gets the slave as its three streams, and what comes on stdin
// is relayed to the master, its output to out. At a terminal, exec -t
// relays as a run does (see ExecTerminal).
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
		raw := rawMode(st)
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

// terminalRelay gives a job a terminal of its own: a new pty whose slave
// stands in for each of the job's stdio that is a terminal, its
// controlling terminal in a session of its own, relayed to the caller's.
// The caller's terminal is never the job's: from a session whose
// controlling terminal it is not, a process cannot push input into it
// with TIOCSTI, nor steal it.
//
// The pty is opened here, by hpcrun on the host, before the init is
// cloned, and its slave is the init's stdio: the init (in its user
// namespace) only makes it the job's controlling terminal (TIOCSCTTY
// needs no capability for a pty that no session holds), with no extra
// step on its warm path, and it works whatever the image's /dev holds.
// Opening it inside would need a devpts of the container's own and the
// master sent back over a socket, a round trip before the job starts.
// The slave belongs to the host's devpts, which the bound /dev shows: tty
// names it inside as outside.
type terminalRelay struct {
	master, slave *os.File
	in, out       *os.File // the caller's terminal: input, and where output goes
	saved         *unix.Termios
	wake          [2]int // wakes the input copy to look at the terminal again
	outDone       chan struct{}
	winch         chan os.Signal

	mu      sync.Mutex
	raw     bool // the caller's terminal is in raw mode
	input   bool // and its input is relayed
	started bool
}

// newTerminalRelay opens a pty for a job whose stdio.In is a terminal and
// returns it, with the stdio the job gets: the slave for each stream that
// is a terminal, the others as they are (`>out 2>err` stay files). The
// slave starts with the caller's modes and window size.
func newTerminalRelay(stdio Stdio) (*terminalRelay, Stdio, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, stdio, fmt.Errorf("give the job a terminal: %w", err)
	}
	r := &terminalRelay{master: master, slave: slave, in: stdio.In, out: stdio.In,
		outDone: make(chan struct{}), winch: make(chan os.Signal, 1)}
	if err := unix.Pipe2(r.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		master.Close()
		slave.Close()
		return nil, stdio, fmt.Errorf("give the job a terminal: %w", err)
	}
	job := stdio
	job.In = slave
	switch {
	case initclone.IsTerminal(stdio.Out):
		r.out = stdio.Out
	case initclone.IsTerminal(stdio.Err):
		r.out = stdio.Err
	}
	if initclone.IsTerminal(stdio.Out) {
		job.Out = slave
	}
	if initclone.IsTerminal(stdio.Err) {
		job.Err = slave
	}
	if st, err := unix.IoctlGetTermios(int(stdio.In.Fd()), unix.TCGETS); err == nil {
		r.saved = st
		unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, st)
	}
	r.resize()
	return r, job, nil
}

// start relays the terminal: output from now on, input while hpcrun
// holds the caller's terminal (see resume).
func (r *terminalRelay) start() {
	r.started = true
	signal.Notify(r.winch, syscall.SIGWINCH)
	go func() {
		for range r.winch {
			r.resize()
		}
	}()
	go func() {
		io.Copy(r.out, r.master) // ends with EIO once no process holds the slave
		close(r.outDone)
	}()
	r.resume()
	go r.copyIn()
}

func (r *terminalRelay) resize() {
	if ws, err := unix.IoctlGetWinsize(int(r.in.Fd()), unix.TIOCGWINSZ); err == nil {
		unix.IoctlSetWinsize(int(r.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// foreground reports whether hpcrun's process group holds the caller's
// terminal; a terminal that is not hpcrun's controlling one has no
// foreground to lose.
func (r *terminalRelay) foreground() bool {
	pgrp, err := unix.IoctlGetInt(int(r.in.Fd()), unix.TIOCGPGRP)
	return err == unix.ENOTTY || (err == nil && pgrp == unix.Getpgrp())
}

// resume puts the caller's terminal in raw mode, so that every key
// (Ctrl-C and Ctrl-Z included) reaches the job's terminal, whose line
// discipline signals the job, and relays its input; only while hpcrun is
// in the foreground: a job in the background neither takes the shell's
// input nor sets its modes. Called at the start and at each SIGCONT.
func (r *terminalRelay) resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.raw || !r.foreground() {
		return
	}
	r.resize() // it may have changed while hpcrun was stopped
	if r.saved != nil {
		raw := rawMode(r.saved)
		unix.IoctlSetTermios(int(r.in.Fd()), unix.TCSETS, &raw)
	}
	r.raw, r.input = true, true
	r.poke()
}

// suspend gives the caller's terminal back its modes and stops relaying
// input: before hpcrun stops (the job stopped) and when it ends.
func (r *terminalRelay) suspend() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.input = false
	if !r.raw {
		return
	}
	r.raw = false
	if r.saved != nil {
		// Not stopped by SIGTTOU should hpcrun be in the background by now.
		signal.Ignore(syscall.SIGTTOU)
		unix.IoctlSetTermios(int(r.in.Fd()), unix.TCSETSW, r.saved)
		signal.Reset(syscall.SIGTTOU)
	}
	r.poke()
}

func (r *terminalRelay) poke() { unix.Write(r.wake[1], []byte{0}) }

// copyIn relays what is typed to the job's terminal while r.input; the
// wake pipe tells it to look again, and its close to end.
func (r *terminalRelay) copyIn() {
	defer unix.Close(r.wake[0])
	buf := make([]byte, 4096)
	in := int32(r.in.Fd())
	for {
		r.mu.Lock()
		on := r.input
		r.mu.Unlock()
		fds := []unix.PollFd{{Fd: int32(r.wake[0]), Events: unix.POLLIN}, {Fd: in}}
		if on {
			fds[1].Events = unix.POLLIN
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if fds[0].Revents != 0 {
			n, _ := unix.Read(r.wake[0], buf)
			if n == 0 {
				return // closed
			}
			continue
		}
		if fds[1].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return // the caller's terminal hung up
		}
		if fds[1].Revents&unix.POLLIN != 0 {
			n, err := unix.Read(int(in), buf)
			if n <= 0 && err != unix.EINTR && err != unix.EAGAIN {
				return
			}
			if n > 0 {
				if _, err := r.master.Write(buf[:n]); err != nil {
					return
				}
			}
		}
	}
}

// closeSlave closes hpcrun's copy of the slave once the init holds it:
// the relayed output ends when the container's last copy closes.
func (r *terminalRelay) closeSlave() { r.slave.Close() }

// close restores the caller's terminal once the job's output has been
// relayed: until the last process holding the slave is gone, at most a
// second. What is typed meanwhile is no longer relayed: it waits for the
// shell.
func (r *terminalRelay) close() {
	r.slave.Close()
	r.mu.Lock()
	r.input = false
	r.mu.Unlock()
	r.poke()
	if r.started {
		select {
		case <-r.outDone:
		case <-time.After(time.Second):
		}
		signal.Stop(r.winch)
		close(r.winch)
	}
	r.suspend()
	unix.Close(r.wake[1]) // ends copyIn, which closes its end
	if !r.started {
		unix.Close(r.wake[0])
	}
	r.master.Close()
}

// ExecTerminal is the terminal of a process exec'd with -t from a
// terminal: a pty of its own, relayed as a run's job's is (see
// terminalRelay). Only the streams that are terminals go through it, the
// caller's terminal leaves raw mode however hpcrun ends (writes to a
// closed pipe included: those are the process's own), and hpcrun in the
// background neither sets its modes nor reads it until fg.
type ExecTerminal struct {
	relay *terminalRelay
	stdio Stdio
	cont  chan os.Signal
}

// NewExecTerminal opens and relays the terminal for a process whose
// stdio.In is the caller's terminal.
func NewExecTerminal(stdio Stdio) (*ExecTerminal, error) {
	relay, job, err := newTerminalRelay(stdio)
	if err != nil {
		return nil, err
	}
	t := &ExecTerminal{relay: relay, stdio: job, cont: make(chan os.Signal, 1)}
	// After fg, hpcrun holds the caller's terminal again: relay it.
	signal.Notify(t.cont, syscall.SIGCONT)
	go func() {
		for range t.cont {
			relay.resume()
		}
	}()
	relay.start()
	return t, nil
}

// Stdio is what the process gets: the slave for each stream that is a
// terminal, the others as they were.
func (t *ExecTerminal) Stdio() Stdio { return t.stdio }

// Close restores the caller's terminal once the output has been relayed.
func (t *ExecTerminal) Close() {
	signal.Stop(t.cont)
	close(t.cont)
	t.relay.close()
}

// rawMode is st made raw, as cfmakeraw(3) does: no echo, no line editing,
// no signal keys, no output processing, 8-bit bytes one at a time.
func rawMode(st *unix.Termios) unix.Termios {
	raw := *st
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	return raw
}
