package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
)

// Options are what a run needs besides the request.
type Options struct {
	Log *Log
	// State opens the state root of named, detached and group containers;
	// create makes it when missing.
	State func(create bool) (*runtime.Containers, error)
	// Early is an init cloned for this job ahead of everything else, or
	// nil (see cmd/hpcrun/internal/early).
	Early *runtime.Init
}

// Run runs the job that r asks for and returns its exit status: in the
// foreground, named under a batch system or with --name; as a task of a
// group container; or detached. The path of a job, in order: settings,
// the group's meeting, the image, the container's config, the run.
func Run(ctx context.Context, r *Request, o Options) (int, error) {
	log := o.Log
	if o.Early != nil {
		o.Early.SetWarn(log.warn)
	}
	var cp *Checkpoint
	if r.Restore != "" {
		var err error
		if cp, err = restoreRequest(r); err != nil {
			return 0, err
		}
	}
	h := HostFacts()
	st, err := LoadSettings(h, r.Cache, r.Net)
	if err != nil {
		return 0, err
	}
	st.LogTo(log)
	if st.Conf.BatchLineWarning.Value && jobs.PlainBatchLine(st.Job, os.Getppid(), jobs.ProcFS{}) {
		log.Warnf("%s", jobs.BatchLineWarning)
	}
	g, err := JoinGroup(r, st.Job)
	if err != nil {
		return 0, err
	}
	var mt *meeting
	if g.Name != "" {
		c, err := o.State(true)
		if err != nil {
			return 0, err
		}
		if mt, err = enter(c, g, st.Job, log); err != nil {
			return 0, err
		}
		defer mt.close()
	}
	im, err := OpenImage(ctx, r, h, st, log)
	if err != nil {
		return 0, mt.fail(err)
	}
	defer im.Release()
	cfg, err := Build(r, im, h, st, log)
	if err != nil {
		return 0, mt.fail(err)
	}
	cfg.Verbose, cfg.Start = log.Verbose, log.Start
	if cp != nil {
		if mt != nil {
			return 0, mt.fail(UsageError{Err: errors.New("--restore restores one job, not a step's tasks: run it as one task (srun -n 1), or with --no-join")})
		}
		if err := restoreChecks(cp, cfg, im.Digest); err != nil {
			return 0, mt.fail(err)
		}
		dir, _ := filepath.Abs(r.Restore)
		cfg.Restore = &runtime.Restore{Dir: dir, Criu: st.Conf.Criu.Value, Pid: cp.Pid, MaxPid: cp.MaxPid, Stdio: cp.Stdio}
		log.Debugf("restore: %s, pid %d, criu %s at the checkpoint", dir, cp.Pid, cp.Criu)
	}
	log.Phase("resolved options")
	switch {
	case mt != nil:
		o.Early.Abort()
		return runMember(mt, o, im, cfg, st.Conf.JoinTimeout.Value, log)
	case r.Detach:
		o.Early.Abort()
		return 0, runDetached(r.Name, o, im, cfg, st.Job, log)
	}
	return runForeground(ctx, runName(r, st.Job), r.Name != "", o, cfg, log)
}

// restoreRequest reads --restore's checkpoint and makes r run it: its
// command, in its image unless r names one.
func restoreRequest(r *Request) (*Checkpoint, error) {
	if len(r.Args) > 0 {
		return nil, UsageError{Err: errors.New("--restore takes no command: the checkpoint's job goes on")}
	}
	if r.Detach {
		return nil, UsageError{Err: errors.New("--restore runs in the foreground: it takes no --detach")}
	}
	cp, err := LoadCheckpoint(r.Restore)
	if err != nil {
		return nil, err
	}
	if r.Image == "" && r.Rootfs == "" {
		if cp.Image == "" {
			return nil, UsageError{Err: fmt.Errorf("--restore %s: the checkpoint names no image: give --image or --rootfs", r.Restore)}
		}
		r.Image = cp.Image
	}
	r.Args = cp.Args
	return cp, nil
}

// runName is the name of a run: --name, else under a batch system one
// made of the job, step and task ids (slurm-J.S.T, pbs-J.T), so that
// `hpcrun exec` can find the run of a job step; else none.
func runName(r *Request, j jobs.Job) string {
	if r.Name != "" {
		return r.Name
	}
	return j.Name()
}

