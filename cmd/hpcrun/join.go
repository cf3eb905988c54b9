package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/runtime/procs"
)

// group is the container that a task joins: its name and how many tasks
// join it; no name for a task that runs alone.
type group struct {
	name    string
	members int
}

// joinHelp explains joining, for --help.
const joinHelp = `Tasks of a step: under srun, the tasks of a step that run on one node share
one container (a user, mount and pid namespace), so that MPI's shared-memory
transports, cross-memory attach and the pids the ranks exchange work as
outside. The first task to come creates it, named slurm-JOB.STEP; each task
keeps its own stdio, environment, exit status and signals, and the container
lives until its last task ends. --join-tag TAG and --join-count N do the same
elsewhere (mpirun, PBS); --no-join gives each task its own container.

The tasks of a group start together: each waits until all have their
image, and they must ask for the same one (the same manifest digest, from
whichever cache). When one cannot start (another image, an unpack that
fails or fills the disk, a task killed before the group starts), every
task of the group ends at once with the same one-line reason and exit
status 125, rather than waiting in MPI_Init for one that is gone. Tasks
that have not come within join_timeout (60s by default; see hpcrun config)
fail the group too, and a task that comes after its group failed gets the
same reason at once.`

// joinGroup works out whether this task joins a group container:
// automatically as one of several tasks of a Slurm step on this node, or
// as asked with --join-tag.
func joinGroup(o *runOptions, j jobs.Job) (group, error) {
	switch {
	case o.noJoin && (o.joinTag != "" || o.joinCount != 0):
		return group{}, usageError{errors.New("--no-join cannot be used with --join-tag or --join-count")}
	case o.noJoin:
		return group{}, nil
	case o.joinCount < 0:
		return group{}, usageError{fmt.Errorf("bad --join-count %d: give the number of tasks", o.joinCount)}
	case (o.joinTag != "" || o.joinCount != 0) && (o.name != "" || o.detach):
		return group{}, usageError{errors.New("--join-tag and --join-count cannot be used with --name or --detach")}
	}
	g := group{name: o.joinTag, members: o.joinCount}
	if g.members == 0 {
		g.members = j.LocalSize
	}
	if g.name == "" {
		// Automatic only for the tasks of a Slurm step, named or detached
		// runs aside.
		if j.Scheduler != jobs.Slurm || j.Step == "" || o.name != "" || o.detach || o.joinCount == 0 && j.LocalSize < 2 {
			if o.joinCount != 0 {
				return group{}, usageError{errors.New("--join-count needs --join-tag outside the tasks of a Slurm step")}
			}
			return group{}, nil
		}
		g.name = "slurm-" + j.ID + "." + j.Step
	}
	if err := runtime.CheckID(g.name); err != nil {
		return group{}, usageError{fmt.Errorf("bad --join-tag: %w", err)}
	}
	if g.members < 1 {
		return group{}, usageError{fmt.Errorf("--join-tag %s: how many tasks join? give --join-count", g.name)}
	}
	return g, nil
}

// runJoined runs the task in its group's container, creating it if it is
// the first, and returns the task's exit status.
func runJoined(so *stateOptions, im *chosenImage, cfg *runtime.Config, g group, log *logger) (int, error) {
	c, err := so.open(true)
	if err != nil {
		return 0, err
	}
	cfg.Foreground = false
	if im.hold != nil {
		cfg.Hold = []*os.File{im.hold}
	}
	// The group ends, at the latest, with what started its first task:
	// srun's slurmstepd, or mpirun's daemon, which outlives every task.
	defer anchorToParent(cfg)()
	dir, created, err := c.Join(g.name, cfg, g.members, im.digest)
	if err != nil {
		return 0, err
	}
	if created {
		log.debugf("group container %s created for %d tasks", g.name, g.members)
	} else {
		log.debugf("joining group container %s", g.name)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, runtime.ForwardedSignals...)
	defer signal.Stop(sigs)
	p := cfg.Spec.Process
	code, err := runtime.Exec(dir, runtime.Process{Args: p.Args, Env: p.Env, Cwd: p.Cwd, Member: true},
		runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, sigs)
	log.phase("task ended with status " + strconv.Itoa(code))
	return code, err
}

// enterGroup registers this task with its group's other tasks.
func enterGroup(so *stateOptions, g group, log *logger) (*runtime.Member, error) {
	c, err := so.open(true)
	if err != nil {
		return nil, err
	}
	m, err := c.Enter(g.name, g.members, launch())
	if err != nil {
		return nil, err
	}
	log.phase("entered group " + g.name)
	return m, nil
}

// launch names what started this task: its parent, by pid and start
// time. The tasks of a step on a node are all children of the step's
// slurmstepd (mpirun's tasks, of its daemon), so a task that comes late
// knows the group it finds as its own; "" when the parent is gone.
func launch() string {
	ppid := os.Getppid()
	t, err := procs.StartTime(ppid)
	if err != nil || ppid <= 1 {
		return ""
	}
	return strconv.Itoa(ppid) + "@" + strconv.FormatUint(t, 10)
}

// meetGroup says that this task has its image and waits for the others:
// it returns once all have theirs, the same, or with the group's failure.
func meetGroup(m *runtime.Member, im *chosenImage, cfg *runtime.Config, timeout time.Duration, log *logger) error {
	image := im.digest
	if image == "" {
		image = cfg.Spec.Root.Path
	}
	if err := m.Ready(image); err != nil {
		return m.Fail(err.Error())
	}
	if err := m.Wait(timeout); err != nil {
		return err
	}
	log.phase("all tasks of the group are ready")
	return nil
}

// failGroup ends a task that cannot start, and with it its group: every
// task returns the same reason, the first recorded.
func failGroup(m *runtime.Member, g group, j jobs.Job, err error) error {
	if m == nil {
		return err
	}
	who := "a task"
	if j.Rank != "" {
		who = "task " + j.Rank
	}
	return m.Fail(fmt.Sprintf("%s of group %s could not start: %v", who, g.name, err))
}
