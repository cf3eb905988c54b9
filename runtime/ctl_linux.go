package runtime

// The init's control server: one for every container with a state
// directory, whichever way it runs.
//
//   - A detached container (hpcrun create): the job waits for start.
//   - A group container (Config.Members): no job; its members exec in.
//   - A named run (--name, every run under Slurm): the job starts at once,
//     and exec, kill and ps find it.
//
// The threading is the same in each. The init's main thread forks every
// process of the container: it alone has dropped its privileges
// (capabilities are per thread, and the Go runtime's other threads keep
// the init's), joined the container's session keyring and its network,
// uts and ipc namespaces, which are per thread too. A goroutine reaps,
// blocked in wait4; a goroutine per connection decodes a request and
// carries out its operation, handing the fork to the main thread. Each
// operation is one function, whether its request comes from the socket or
// from inside the init (the anchor's end is a kill).
//
// A plain run (no state directory) has no server: its main thread forks
// the job and then reaps, with the same rules, and no goroutine is added.

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/envlist"
	"github.com/hpcrun/hpcrun/runtime/procs"

	"github.com/hpcrun/hpcrun/internal/unixsock"
	"time"
)

// ctl is a container's init once the container is built: the reaper of
// its processes and, with a state directory, its control server.
type ctl struct {
	cfg    *initConfig
	logf   func(string, ...any)
	dir    int                // the state directory; -1 for none
	ln     *unixsock.Listener // the control socket; nil for a plain run
	status *os.File           // reports to the parent; nil once a created container is ready
	path   string             // the job's executable

	forks chan func()   // operations that fork, for the main thread
	wake  chan struct{} // a fork, or the end: for a reaper with no child
	done  chan struct{} // the reaper has finished
	code  int           // the container's status, once done

	mu sync.Mutex // held from a fork to its registration and reply
	st ctlState

	hookExits exitBox    // the statuses of startContainer hooks, from the reaper
	criuExits exitBox    // and of a checkpoint's criu
	criuMu    sync.Mutex // one checkpoint at a time
	starting  bool       // a start runs its hooks (c.mu)
}

