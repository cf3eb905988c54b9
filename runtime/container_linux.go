package runtime

// The control socket of a container's init, the file "ctl" in its state
// directory: the wire form of its requests, and the caller's side. The
// init's side is ctl_linux.go.
//
//	start      starts the job of a created container, with the stdio
//	           that create had
//	kill SIG   signals the job (or, with all, every process but the init)
//	exec       starts another process inside, with the caller's stdio
//	           passed over by SCM_RIGHTS; its exit status comes back on the
//	           same connection, and signal bytes sent on it go to it; if
//	           the caller hangs up first, the process is killed with all
//	           it started (it runs under a reaper, see fence_linux.go)
//
// When the job ends, the init kills what is left, writes the job's status
// to the file "exit" in the state directory (through a descriptor opened
// before pivot_root) and exits; the container is then stopped until it is
// deleted.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/unixsock"
)

// Files in a container's state directory.
const (
	ctlSocket   = "ctl"     // the init's control socket
	startedFile = "started" // the job has been started
	exitFile    = "exit"    // the job's exit status; the container is stopped
)

// Control operations.
const (
	opStart      = 's'
	opKill       = 'k'
	opExec       = 'e'
	opCheckpoint = 'c'
)

// request is one operation, as a connection carries it.
type request struct {
	op  byte
	sig int
	all bool
	tty bool // exec: the stdio is a terminal to make the process's own
	// member: exec as a member of a group container, with env as the
	// whole environment
	member bool
	args   []string
	env    []string
	cwd    string
	fds    []int // the exec'd process's stdin, stdout and stderr
	conn   *unixsock.Conn
}

// response answers a request; for exec a second one follows with the
// process's exit status.
type response struct {
	err    string
	pid    int
	status int
	info   string // a checkpoint's CheckpointInfo, as JSON
}

func (r request) encode() []byte {
	var e encoder
	e.uint(uint64(r.op))
	e.uint(uint64(r.sig))
	e.bools(r.all, r.tty, r.member)
	e.strs(r.args)
	e.strs(r.env)
	e.str(r.cwd)
	return frame(e.b)
}

func decodeRequest(b []byte) (request, error) {
	d := decoder{b: b}
	r := request{op: byte(d.uint()), sig: int(d.uint())}
	flags := d.bools(3)
	r.all, r.tty, r.member = flags[0], flags[1], flags[2]
	r.args, r.env, r.cwd = d.strs(), d.strs(), d.str()
	if d.err != nil {
		return r, fmt.Errorf("garbled request: %w", d.err)
	}
	return r, nil
}

func (r response) encode() []byte {
	var e encoder
	e.str(r.err)
	e.uint(uint64(r.pid))
	e.uint(uint64(r.status))
	e.str(r.info)
	return frame(e.b)
}

func decodeResponse(b []byte) (response, error) {
	d := decoder{b: b}
	r := response{err: d.str(), pid: int(d.uint()), status: int(d.uint()), info: d.str()}
	if d.err != nil {
		return r, fmt.Errorf("garbled response: %w", d.err)
	}
	return r, nil
}

