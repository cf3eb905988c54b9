package launch

import (
	"fmt"
	"time"

	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
)

// JoinHelp explains joining, for --help.
const JoinHelp = `Tasks of a step: under srun, the tasks of a step that run on one node share
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

// Group is the container that a task joins: its name and how many tasks
// join it; no name for a task that runs alone.
type Group struct {
	Name    string
	Members int
	// Step: the group of a Slurm step's tasks (slurm-JOB.STEP), which the
	// step's slurmstepd starts once.
	Step bool
}

// JoinGroup works out whether this task joins a group container:
// automatically as one of several tasks of a Slurm step on this node, or
// as asked with --join-tag.
func JoinGroup(r *Request, j jobs.Job) (Group, error) {
	switch {
	case r.NoJoin && (r.JoinTag != "" || r.JoinCount != 0):
		return Group{}, usage("--no-join cannot be used with --join-tag or --join-count")
	case r.NoJoin:
		return Group{}, nil
	case r.JoinCount < 0:
		return Group{}, usage("bad --join-count %d: give the number of tasks", r.JoinCount)
	case (r.JoinTag != "" || r.JoinCount != 0) && (r.Name != "" || r.Detach):
		return Group{}, usage("--join-tag and --join-count cannot be used with --name or --detach")
	}
	g := Group{Name: r.JoinTag, Members: r.JoinCount}
	if g.Members == 0 {
		g.Members = j.LocalSize
	}
	if g.Name == "" {
		// Automatic only for the tasks of a Slurm step, named or detached
		// runs aside.
		if j.Scheduler != jobs.Slurm || j.Step == "" || r.Name != "" || r.Detach || r.JoinCount == 0 && j.LocalSize < 2 {
			if r.JoinCount != 0 {
				return Group{}, usage("--join-count needs --join-tag outside the tasks of a Slurm step")
			}
			return Group{}, nil
		}
		g.Name, g.Step = "slurm-"+j.ID+"."+j.Step, true
	}
	if err := runtime.CheckID(g.Name); err != nil {
		return Group{}, usage("bad --join-tag: %w", err)
	}
	if g.Members < 1 {
		return Group{}, usage("--join-tag %s: how many tasks join? give --join-count", g.Name)
	}
	return g, nil
}

// meeting is this task's place among its group's tasks, which start
// together or not at all (see runtime.Member); nil for a task alone.
type meeting struct {
	m   *runtime.Member
	g   Group
	job jobs.Job
}

// enter registers this task with its group's other tasks: before
// anything of this task's can fail, so that they hear of it.
func enter(c *runtime.Containers, g Group, j jobs.Job, log *Log) (*meeting, error) {
	m, err := c.EnterGroup(g.Name, g.Members, g.Step)
	if err != nil {
		return nil, err
	}
	log.Phase("entered group " + g.Name)
	return &meeting{m: m, g: g, job: j}, nil
}

func (mt *meeting) close() {
	if mt != nil {
		mt.m.Close()
	}
}

// fail ends a task that cannot start, and with it its group: every task
// returns the same reason, the first recorded.
func (mt *meeting) fail(err error) error {
	if mt == nil {
		return err
	}
	who := "a task"
	if mt.job.Rank != "" {
		who = "task " + mt.job.Rank
	}
	return mt.m.Fail(fmt.Sprintf("%s of group %s could not start: %s", who, mt.g.Name, Message(err)))
}

// meet says that this task has its image and waits for the others: it
// returns once all have theirs, the same, or with the group's failure.
func (mt *meeting) meet(image string, timeout time.Duration, log *Log) error {
	if err := mt.m.Ready(image); err != nil {
		return mt.m.Fail(err.Error())
	}
	if err := mt.m.Wait(timeout); err != nil {
		return err
	}
	log.Phase("all tasks of the group are ready")
	return nil
}