// newCtl opens a container's state directory, and its control socket,
// while the host's tree is still in view; without a state directory
// there is no server.
func newCtl(cfg *initConfig, status *os.File) (*ctl, error) {
	c := &ctl{cfg: cfg, logf: cfg.logf, dir: -1, status: status, st: newCtlState(cfg.Members)}
	if cfg.StateDir == "" {
		return c, nil
	}
	dir, err := stateDirFD(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	// The socket file takes its mode from the socket's inode, less the
	// umask: made 0600 before bind, it is never more open than the other
	// state files, whatever the user's umask (0777 with umask 0).
	// The socket file stays when the init exits: delete removes the dir.
	l, err := unixsock.Listen(fdPath(dir)+"/"+ctlSocket, 0o600)
	if err != nil {
		unix.Close(dir)
		return nil, fmt.Errorf("container control socket: %w", err)
	}
	c.dir, c.ln = dir, l
	return c, nil
}

// stateDir is the state directory's descriptor for buildRootfs; nil for
// none.
func (c *ctl) stateDir() *int {
	if c.dir < 0 {
		return nil
	}
	return &c.dir
}

// paused reports whether hpcrun pause stopped the container.
func (c *ctl) paused() bool {
	return c.dir >= 0 && unix.Faccessat(c.dir, pausedFile, unix.F_OK, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// writeState writes a small file into the state directory.
func (c *ctl) writeState(name, content string) {
	if c.dir < 0 {
		return
	}
	fd, err := unix.Openat(c.dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	unix.Write(fd, []byte(content))
	unix.Close(fd)
}

// shieldSignals keeps the signals sent to the init (Slurm signals every
// process of a step) from ending it: they are not for it, and the job
// gets its own copy, or what `hpcrun kill` sends. With the job running,
// they are ignored: os/signal would cost a thread and a third of a
// millisecond, and each process exec'd later starts under a reaper that
// catches them, so that the process gets them at their default. Where the
// init forks the job later (a created container), they are caught and
// dropped instead: an ignored signal would stay ignored in the job.
func shieldSignals(jobLater bool) {
	sigs := []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGTSTP}
	if !jobLater {
		signal.Ignore(sigs...)
		return
	}
	dropped := make(chan os.Signal, 8)
	signal.Notify(dropped, append(sigs, syscall.SIGPIPE)...)
	go func() {
		for range dropped {
		}
	}()
}

// created serves a detached container, whose job waits for start, until
// it ends, and returns the job's status.
func (c *ctl) created(control *os.File) int {
	shieldSignals(true)
	// Set up: create may return.
	c.status.Write(message{Ready: true}.encode())
	c.status.Close()
	c.status = nil
	control.Close()
	if c.cfg.Members > 0 {
		c.writeState(startedFile, "0")
	}
	c.logf("serving %s", ctlSocket)
	return c.serve()
}

// running follows a run whose job the main thread has started, until the
// container ends, and returns the job's status.
func (c *ctl) running(job int) int {
	c.st.started(job)
	c.logf("job started as pid %d: %s", job, strings.Join(c.cfg.Args, " "))
	if c.ln == nil {
		return c.reap()
	}
	c.writeState(startedFile, strconv.Itoa(job))
	return c.serve()
}

// serve answers the control socket until the container ends. The main
// thread runs the forks; the reaper ends it.
func (c *ctl) serve() int {
	c.forks, c.wake, c.done = make(chan func()), make(chan struct{}, 1), make(chan struct{})
	go c.accept()
	if c.cfg.AnchorFD > 0 {
		go c.watchAnchor()
	}
	go func() {
		c.code = c.reap()
		close(c.done)
	}()
	for {
		select {
		case fork := <-c.forks:
			fork()
		case <-c.done:
			return c.code
		}
	}
}

// onMain runs fork on the main thread and waits for it; false when the
// container has ended and the main thread runs nothing more.
func (c *ctl) onMain(fork func()) bool {
	ran := make(chan struct{})
	select {
	case c.forks <- func() { fork(); close(ran) }:
		<-ran
		return true
	case <-c.done:
		return false
	}
}

// poke wakes a reaper that waits for a child.
func (c *ctl) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// endLocked ends the container with code, unless it has ended. c.mu is
// held, so no fork comes after.
func (c *ctl) endLocked(code int) {
	if c.st.end(code) {
		c.ending()
	}
}

// ending kills whatever is left in a container that has ended; the
// reaper reaps it and finishes.
func (c *ctl) ending() {
	unix.Kill(-1, unix.SIGKILL)
	c.poke()
}

// reap waits for every child that the kernel hands to PID 1, orphans
// included, until the container ends, and returns its status as a shell
// would report the job's. It blocks in wait4: no SIGCHLD round trip
// through the Go runtime. With a server it reaps, once the container
// ends, everything that was killed, telling exec callers their statuses;
// a plain run reports at once instead.
func (c *ctl) reap() int {
	opts := 0
	if c.cfg.Foreground {
		opts = unix.WUNTRACED
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, opts, nil)
		switch {
		case err == unix.EINTR:
		case err == unix.ECHILD && c.ln != nil:
			c.mu.Lock()
			ended, code := c.st.ended, c.st.code
			c.mu.Unlock()
			if ended {
				return c.finish(code)
			}
			<-c.wake // none left yet: a created container, or members to come
		case err != nil:
			c.mu.Lock()
			c.endLocked(StatusFailed)
			c.mu.Unlock()
			return c.finish(StatusFailed)
		case ws.Stopped():
			c.stopped(pid, ws.StopSignal())
		default:
			// A startContainer hook's status goes to its runner first:
			// the runner holds c.mu, which exited takes.
			c.hookExits.note(pid, WaitStatusCode(syscall.WaitStatus(ws)))
			c.criuExits.note(pid, WaitStatusCode(syscall.WaitStatus(ws)))
			if code, ended := c.exited(pid, WaitStatusCode(syscall.WaitStatus(ws))); ended && c.ln == nil {
				return c.finish(code)
			}
		}
	}
}

// stopped hears that a child stopped. At a terminal, a job stopped by
// Ctrl-Z stops hpcrun too, so the shell gets the terminal back; fg
// continues both.
func (c *ctl) stopped(pid int, sig unix.Signal) {
	c.mu.Lock()
	job := c.st.job
	c.mu.Unlock()
	if pid != job || c.status == nil {
		return
	}
	if c.paused() {
		return // hpcrun pause, not Ctrl-Z: hpcrun keeps the terminal
	}
	c.logf("job stopped by %s", unix.SignalName(sig))
	c.status.Write(message{Stopped: true, Status: int(sig)}.encode())
}

// exited hears that pid ended with code: an exec'd process's caller gets
// its status. It reports whether the container has ended, and with what.
func (c *ctl) exited(pid, code int) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ends := c.st.exited(pid, code)
	if e != nil {
		e.conn.Write(response{pid: pid, status: code}.encode())
		e.conn.Close()
	}
	if pid == c.st.job {
		c.logf("job ended with status %d", code)
	}
	if ends {
		if pid != c.st.job {
			c.logf("all %d members have ended", c.st.joined)
		}
		// Whatever the job left behind dies with it, as under Slurm.
		c.ending()
	}
	return c.st.code, c.st.ended
}

// finish records the container's status in the state directory and
// reports it to the parent.
func (c *ctl) finish(code int) int {
	c.writeState(exitFile, strconv.Itoa(code))
	if c.status != nil {
		c.status.Write(message{Status: code}.encode())
	}
	return code
}

// watchAnchor ends the container when the anchor process ends (see
// Config.Anchor), as kill --all with SIGKILL does.
func (c *ctl) watchAnchor() {
	procs.FromFD(c.cfg.AnchorFD).Wait(-1)
	c.signal(unix.SIGKILL, true, func(response) {})
}

// accept serves the control socket: a request per connection.
func (c *ctl) accept() {
	for {
		conn, err := c.ln.Accept()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, or a caller gone before its turn:
			// the socket must outlast that.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go c.handle(conn)
	}
}

// handle decodes a connection's request and carries out its operation.
// The connection is closed once answered, but for an exec'd process's:
// its reaper reads the signal bytes and the hang-up (see fence_linux.go),
// and exited sends its status and closes it.
func (c *ctl) handle(conn *unixsock.Conn) {
	// A caller that connects and sends nothing must not hold a
	// goroutine and the connection for good.
	conn.SetDeadline(time.Now().Add(callTimeout))
	r, err := readRequest(conn)
	conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Write(response{err: err.Error()}.encode())
		conn.Close()
		return
	}
	r.conn = conn
	if r.op != opExec && r.op != opStart && r.op != opCheckpoint {
		// Descriptors are for exec, and start's hooks, only: none sent
		// with another operation stays open in the init.
		closeAll(r.fds)
	}
	reply := func(resp response) { conn.Write(resp.encode()) }
	keep := false
	switch r.op {
	case opStart:
		c.start(r.fds, reply)
	case opKill:
		c.signal(unix.Signal(r.sig), r.all, reply)
	case opExec:
		keep = c.exec(r, reply)
	case opCheckpoint:
		c.checkpoint(r, reply)
	default:
		reply(response{err: fmt.Sprintf("unknown control operation %q", r.op)})
	}
	if !keep {
		conn.Close()
	}
}

