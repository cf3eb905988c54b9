package runtime

// The ways a job of hpcrun's runs, besides Init.Run in the foreground:
// under a name that exec, ps and kill find (RunNamed), in the background
// past hpcrun's exit (RunDetached), and as a task of a group container
// (RunMember). Each sets the Config fields of its mode here, once.

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strconv"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// ErrNotNamed: a named run's name could not be registered; the run has
// not started.
var ErrNotNamed = errors.New("the run could not be named")

// notNamed is a failed registration: its own text, and ErrNotNamed.
type notNamed struct{ err error }

func (e notNamed) Error() string   { return e.err.Error() }
func (e notNamed) Unwrap() []error { return []error{ErrNotNamed, e.err} }

// RunNamed runs cfg's job in p, the init cloned for it, as container
// name: exec, ps and kill find it while it runs. With keep (a name the
// user chose), a job that started leaves the container stopped, with its
// exit status, until delete; a run whose job never started leaves
// nothing, for its error said all. Without keep (a batch system's name)
// the state goes when the run ends. When the name cannot be registered
// (taken, bad), it returns an error wrapping ErrNotNamed and leaves p as
// it was, to run unnamed or to abort.
func (c *Containers) RunNamed(ctx context.Context, p *Init, name string, cfg *Config, keep bool) (int, error) {
	dir, err := c.Register(name, p.Pid(), cfg.Spec.Root.Path, !keep)
	if err != nil {
		return 0, notNamed{err}
	}
	cfg.StateDir = dir
	code, err := p.Run(ctx, cfg)
	if !keep || !c.started(name) {
		c.Unregister(name)
	}
	return code, err
}

// RunDetached creates and starts container name from cfg, which lives
// past this process's exit with its output in a log file (LogPath); once
// it stops, its state, log and exit status stay until delete. hold, if not nil, is kept open by its
// init for as long as it lives (the cached image's use lock). With
// anchored, it ends when this process's parent does: under a batch
// system, the job's script or task, and so with the job.
func (c *Containers) RunDetached(name string, cfg *Config, hold *os.File, anchored bool) error {
	defer outliving(cfg, hold, anchored)()
	if _, err := c.Create(name, cfg, CreateOptions{}); err != nil {
		return err
	}
	if err := c.Start(name); err != nil {
		c.Delete(name, true)
		return err
	}
	return nil
}

// RunMember runs cfg's job as a task of group container group, which
// members tasks share (see Config.Members and Join): the first task to
// come creates it, and says so with created. The task's process runs
// with stdio and this task's own environment, and gets the signals this
// process gets. The group ends, at the latest, with this process's
// parent: srun's slurmstepd, or mpirun's daemon, which outlives every
// task. image is what the tasks must share (see Join); hold is as for
// RunDetached.
func (c *Containers) RunMember(group string, members int, image string, cfg *Config, hold *os.File, stdio Stdio) (code int, created bool, err error) {
	defer outliving(cfg, hold, true)()
	dir, created, err := c.Join(group, cfg, members, image)
	if err != nil {
		return 0, false, err
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, ForwardedSignals...)
	defer signal.Stop(sigs)
	p := cfg.Spec.Process
	code, err = Exec(dir, Process{Args: p.Args, Env: p.Env, Cwd: p.Cwd, Member: true}, stdio, sigs)
	return code, created, err
}

// EnterGroup is Enter for a task started by this process's parent, the
// launch that the group's tasks share (see Enter's gen): its pid and
// start time, "" when the parent is gone. once says that the parent runs
// the group once (a Slurm step's slurmstepd), so that a task of it that
// starts after the others have ended still takes their outcome (see
// cameLate).
func (c *Containers) EnterGroup(group string, members int, once bool) (*Member, error) {
	gen := ""
	if ppid := os.Getppid(); ppid > 1 {
		if t, err := procs.StartTime(ppid); err == nil {
			gen = strconv.Itoa(ppid) + "@" + strconv.FormatUint(t, 10)
		}
	}
	return c.enterAt(group, members, gen, started(), once)
}

// outliving sets cfg up for a container whose init outlives this
// process: in no terminal's foreground, holding hold (if not nil), and,
// with anchored, ending with this process's parent. The returned func
// closes this process's copy of the anchor.
func outliving(cfg *Config, hold *os.File, anchored bool) func() {
	cfg.Foreground = false
	if hold != nil {
		cfg.Hold = []*os.File{hold}
	}
	if !anchored {
		return func() {}
	}
	return anchorToParent(cfg)
}

// anchorToParent makes this process's parent the anchor of the container
// cfg makes (Config.Anchor): the container ends when the parent does.
// The returned func closes this process's copy of the anchor.
func anchorToParent(cfg *Config) func() {
	f, err := procs.Parent()
	if err != nil {
		return func() {}
	}
	cfg.Anchor = f
	return func() { cfg.Anchor.Close() }
}
