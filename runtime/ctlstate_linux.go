package runtime

import (
	"errors"
	"slices"

	"github.com/hpcrun/hpcrun/internal/unixsock"
)

// ctlState is what a container's init knows of the processes it started,
// with the rules that decide on them: whether the job may start or a
// process be exec'd, whom a kill reaches, and when the container ends.
// It makes no system call: the control server (ctl_linux.go) asks it,
// under its lock, and does what it says.
type ctlState struct {
	members int // a group container's number of members; 0 otherwise
	job     int // the job's pid; 0 until it starts (a group container has none)
	execs   map[int]*execd
	joined  int // members that came, whether their process started or not
	active  int // members whose process runs
	ended   bool
	code    int // the container's status, once ended
}

// execd is a running exec'd process: its status goes on conn, which
// already carries the reply that gave its pid.
type execd struct {
	conn   *unixsock.Conn
	member bool
}

// errEnded: the container is ending, and takes no more requests; the
// caller is hung up on, as by an init that has exited.
var errEnded = errors.New("the container has ended")

func newCtlState(members int) ctlState {
	return ctlState{members: members, execs: map[int]*execd{}}
}

// mayStart says why the job may not start now, if it may not.
func (s *ctlState) mayStart() error {
	switch {
	case s.ended:
		return errEnded
	case s.job != 0 || s.members > 0:
		return errors.New("the container's job was started already")
	}
	return nil
}

// mayExec says why a process may not be exec'd now, if it may not. A
// member, a task that joins, needs a group container.
func (s *ctlState) mayExec(member bool) error {
	switch {
	case s.ended:
		return errEnded
	case member && s.members == 0:
		return errors.New("exec: the container is not a group container, which tasks join")
	}
	return nil
}

// started records the job's pid.
func (s *ctlState) started(pid int) { s.job = pid }

// forked records an exec'd process; a member's counts as running.
func (s *ctlState) forked(pid int, e *execd) {
	s.execs[pid] = e
	if e.member {
		s.active++
	}
}

// killTargets says whom a kill signals: the pids, -1 for every process
// but the init; or, for a created container (no job yet), that it ends
// instead. A group container's job is its members, and --all ends it.
func (s *ctlState) killTargets(all bool) (pids []int, ends bool) {
	switch {
	case s.members > 0 && !all:
		for pid, e := range s.execs {
			if e.member {
				pids = append(pids, pid)
			}
		}
		slices.Sort(pids)
		return pids, false
	case s.job == 0:
		return nil, true
	case all:
		return []int{-1}, false
	}
	return []int{s.job}, false
}

// join counts a member that came, whose process started or not (then it
// came and went), and reports whether the container ends now.
func (s *ctlState) join() bool {
	s.joined++
	return s.groupDone() && s.end(0)
}

// groupDone: every member of a group container has come, and none runs.
func (s *ctlState) groupDone() bool {
	return s.members > 0 && s.joined >= s.members && s.active == 0
}

// exited records that pid ended with code, a shell's status. It returns
// the exec'd process it was, if any, and whether the container ends now:
// with its job, or with its last member.
func (s *ctlState) exited(pid, code int) (e *execd, ends bool) {
	if e = s.execs[pid]; e != nil {
		delete(s.execs, pid)
		if e.member {
			s.active--
		}
	}
	switch {
	case s.job != 0 && pid == s.job:
		return e, s.end(code)
	case s.groupDone():
		return e, s.end(0)
	}
	return e, false
}

// end ends the container with code, unless it has ended already, and
// reports whether this call ended it.
func (s *ctlState) end(code int) bool {
	if s.ended {
		return false
	}
	s.ended, s.code = true, code
	return true
}
