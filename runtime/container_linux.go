package runtime

// Detached containers: the init of `hpcrun create` outlives the command
// that made it. It builds the container as for a run, then serves a
// control socket in the container's state directory instead of starting
// the job at once:
//
//	start      starts the job, with the stdio that create had
//	kill SIG   signals the job (or, with all, every process but the init)
//	exec       starts another process inside, with the caller's stdio
//	           passed over by SCM_RIGHTS; its exit status comes back on the
//	           same connection, and signal bytes sent on it go to it; if
//	           the caller hangs up first, the process is killed with all
//	           it started (it runs under a reaper, see fence_linux.go)
//
// A group container (Config.Members) has no job: its members, the tasks of
// a step, each exec their process, with an environment of their own, and
// it ends when all of them have come and gone.
//
// Every process is forked by the init's main thread, which alone has
// dropped its privileges: capabilities are per thread, and the Go
// runtime's other threads keep the init's. No setns is needed: a process
// forked by the init is in every namespace of the container.
//
// When the job ends, the init kills what is left, writes the job's status
// to the file "exit" in the state directory (through a descriptor opened
// before pivot_root) and exits; the container is then stopped until it is
// deleted.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hpcrun/hpcrun/runtime/procs"
	"golang.org/x/sys/unix"
)

// Files in a container's state directory.
const (
	ctlSocket   = "ctl"     // the init's control socket
	startedFile = "started" // the job has been started
	exitFile    = "exit"    // the job's exit status; the container is stopped
)

// Control operations.
const (
	opStart = 's'
	opKill  = 'k'
	opExec  = 'e'
)

// request is one operation, from a connection to the init's main thread.
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
	conn   *net.UnixConn
	reply  chan response
}

// response answers a request; for exec a second one follows with the
// process's exit status.
type response struct {
	err    string
	pid    int
	status int
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
	return frame(e.b)
}

func decodeResponse(b []byte) (response, error) {
	d := decoder{b: b}
	r := response{err: d.str(), pid: int(d.uint()), status: int(d.uint())}
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

// containerInit is what the init of a detached container keeps from
// before pivot_root: its state directory and its listening socket.
type containerInit struct {
	dir int
	ln  *net.UnixListener
}

func openContainer(stateDir string) (*containerInit, error) {
	dir, err := stateDirFD(stateDir)
	if err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	// The socket file takes its mode from the socket's inode, less the
	// umask: made 0600 before bind, it is never more open than the other
	// state files, whatever the user's umask (0777 with umask 0).
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), 0o600) }); cerr != nil {
			return cerr
		}
		return err
	}}
	l, err := lc.Listen(context.Background(), "unix", fdPath(dir)+"/"+ctlSocket)
	if err != nil {
		unix.Close(dir)
		return nil, fmt.Errorf("container control socket: %w", err)
	}
	ln := l.(*net.UnixListener)
	// The socket file stays when the init exits: delete removes the dir.
	ln.SetUnlinkOnClose(false)
	return &containerInit{dir: dir, ln: ln}, nil
}