// Each operation writes its reply before anything it causes can end the
// container: the init may exit right after (a kill of a created
// container, a job that ends at once), and the reaper may send an exec'd
// process's status. An operation that finds the container ended does not
// reply: its caller is hung up on, as by an init that has exited.

// start starts the job of a created container, with the stdio that
// create had, in the init's own working directory, checked as the job's.
// Its startContainer hooks run first, writing to the caller's stderr
// (fds), else the container's; one that fails ends the container.
func (c *ctl) start(fds []int, reply func(response)) {
	out := os.Stderr
	if len(fds) > 0 {
		out = os.NewFile(uintptr(fds[0]), "hook output")
		defer out.Close()
		closeAll(fds[1:])
	}
	c.onMain(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := c.st.mayStart(); err != nil {
			if err != errEnded {
				reply(response{err: err.Error()})
			}
			return
		}
		if c.starting {
			reply(response{err: "the container is being started"})
			return
		}
		// The startContainer hooks run with c.mu let go (see runHookHere):
		// a kill may end the container meanwhile.
		c.starting = true
		err := c.startHooks(out)
		c.starting = false
		if err != nil {
			reply(response{err: err.Error(), status: StatusFailed})
			c.endLocked(StatusFailed)
			return
		}
		if err := c.st.mayStart(); err != nil {
			if err != errEnded {
				reply(response{err: err.Error()})
			}
			return
		}
		attr := jobAttr(c.cfg, c.cfg.Env, "", []uintptr{0, 1, 2})
		if c.cfg.Terminal {
			attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
		}
		pid, err := forkExec(c.cfg, c.path, c.cfg.Args, attr)
		if err != nil {
			// 126 or 127, as for a run: start ends with it.
			err = execError(c.cfg.Args[0], err)
			reply(response{err: err.Error(), status: ExitStatus(err)})
			return
		}
		c.st.started(pid)
		c.writeState(startedFile, strconv.Itoa(pid))
		c.logf("job started as pid %d: %s", pid, strings.Join(c.cfg.Args, " "))
		reply(response{pid: pid})
		c.poke()
	})
}