// stateDirFD opens a state directory for use through /proc/self/fd, which
// keeps socket paths short whatever the directory's length.
func stateDirFD(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// readRequest reads a request frame and the descriptors sent with it.
func readRequest(conn *unixsock.Conn) (request, error) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, flags, err := conn.ReadMsg(buf, oob)
	if err != nil {
		return request{}, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	if flags&unix.MSG_CTRUNC != 0 {
		closeAll(fds)
		return request{}, errors.New("more descriptors than a request takes")
	}
	body, err := readFrame(io.MultiReader(strings.NewReader(string(buf[:n])), conn))
	if err != nil {
		closeAll(fds)
		return request{}, err
	}
	r, err := decodeRequest(body)
	if err != nil {
		closeAll(fds)
		return request{}, err
	}
	r.fds = fds
	return r, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// ---- the caller's side ----

// ErrNotRunning: the container's init does not answer; it has ended.
var ErrNotRunning = errors.New("the container is not running")

// dial connects to a container's control socket.
func dial(stateDir string) (*unixsock.Conn, error) {
	dir, err := stateDirFD(stateDir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	conn, err := unixsock.Dial(fdPath(dir) + "/" + ctlSocket)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	return conn, nil
}

// callTimeout bounds each step of a call until the init's first answer:
// the connect, the request and the response. The socket is a file in the
// user's state, which root reaches too (Slurm's kill): one that never
// answers must not hold the caller.
const callTimeout = 10 * time.Second

// call sends one request, with fds if any, and reads the first response.
func call(stateDir string, r request, files ...*os.File) (*unixsock.Conn, response, error) {
	return callWithin(stateDir, callTimeout, r, files...)
}

// callWithin is call with d for the init's answer.
func callWithin(stateDir string, d time.Duration, r request, files ...*os.File) (*unixsock.Conn, response, error) {
	conn, err := dial(stateDir)
	if err != nil {
		return nil, response{}, err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	conn.SetDeadline(time.Now().Add(d))
	if _, err := conn.WriteMsg(r.encode(), oob); err != nil {
		conn.Close()
		return nil, response{}, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	b, err := readFrame(conn)
	if err != nil {
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, response{}, fmt.Errorf("%w (its control socket did not answer within %v)", ErrNotRunning, d)
		}
		return nil, response{}, fmt.Errorf("%w (the init hung up: %v)", ErrNotRunning, err)
	}
	conn.SetDeadline(time.Time{}) // an exec's process then runs as long as it likes
	resp, err := decodeResponse(b)
	if err == nil && resp.err != "" {
		err = &statusError{code: statusOr(resp.status, StatusFailed), msg: resp.err}
	}
	if err != nil {
		conn.Close()
		return nil, resp, err
	}
	return conn, resp, nil
}

func statusOr(code, def int) int {
	if code == 0 {
		return def
	}
	return code
}

// StartJob starts the job of a created container; its startContainer
// hooks write to out, if given.
func StartJob(stateDir string, out ...*os.File) error {
	conn, _, err := call(stateDir, request{op: opStart}, out...)
	if conn != nil {
		conn.Close()
	}
	return err
}

// Signal sends sig to the container's job, or with all to every process
// in it but the init. A created container, whose job has not started,
// ends.
func Signal(stateDir string, sig unix.Signal, all bool) error {
	conn, _, err := call(stateDir, request{op: opKill, sig: int(sig), all: all})
	if conn != nil {
		conn.Close()
	}
	return err
}

// checkpointJob asks the init to checkpoint its job into dir (criu, a
// site's criu, or nil), leaving it running with leave. Once the
// checkpoint is in place the caller calls commit(true), and the job ends
// (unless leave); commit(false), or no commit, continues it.
func checkpointJob(stateDir string, dir, criu *os.File, leave bool) (*CheckpointInfo, func(bool) error, error) {
	files := []*os.File{dir}
	if criu != nil {
		files = append(files, criu)
	}
	conn, resp, err := callWithin(stateDir, checkpointTimeout, request{op: opCheckpoint, all: leave}, files...)
	if err != nil {
		return nil, nil, err
	}
	info := &CheckpointInfo{}
	if err := json.Unmarshal([]byte(resp.info), info); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("the init's account of the checkpoint: %w", err)
	}
	commit := func(ok bool) error {
		defer conn.Close()
		if !ok {
			return nil
		}
		conn.SetDeadline(time.Now().Add(callTimeout))
		if _, err := conn.Write([]byte{commitByte}); err != nil {
			return fmt.Errorf("%w (%v)", ErrNotRunning, err)
		}
		return nil
	}
	return info, commit, nil
}

// Process is a process to start in a running container.
type Process struct {
	Args []string
	Env  []string // K=V, over the job's environment; a Member's whole environment
	Cwd  string   // default: the job's
	TTY  bool     // stdio is a terminal (a pty's slave): make it the process's controlling terminal
	// Member: the process is a task that joins a group container (see
	// Config.Members); it counts towards the container's members.
	Member bool
}

// Exec runs p in the container with stdio as its standard streams and
// returns its exit status. Signals sent on sigs are passed on to it.
func Exec(stateDir string, p Process, stdio Stdio, sigs <-chan os.Signal) (int, error) {
	conn, resp, err := call(stateDir, request{op: opExec, args: p.Args, env: p.Env, cwd: p.Cwd, tty: p.TTY, member: p.Member}, stdio.In, stdio.Out, stdio.Err)
	if err != nil {
		return ExitStatus(err), err
	}
	defer conn.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if sig, ok := s.(syscall.Signal); ok {
					conn.Write([]byte{byte(sig)})
				}
			case <-done:
				return
			}
		}
	}()
	b, err := readFrame(conn)
	if err != nil {
		return StatusFailed, fmt.Errorf("the container ended before process %d reported (%v)", resp.pid, err)
	}
	final, err := decodeResponse(b)
	if err != nil {
		return StatusFailed, err
	}
	return final.status, nil
}