// paused reports whether hpcrun pause stopped the container.
func (c *containerInit) paused() bool {
	return unix.Faccessat(c.dir, pausedFile, unix.F_OK, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// writeState writes a small file into the state directory.
func (c *containerInit) writeState(name, content string) {
	fd, err := unix.Openat(c.dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	unix.Write(fd, []byte(content))
	unix.Close(fd)
}

// serve runs a detached container until its job ends, and returns the
// job's status. It runs on the init's main thread, which has dropped its
// privileges; attr is the job's process attributes without Files.
func (c *containerInit) serve(cfg *initConfig, path string, status *os.File, control *os.File, logf func(string, ...any)) int {
	// Signals sent to the init (Slurm signals every process of a step)
	// are not for it: the job gets its own copy, or what `hpcrun kill`
	// sends. Caught and dropped rather than ignored: an ignored signal
	// would stay ignored in every process the init starts.
	dropped := make(chan os.Signal, 8)
	signal.Notify(dropped, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGTSTP, syscall.SIGPIPE)
	go func() {
		for range dropped {
		}
	}()
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	reqs := make(chan request)
	go c.accept(reqs)
	if cfg.AnchorFD > 0 {
		go watchAnchor(cfg.AnchorFD, reqs)
	}

	// Set up: create may return.
	status.Write(message{Ready: true}.encode())
	status.Close()
	control.Close()
	logf("serving %s", ctlSocket)

	job := 0
	execs := map[int]request{}
	joined, active := 0, 0 // a group container's members
	if cfg.Members > 0 {
		c.writeState(startedFile, "0")
	}
	for {
		select {
		case r := <-reqs:
			// Replies are written here, before anything the request
			// causes: the init may exit right after (kill of a created
			// container), and an exec'd process may end at once.
			reply := func(resp response) {
				if r.conn != nil {
					r.conn.Write(resp.encode())
				}
				r.reply <- resp
			}
			switch r.op {
			case opStart:
				if job != 0 || cfg.Members > 0 {
					reply(response{err: "the container's job was started already"})
					break
				}
				// In the init's own working directory, checked as the job's.
				attr := jobAttr(cfg, cfg.Env, "", []uintptr{0, 1, 2})
				if cfg.Terminal {
					attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
				}
				pid, err := forkExec(cfg.Rlimits, path, cfg.Args, attr)
				if err != nil {
					// 126 or 127, as for a run: start ends with it.
					err = execError(cfg.Args[0], err)
					reply(response{err: err.Error(), status: ExitStatus(err)})
					break
				}
				job = pid
				c.writeState(startedFile, strconv.Itoa(pid))
				logf("job started as pid %d: %s", job, strings.Join(cfg.Args, " "))
				reply(response{pid: pid})
			case opKill:
				switch {
				case cfg.Members > 0 && !r.all:
					// A group container's job is its members.
					for pid, e := range execs {
						if e.member {
							unix.Kill(pid, syscall.Signal(r.sig))
						}
					}
				case job == 0:
					// A created container has no job yet: a signal ends it.
					reply(response{})
					return c.end(128+r.sig, execs)
				case r.all:
					unix.Kill(-1, syscall.Signal(r.sig))
				default:
					unix.Kill(job, syscall.Signal(r.sig))
				}
				reply(response{})
			case opExec:
				if r.member && cfg.Members == 0 {
					r.conn.Write(response{err: "exec: the container is not a group container, which tasks join", status: StatusFailed}.encode())
					r.reply <- response{err: "not a member"}
					closeAll(r.fds)
					break
				}
				started := c.exec(r, cfg, execs)
				if r.member {
					// A task whose process could not start came and went.
					joined++
					if started {
						active++
					}
					logf("member %d of %d joined (started: %v)", joined, cfg.Members, started)
					if joined >= cfg.Members && active == 0 {
						return c.end(0, execs)
					}
				}
			}
		case <-chld:
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if err == unix.EINTR {
					continue
				}
				if err != nil || pid <= 0 {
					break
				}
				code := WaitStatusCode(syscall.WaitStatus(ws))
				if r, ok := execs[pid]; ok {
					r.conn.Write(response{pid: pid, status: code}.encode())
					r.conn.Close()
					delete(execs, pid)
					if r.member {
						active--
					}
				}
				if pid == job {
					logf("job ended with status %d", code)
					return c.end(code, execs)
				}
				if cfg.Members > 0 && joined >= cfg.Members && active == 0 {
					logf("all %d members have ended", joined)
					return c.end(0, execs)
				}
			}
		}
	}
}

// reapRest reaps every child until none is left, telling reaped of each.
func reapRest(reaped func(pid, status int)) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		reaped(pid, WaitStatusCode(syscall.WaitStatus(ws)))
	}
}

// watchAnchor ends the container when the anchor process ends (see
// Config.Anchor).
func watchAnchor(fd int, reqs chan<- request) {
	procs.FromFD(fd).Wait(-1)
	reqs <- request{op: opKill, sig: int(unix.SIGKILL), all: true, reply: make(chan response, 1)}
}

// end kills what is left in the container, reports the exec'd processes,
// records the job's status and returns it.
func (c *containerInit) end(code int, execs map[int]request) int {
	unix.Kill(-1, unix.SIGKILL)
	reapRest(func(pid, status int) {
		if r, ok := execs[pid]; ok {
			r.conn.Write(response{pid: pid, status: status}.encode())
			r.conn.Close()
		}
	})
	c.writeState(exitFile, strconv.Itoa(code))
	return code
}

// exec starts a process for an exec request, and reports whether it did.
// It writes the reply itself, before the loop that reaps the process can
// write its status.
func (c *containerInit) exec(r request, cfg *initConfig, execs map[int]request) bool {
	defer closeAll(r.fds)
	path, attr, done, err := execAttr(r, cfg)
	if err == nil {
		var pid int
		pid, err = forkExecd(cfg.Rlimits, path, r.args, attr, r.conn)
		done()
		if err == nil {
			r.conn.Write(response{pid: pid}.encode())
			execs[pid] = r
			r.reply <- response{pid: pid}
			return true
		}
		err = execError(r.args[0], err)
	}
	r.conn.Write(response{err: err.Error(), status: ExitStatus(err)}.encode())
	r.reply <- response{err: err.Error()}
	return false
}

