package procs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"golang.org/x/sys/unix"
)

// freezeTimeout bounds Freeze: a process in uninterruptible sleep (D)
// stops only once it wakes, which on a hung file system may be never.
const freezeTimeout = 2 * time.Second

// Freeze stops every process of the container of init but init itself,
// which must go on serving the container's control requests.
//
// One round of SIGSTOP is not enough: a process that forks while the round
// goes over /proc makes a child that the round did not see, which then
// runs on. So Freeze sweeps /proc again and again, stopping what still
// runs, until a sweep finds every process stopped; and then once more, as
// a child whose parent was mid-fork during that sweep shows up only in the
// next one. Zombies count as stopped. If some process does not stop in
// time, Freeze continues them all again and reports which did not stop.
func Freeze(init int) error {
	deadline := time.Now().Add(freezeTimeout)
	for settled := 0; settled < 2; {
		var running []Proc
		var errs []error
		err := scan(init, func(p Proc, dir int) {
			if p.Pid == init || stopped(p.State) {
				return
			}
			running = append(running, p)
			if err := signal(dir, p.Pid, unix.SIGSTOP); err != nil {
				errs = append(errs, fmt.Errorf("stop process %d: %w", p.Pid, err))
			}
		})
		if err = errors.Join(append(errs, err)...); err != nil {
			Thaw(init)
			return err
		}
		if len(running) == 0 {
			settled++
			continue
		}
		settled = 0
		if time.Now().After(deadline) {
			Thaw(init)
			return fmt.Errorf("%s did not stop within %v; all run on", describe(running), freezeTimeout)
		}
		// A signalled process stops as soon as it is scheduled.
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Thaw continues every process of the container of init but init itself.
// SIGCONT does no harm to a process that runs.
func Thaw(init int) error {
	var errs []error
	err := scan(init, func(p Proc, dir int) {
		if p.Pid == init {
			return
		}
		if err := signal(dir, p.Pid, unix.SIGCONT); err != nil {
			errs = append(errs, fmt.Errorf("continue process %d: %w", p.Pid, err))
		}
	})
	return errors.Join(append(errs, err)...)
}

// stopped reports whether a process in state s will not run until
// continued: stopped by a signal, or by its tracer; or dead.
func stopped(s byte) bool {
	return s == 'T' || s == 't' || s == 'Z' || s == 'X'
}

// signal sends sig to pid, whose /proc directory is dir. Through the
// directory, which pidfd_send_signal takes as a pidfd, the signal cannot
// reach a process that took over the pid since. Kernels older than 5.1, and
// seccomp filters that refuse the call, get kill(2), right after a lookup
// through dir that fails if the process has been reaped. A process that has
// ended needs no signal.
func signal(dir, pid int, sig unix.Signal) error {
	var err error = unix.ENOSYS
	if !fallback.Forced(fallback.Pidfd) {
		err = unix.PidfdSendSignal(dir, sig, nil, 0)
	}
	if err == unix.ENOSYS || err == unix.EPERM {
		if _, serr := readAt(dir, "stat"); serr != nil {
			return nil
		}
		err = unix.Kill(pid, sig)
	}
	if err == unix.ESRCH {
		return nil
	}
	return err
}

// describe names processes for an error message.
func describe(procs []Proc) string {
	s := make([]string, len(procs))
	for i, p := range procs {
		s[i] = fmt.Sprintf("%d (%s, state %c)", p.Pid, p.Comm, p.State)
	}
	noun := "process "
	if len(procs) > 1 {
		noun = "processes "
	}
	return noun + strings.Join(s, ", ")
}
