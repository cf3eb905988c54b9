package jobs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/hpcrun/hpcrun/runtime/procs"
)

// BatchLineWarning is what hpcrun says when it is a plain line of a Slurm
// batch script.
const BatchLineWarning = "this is a plain hpcrun line of a Slurm batch script: scancel and the time limit " +
	"will SIGKILL the job without a SIGTERM first (Slurm signals only the batch shell); write `srun hpcrun ...`, " +
	"or `exec hpcrun ...` as the script's last command (-q or batch_line_warning: false silences this)"

// batchStep is SLURM_BATCH_SCRIPT, the step id of a batch script, where a
// Slurm sets SLURM_STEP_ID in it (22.05 sets none there).
const batchStep = "4294967291"

// ProcReader reads small files of /proc; name is relative to it
// ("123/stat").
type ProcReader interface {
	ReadProc(name string) ([]byte, error)
}

// PlainBatchLine reports whether hpcrun, whose parent is ppid, is a plain
// line of a Slurm batch script: its parent is the batch shell, and that
// shell's parent slurmstepd's batch step, whose command line is
// "slurmstepd: [JOB.batch]". Under proctrack/cgroup Slurm sends scancel's
// and the time limit's TERM to that shell only; the shell dies of it and
// slurmstepd SIGKILLs the rest of the step at once, so the job never sees a
// TERM. Not so for `exec hpcrun` (hpcrun is the shell, its parent
// slurmstepd) and `srun hpcrun` (a step of its own, SLURM_STEP_ID set). It
// costs nothing outside a batch script: /proc is read (two small files)
// only when the environment says this is one. Anything unreadable counts
// as no.
func PlainBatchLine(j Job, ppid int, proc ProcReader) bool {
	if j.Scheduler != Slurm || j.ID == "" || j.Step != "" && j.Step != "batch" && j.Step != batchStep || ppid <= 1 {
		return false
	}
	stat, err := proc.ReadProc(strconv.Itoa(ppid) + "/stat")
	if err != nil {
		return false
	}
	grand, _, _ := procs.StatParent(stat)
	if grand <= 1 {
		return false
	}
	cmdline, err := proc.ReadProc(strconv.Itoa(grand) + "/cmdline")
	if err != nil {
		return false
	}
	// slurmstepd writes its title over argv: the title, a NUL, and maybe
	// the NULs of the rest of the old argv.
	title, _, _ := bytes.Cut(cmdline, []byte{0})
	return string(title) == "slurmstepd: ["+j.ID+".batch]"
}

// ProcFS reads /proc (or a tree at Root shaped like it) with opens that
// follow no symlink at the last component and reads capped at MaxProcRead
// bytes: a hostile or huge file costs no more than that.
type ProcFS struct{ Root string }

// MaxProcRead is the most ProcFS reads of one file.
const MaxProcRead = 4096

var errProcTooBig = errors.New("larger than the cap on /proc reads")

func (p ProcFS) ReadProc(name string) ([]byte, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	path := filepath.Join(root, name)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxProcRead+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	if len(data) > MaxProcRead {
		return nil, &os.PathError{Op: "read", Path: path, Err: errProcTooBig}
	}
	return data, nil
}