// execAttr checks an exec request and says how to start its process;
// done, to be called once it is started, closes what attr holds.
func execAttr(r request, cfg *initConfig) (path string, attr *syscall.ProcAttr, done func(), err error) {
	if len(r.args) == 0 || len(r.fds) != 3 {
		return "", nil, nil, errors.New("exec: no command, or not three stdio descriptors")
	}
	env := mergeEnv(cfg.Env, r.env)
	if r.member {
		env = r.env // a task's own, rank variables and all
	}
	if path, err = lookPath(r.args[0], envValue(env, "PATH")); err != nil {
		return "", nil, nil, err
	}
	// Without --cwd, the init's own working directory: the job's, checked
	// as it started. With it, the directory opened and checked here; the
	// process changes into it through the init's descriptor, which it
	// holds until its execve (see fence_linux.go).
	dir, done := "", func() {}
	if r.cwd != "" {
		fd, err := openCwd(r.cwd, "--cwd")
		if err != nil {
			return "", nil, nil, fmt.Errorf("exec: %w", err)
		}
		dir, done = fdPath(fd), func() { unix.Close(fd) }
	}
	attr = jobAttr(cfg, env, dir, []uintptr{uintptr(r.fds[0]), uintptr(r.fds[1]), uintptr(r.fds[2])})
	if r.tty {
		// A session of its own, with the terminal as its controlling one.
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	}
	return path, attr, done, nil
}

// jobAttr is how the init starts a process of the container: the job's
// user, environment, directory ("": the init's) and stdio.
func jobAttr(cfg *initConfig, env []string, cwd string, files []uintptr) *syscall.ProcAttr {
	attr := &syscall.ProcAttr{Env: env, Dir: cwd, Files: files, Sys: &syscall.SysProcAttr{}}
	if int(cfg.UID) != os.Getuid() || int(cfg.GID) != os.Getgid() {
		attr.Sys.Credential = &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, NoSetGroups: true}
	}
	return attr
}

// mergeEnv is base with each K=V of over replacing K.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range out {
			if ok, _, _ := strings.Cut(old, "="); ok == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// accept serves the control socket: a request per connection.
func (c *containerInit) accept(reqs chan<- request) {
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			return
		}
		go handle(conn, reqs)
	}
}

func handle(conn *net.UnixConn, reqs chan<- request) {
	r, err := readRequest(conn)
	if err != nil {
		conn.Write(response{err: err.Error()}.encode())
		conn.Close()
		return
	}
	r.conn, r.reply = conn, make(chan response, 1)
	reqs <- r
	resp := <-r.reply // written to conn by the main loop
	if r.op != opExec || resp.err != "" {
		conn.Close()
	}
	// An exec'd process's reaper reads the signal bytes and the hang-up;
	// the main loop sends its status and closes the connection.
}

// readRequest reads a request frame and the descriptors sent with it.
func readRequest(conn *net.UnixConn) (request, error) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
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
func dial(stateDir string) (*net.UnixConn, error) {
	dir, err := stateDirFD(stateDir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	d := net.Dialer{Timeout: callTimeout}
	conn, err := d.Dial("unix", fdPath(dir)+"/"+ctlSocket)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	return conn.(*net.UnixConn), nil
}

// callTimeout bounds each step of a call until the init's first answer:
// the connect, the request and the response. The socket is a file in the
// user's state, which root reaches too (Slurm's kill): one that never
// answers must not hold the caller.
const callTimeout = 10 * time.Second

// call sends one request, with fds if any, and reads the first response.
func call(stateDir string, r request, files ...*os.File) (*net.UnixConn, response, error) {
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
	conn.SetDeadline(time.Now().Add(callTimeout))
	if _, _, err := conn.WriteMsgUnix(r.encode(), oob, nil); err != nil {
		conn.Close()
		return nil, response{}, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	b, err := readFrame(conn)
	if err != nil {
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, response{}, fmt.Errorf("%w (its control socket did not answer within %v)", ErrNotRunning, callTimeout)
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

// StartJob starts the job of a created container.
func StartJob(stateDir string) error {
	conn, _, err := call(stateDir, request{op: opStart})
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