// signal sends sig to the job, or with all to every process but the
// init; a created container ends instead (see ctlState.killTargets).
func (c *ctl) signal(sig unix.Signal, all bool, reply func(response)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.ended {
		return
	}
	pids, ends := c.st.killTargets(all)
	for _, pid := range pids {
		unix.Kill(pid, sig)
	}
	reply(response{})
	if ends {
		c.endLocked(128 + int(sig))
	}
}

// exec starts a process for an exec request, under its reaper, and
// reports whether it did: then its connection stays open for its status.
func (c *ctl) exec(r request, reply func(response)) bool {
	defer closeAll(r.fds)
	c.mu.Lock()
	err := c.st.mayExec(r.member)
	c.mu.Unlock()
	if err == errEnded {
		return false
	}
	if err != nil {
		reply(response{err: err.Error(), status: StatusFailed})
		return false
	}
	started := false
	err = errEnded
	c.onMain(func() {
		// The checks too, on the thread that dropped its privileges: the
		// --cwd open must not pass where the process could not.
		path, attr, cwdDone, aerr := execAttr(r, c.cfg)
		if aerr != nil {
			err = aerr
			return
		}
		defer cwdDone()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.st.ended {
			return
		}
		var pid int
		if pid, err = forkExecd(c.cfg, path, r.args, attr, r.conn); err != nil {
			err = execError(r.args[0], err)
			return
		}
		c.st.forked(pid, &execd{conn: r.conn, member: r.member})
		reply(response{pid: pid})
		started = true
		c.poke()
	})
	if err == errEnded {
		return false
	}
	if err != nil {
		reply(response{err: err.Error(), status: ExitStatus(err)})
	}
	if r.member {
		// A task whose process could not start came and went.
		c.mu.Lock()
		ends := c.st.join()
		c.logf("member %d of %d joined (started: %v)", c.st.joined, c.st.members, started)
		if ends {
			c.ending()
		}
		c.mu.Unlock()
	}
	return started
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
	// Without --cwd, the init's own working directory: the job's, checked
	// as it started. With it, the directory opened and checked here; the
	// process changes into it through the init's descriptor, which it
	// holds until its execve (see fence_linux.go). The directory comes
	// first, as in a run: a missing one is the error to report, and the
	// command is looked up from there.
	dir, done := "", func() {}
	if r.cwd != "" {
		fd, err := openCwd(r.cwd, "--cwd")
		if err != nil {
			return "", nil, nil, fmt.Errorf("exec: %w", err)
		}
		dir, done = fdPath(fd), func() { unix.Close(fd) }
	}
	if path, err = lookPath(r.args[0], envlist.Value(env, "PATH"), r.cwd); err != nil {
		done()
		return "", nil, nil, err
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