// runForeground runs the job in an init of its own, cloned ahead or now,
// under name if it has one. A name that was asked for (--name) stays,
// stopped, once the job ends, until delete. A name that was not (the
// batch system's) goes with the run, and is dropped when taken: a second
// run in the same task goes unnamed.
func runForeground(ctx context.Context, name string, asked bool, o Options, cfg *runtime.Config, log *Log) (int, error) {
	p := o.Early
	if p == nil {
		p = runtime.Start(runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
		p.SetWarn(log.warn)
	}
	if name != "" && p.Pid() > 0 {
		c, err := o.State(true)
		if err == nil {
			log.Debugf("container name: %s", name)
			var code int
			code, err = c.RunNamed(ctx, p, name, cfg, asked)
			if !errors.Is(err, runtime.ErrNotNamed) {
				log.Phase(fmt.Sprintf("job ended with status %d", code))
				return code, err
			}
		}
		if asked {
			p.Abort()
			return 0, err
		}
		log.Debugf("no container name: %v", err)
	}
	code, err := p.Run(ctx, cfg)
	log.Phase(fmt.Sprintf("job ended with status %d", code))
	return code, err
}

// runMember meets the group's other tasks, then runs this one in the
// group's container.
func runMember(mt *meeting, o Options, im *Image, cfg *runtime.Config, timeout time.Duration, log *Log) (int, error) {
	image := im.Digest
	if image == "" {
		image = cfg.Spec.Root.Path
	}
	if err := mt.meet(image, timeout, log); err != nil {
		return 0, err
	}
	c, err := o.State(true)
	if err != nil {
		return 0, err
	}
	code, created, err := c.RunMember(mt.g.Name, mt.g.Members, im.Digest, cfg, im.Hold(),
		runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	if err != nil {
		return code, err
	}
	if created {
		log.Debugf("group container %s created for %d tasks", mt.g.Name, mt.g.Members)
	}
	log.Phase("task ended with status " + strconv.Itoa(code))
	return code, nil
}

// runDetached starts the job in a named container (run-PID by default)
// that lives past hpcrun's exit, its output in a log file. exec, ps and
// kill find it by name; once stopped it stays, with its log and exit
// status, until delete. Under Slurm it ends with what started it, the
// job's script or task.
func runDetached(name string, o Options, im *Image, cfg *runtime.Config, j jobs.Job, log *Log) error {
	c, err := o.State(true)
	if err != nil {
		return err
	}
	if name == "" {
		name = "run-" + strconv.Itoa(os.Getpid())
	}
	if err := c.RunDetached(name, cfg, im.Hold(), j.Scheduler == jobs.Slurm); err != nil {
		return err
	}
	log.Infof("container %s runs detached; its output goes to %s, kept until hpcrun delete %s (hpcrun ps, exec and kill %s)", name, c.LogPath(name), name, name)
	return nil
}

// Spec is the OCI runtime config of the job that r asks for, as runc and
// crun take it: with uid 0 mapped (--fakeroot), and "sh" when neither the
// request nor the image names a command. The image is not kept in use.
func Spec(ctx context.Context, r *Request, log *Log) (*specs.Spec, error) {
	if r.WritableTmpfs {
		return nil, usage("--writable-tmpfs has no OCI config equivalent; drop it for spec")
	}
	rr := *r
	rr.Fakeroot = true
	h := HostFacts()
	st, err := LoadSettings(h, rr.Cache, rr.Net)
	if err != nil {
		return nil, err
	}
	st.LogTo(log)
	im, err := OpenImage(ctx, &rr, h, st, log)
	if err != nil {
		return nil, err
	}
	defer im.Release()
	if len(rr.Args) == 0 && rr.Entrypoint == nil && !rr.Shell && len(im.Config.Entrypoint)+len(im.Config.Cmd) == 0 {
		rr.Args = []string{"sh"}
	}
	cfg, err := Build(&rr, im, h, st, log)
	if err != nil {
		return nil, err
	}
	return cfg.Spec, nil
}
