package runtime

import (
	"net"
	goruntime "runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// runServer serves exec and kill for a named run (hpcrun --name, or a run
// under Slurm), beside a job that the init's main thread started and
// reaps. Processes are forked by a thread of their own, which drops its
// privileges as the main thread did for the job: capabilities are per
// thread, and the Go runtime's other threads keep the init's.
type runServer struct {
	ctr   *containerInit
	cfg   *initConfig
	forks chan fork

	mu    sync.Mutex // held from fork to registration, so reaped finds the pid
	execs map[int]*execd
}

// execd is an exec'd process: its status goes on conn, after the reply
// that gives its pid.
type execd struct {
	conn      *net.UnixConn
	announced bool // the pid reply is sent
	status    int
	ended     bool
}

type fork struct {
	path string
	args []string
	attr *syscall.ProcAttr
	conn *net.UnixConn
	done chan forked
}

type forked struct {
	pid int
	err error
}

func newRunServer(ctr *containerInit, cfg *initConfig) *runServer {
	s := &runServer{ctr: ctr, cfg: cfg, forks: make(chan fork), execs: map[int]*execd{}}
	go s.forker()
	return s
}

// forker forks every exec'd process from one unprivileged thread.
func (s *runServer) forker() {
	goruntime.LockOSThread() // for good: the thread must not serve anyone else
	var err error
	if s.cfg.Keyring != "" {
		// This thread was not the one that joined it (see keyring_linux.go).
		err = joinKeyring(s.cfg.Keyring)
	}
	if err == nil {
		err = dropPrivileges(s.cfg.NoNewPrivs, s.cfg.Caps, s.cfg.UID == 0)
	}
	for f := range s.forks {
		if err != nil {
			f.done <- forked{err: err}
			continue
		}
		s.mu.Lock()
		pid, ferr := forkExecd(s.cfg.Rlimits, f.path, f.args, f.attr, f.conn)
		if ferr == nil {
			s.execs[pid] = &execd{conn: f.conn}
		}
		s.mu.Unlock()
		f.done <- forked{pid, ferr}
	}
}

// reaped hears from the main thread's reaper that pid ended.
func (s *runServer) reaped(pid, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.execs[pid]
	switch {
	case e == nil:
	case e.announced:
		s.finish(pid, e, code)
	default:
		e.ended, e.status = true, code // finished once the pid is sent
	}
}

// reapAll reaps what is left once the job has ended and everything was
// killed, passing the exec'd processes' statuses on.
func (s *runServer) reapAll() { reapRest(s.reaped) }

// finish sends an exec'd process's status; s.mu is held.
func (s *runServer) finish(pid int, e *execd, code int) {
	e.conn.Write(response{pid: pid, status: code}.encode())
	e.conn.Close()
	delete(s.execs, pid)
}

// serve answers connections until the init exits with the job.
func (s *runServer) serve(job int) {
	for {
		conn, err := s.ctr.ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(conn, job)
	}
}

func (s *runServer) handle(conn *net.UnixConn, job int) {
	r, err := readRequest(conn)
	if err != nil {
		conn.Write(response{err: err.Error()}.encode())
		conn.Close()
		return
	}
	switch r.op {
	case opKill:
		if r.all {
			unix.Kill(-1, syscall.Signal(r.sig))
		} else {
			unix.Kill(job, syscall.Signal(r.sig))
		}
		conn.Write(response{}.encode())
		conn.Close()
		return
	case opExec:
	default:
		conn.Write(response{err: "the container's job was started already"}.encode())
		conn.Close()
		return
	}
	path, attr, cwdDone, err := execAttr(r, s.cfg)
	if err != nil {
		closeAll(r.fds)
		conn.Write(response{err: err.Error(), status: ExitStatus(err)}.encode())
		conn.Close()
		return
	}
	done := make(chan forked, 1)
	s.forks <- fork{path: path, args: r.args, attr: attr, conn: conn, done: done}
	res := <-done
	cwdDone()
	closeAll(r.fds)
	if res.err != nil {
		err := execError(r.args[0], res.err)
		conn.Write(response{err: err.Error(), status: ExitStatus(err)}.encode())
		conn.Close()
		return
	}
	conn.Write(response{pid: res.pid}.encode())
	s.mu.Lock()
	if e := s.execs[res.pid]; e != nil {
		e.announced = true
		if e.ended {
			s.finish(res.pid, e, e.status)
		}
	}
	s.mu.Unlock()
	// The process's reaper reads the signal bytes and the hang-up (see
	// fence_linux.go); reaped sends its status and closes conn.
}
