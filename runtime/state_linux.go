package runtime

// Containers on this node, as runc keeps them: a directory per container
// under a root (--root), holding state.json (written by create), the
// init's control socket, and the files the init writes as the job starts
// and ends. Nothing needs a daemon: a container's status is read from
// those files and from whether its init still lives.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/safedir"
	"github.com/hpcrun/hpcrun/runtime/procs"
)

// Container statuses, as the runtime spec names them.
const (
	StatusCreating = "creating"
	StatusCreated  = "created"
	StatusRunning  = "running"
	StatusPaused   = "paused"
	StatusStopped  = "stopped"
)

// pausedFile marks a container whose processes pause stopped.
const pausedFile = "paused"

// Sentinel errors of the container verbs.
var (
	ErrExists   = errors.New("a container with this ID exists")
	ErrNotFound = errors.New("no such container")
)

// DefaultRoot is where container state lives: $XDG_RUNTIME_DIR/hpcrun
// where that directory exists, else /tmp/hpcrun-<uid>/run (compute nodes
// often have no /run/user).
func DefaultRoot(env []string, uid int) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "XDG_RUNTIME_DIR="); ok {
			if fi, err := os.Stat(v); err == nil && fi.IsDir() && v != "" {
				return filepath.Join(v, "hpcrun")
			}
			break
		}
	}
	return "/tmp/hpcrun-" + strconv.Itoa(uid) + "/run"
}

// State is a container's state.json.
type State struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`   // the init's, on the host; 0 while creating
	Start       uint64            `json:"start"` // the init's start time, against pid reuse
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Autoremove  bool              `json:"autoremove,omitempty"` // see CreateOptions
	Ready       bool              `json:"ready"`                // built: created, or later; else creating
	Members     int               `json:"members,omitempty"`    // a group container's (Config.Members)
	Image       string            `json:"image,omitempty"`      // what the rootfs holds (CreateOptions.Image)

	Status   string `json:"-"` // computed by Load
	ExitCode int    `json:"-"` // the job's, once stopped; -1 if unknown
}

// OCI is the state in the runtime spec's form, for `hpcrun state`.
func (s *State) OCI() specs.State {
	st := specs.State{Version: SpecVersion, ID: s.ID, Status: specs.ContainerState(s.Status), Bundle: s.Bundle, Annotations: s.Annotations}
	if s.Status != StatusStopped {
		st.Pid = s.Pid
	}
	return st
}

// Containers is a root directory of container state.
type Containers struct{ Root string }

// OpenContainers opens root, creating it (0700) if create is set. It must
// be its user's and writable by nobody else, in directories that only root
// and that user can change: whoever could swap it could make hpcrun signal
// or delete what they like, or take an exec's stdio. Root (Slurm's
// slurmstepd queries and deletes containers as root) acts on another
// user's root as that user: this process takes the owner's uid and gid.
func OpenContainers(root string, create bool) (*Containers, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	uid := os.Getuid()
	if create {
		// Nothing is made where someone else could swap it (a
		// /tmp/hpcrun-UID that they made first, or a symlink of theirs):
		// a root refused below must leave nothing in their directory.
		if err := safedir.MkdirAll(abs, uid); err != nil {
			return nil, rootParentError(abs, err, "; give another with --root")
		}
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if errors.Is(err, fs.ErrNotExist) && !create {
		return &Containers{Root: abs}, nil // nothing there: no containers
	}
	if err != nil {
		return nil, fmt.Errorf("state root: %w", err)
	}
	asked := abs
	abs = filepath.Join(parent, filepath.Base(abs))
	fi, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return &Containers{Root: abs}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state root: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && uid == 0 && st.Uid != 0 {
		if err := becomeOwner(int(st.Uid), int(st.Gid)); err != nil {
			return nil, fmt.Errorf("state root %s: act as its owner: %w", abs, err)
		}
		uid = int(st.Uid)
	}
	if err := safedir.CheckParents(parent, uid); err != nil {
		return nil, rootParentError(asked, err, "")
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir():
		return nil, fmt.Errorf("state root %s is not a directory; give another with --root", abs)
	case st != nil && int(st.Uid) != uid:
		return nil, fmt.Errorf("state root %s belongs to uid %d, not to you; give another with --root", abs, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("state root %s can be written by others (mode %04o); chmod go-w it or give another with --root", abs, fi.Mode().Perm())
	}
	return &Containers{Root: abs}, nil
}

// rootParentError says what to do about state root root that cannot be
// made or checked: a safedir.ParentError names the directory above it
// that someone else could change (through a symlink, perhaps); other
// errors get hint.
func rootParentError(root string, err error, hint string) error {
	var pe *safedir.ParentError
	if errors.As(err, &pe) {
		return fmt.Errorf("state root %s: its parent %v, who could swap the state of your containers; give --root a directory whose parents only root and you can change", root, err)
	}
	return fmt.Errorf("state root: %w%s", err, hint)
}

// becomeOwner drops root for the owner of a state root, on every thread.
func becomeOwner(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return err
	}
	return syscall.Setresuid(uid, uid, uid)
}

// readState reads a small regular file of a state directory, refusing
// what a hostile owner could plant to hang or flood a reader (a FIFO, a
// device, a symlink, a huge file).
func readState(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > 1<<16 {
		return nil, fmt.Errorf("%s is not a small regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, 1<<16))
}

// CheckID refuses IDs that are not simple names, as runc does.
func CheckID(id string) error {
	if id == "" || len(id) > 1024 || id == "." || id == ".." ||
		strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.") != "" {
		return fmt.Errorf("invalid container ID %q: use only letters, digits and the characters _ + - . in it", id)
	}
	return nil
}

// Dir is a container's state directory.
func (c *Containers) Dir(id string) string { return filepath.Join(c.Root, id) }

// CreateOptions are how Create sets up a container beyond its config.
type CreateOptions struct {
	Bundle string
	// Stdio is the job's; nil sends its output to the file "log" in the
	// state directory, with /dev/null as its input.
	Stdio *Stdio
	// Autoremove: once stopped, the container's state is swept away by
	// the next hpcrun that lists or creates containers (named runs);
	// otherwise it stays until delete (OCI containers).
	Autoremove bool
	// Image names what the rootfs holds: a manifest digest, or "" for a
	// plain directory. Tasks that join a group compare it, for two
	// caches may hold the same image at two paths.
	Image string
}

// LogPath is where a detached run's output goes.
func (c *Containers) LogPath(id string) string { return filepath.Join(c.Dir(id), "log") }

// Create makes container id from cfg, whose job waits for Start. It
// returns once the container is built, and the init outlives the caller.
func (c *Containers) Create(id string, cfg *Config, o CreateOptions) (*State, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	c.Sweep()
	dir := c.Dir(id)
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s; delete it first (hpcrun delete %s)", ErrExists, id, id)
	} else if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	s := &State{ID: id, Bundle: o.Bundle, Rootfs: cfg.Spec.Root.Path, Created: time.Now().UTC(), Owner: strconv.Itoa(os.Getuid()), Autoremove: o.Autoremove, Members: cfg.Members, Image: o.Image}
	if cfg.Spec.Annotations != nil {
		s.Annotations = cfg.Spec.Annotations
	}
	if err := s.write(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg.StateDir = dir
	var stdio Stdio
	if o.Stdio != nil {
		stdio = *o.Stdio
	} else {
		log, err := os.OpenFile(c.LogPath(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("container %s: log: %w", id, err)
		}
		defer log.Close()
		null, err := os.Open(os.DevNull)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		defer null.Close()
		stdio = Stdio{In: null, Out: log, Err: log}
	}
	extra := append([]*os.File(nil), cfg.Hold...)
	if cfg.Anchor != nil {
		extra = append(extra, cfg.Anchor)
	}
	init := StartDetached(stdio, extra...)
	// The init's pid is recorded before it is built, so that a create
	// killed meanwhile leaves a container that delete --force can end.
	if s.Pid = init.Pid(); s.Pid > 0 {
		s.Start, _ = procs.StartTime(s.Pid)
		if err := s.write(dir); err != nil {
			init.Abort()
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if _, err := init.Create(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Ready = true
	if err := s.write(dir); err != nil {
		unix.Kill(s.Pid, unix.SIGKILL)
		os.RemoveAll(dir)
		return nil, err
	}
	s.Status = StatusCreated
	return s, nil
}

func (s *State) write(dir string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".state.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// Load reads container id's state and works out its status.
func (c *Containers) Load(id string) (*State, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	dir := c.Dir(id)
	b, err := readState(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		fi, serr := os.Lstat(dir)
		if serr != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: %s (see hpcrun list)", ErrNotFound, id)
		}
		// A create killed before it wrote anything: creating for a
		// moment, then stopped, so that delete can clear it.
		s := &State{ID: id, Status: StatusStopped, ExitCode: -1}
		if time.Since(fi.ModTime()) < createGrace {
			s.Status = StatusCreating
		}
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("container %s: state.json: %w", id, err)
	}
	s.ID = id
	s.Status, s.ExitCode = status(dir, &s)
	return &s, nil
}

// createGrace is how long a create may take to record its init: a
// create's first steps take milliseconds, so state that has said nothing
// more for this long was left by a create that was killed.
const createGrace = 10 * time.Second

// status reads a container's status from its files and its init.
func status(dir string, s *State) (string, int) {
	code := -1
	if b, err := readState(filepath.Join(dir, exitFile)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			code = n
		}
		return StatusStopped, code
	}
	if s.Pid == 0 {
		// No init recorded: a create that is starting it, or one killed
		// before it could record it, whose init (waiting for its config)
		// ended with it.
		if time.Since(s.Created) < createGrace {
			return StatusCreating, code
		}
		return StatusStopped, code
	}
	if !s.alive() {
		return StatusStopped, code
	}
	if !s.Ready {
		return StatusCreating, code
	}
	if _, err := os.Lstat(filepath.Join(dir, pausedFile)); err == nil {
		return StatusPaused, code
	}
	if _, err := os.Lstat(filepath.Join(dir, startedFile)); err == nil {
		return StatusRunning, code
	}
	return StatusCreated, code
}

// alive reports whether the init still runs: its pid names the same
// process as at create, and that has not exited. An init killed outright
// (SIGKILL, the OOM killer) writes no exit file, and as a detached one it
// is no child of ours: it may stay a zombie for as long as nothing reaps
// it, and is stopped all the same.
func (s *State) alive() bool { return procs.Alive(s.Pid, s.Start) }

// Register makes the state of a named run, whose init (pid) the caller
// is about to hand a config with StateDir set to the returned directory;
// Unregister removes it when the run ends.
func (c *Containers) Register(id string, pid int, rootfs string) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	c.Sweep()
	dir := c.Dir(id)
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("%w: %s", ErrExists, id)
	} else if err != nil {
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	s := &State{ID: id, Pid: pid, Rootfs: rootfs, Created: time.Now().UTC(), Owner: strconv.Itoa(os.Getuid()), Autoremove: true, Ready: true}
	s.Start, _ = procs.StartTime(pid)
	if err := s.write(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// Join returns the state dir of group container id (see Config.Members),
// for the caller to run its task in with Exec and Process.Member. The
// first task of the group to come creates it from its own cfg, with
// room for members tasks; the others find it. Creation and lookup hold a
// lock on the state root, so however the tasks arrive exactly one
// creates it. A stopped group of that name (an earlier step's, with the
// same tag) is replaced. The tasks must share an image, image (a
// manifest digest; "" compares the rootfs paths): one that asks for
// another is refused. Members meet first (Enter, Member.Wait), so that
// no task is left waiting here for one that cannot come.
func (c *Containers) Join(id string, cfg *Config, members int, image string) (dir string, created bool, err error) {
	if members < 1 {
		return "", false, errors.New("a group needs one member or more")
	}
	root, err := os.Open(c.Root)
	if err != nil {
		return "", false, err
	}
	defer root.Close()
	if err := unix.Flock(int(root.Fd()), unix.LOCK_EX); err != nil {
		return "", false, fmt.Errorf("lock %s: %w", c.Root, err)
	}
	s, err := c.Load(id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return "", false, err
	case s.Status == StatusStopped:
		if err := removeState(c.Dir(id)); err != nil {
			return "", false, err
		}
	case s.Members == 0:
		return "", false, fmt.Errorf("%w: %s, and it is no group container; give --join-tag another name", ErrExists, id)
	case imageOf(s.Image, s.Rootfs) != imageOf(image, cfg.Spec.Root.Path):
		return "", false, fmt.Errorf("the tasks of group %s ask for different images (%s on one, %s on another); give every task the same --image, or each its own --join-tag, or --no-join",
			id, imageOf(s.Image, s.Rootfs), imageOf(image, cfg.Spec.Root.Path))
	default:
		return c.Dir(id), false, nil
	}
	cfg.Members = members
	if _, err := c.Create(id, cfg, CreateOptions{Autoremove: true, Image: image}); err != nil {
		return "", false, err
	}
	return c.Dir(id), true, nil
}

// imageOf is what a group's members compare: the image's digest, else
// the rootfs's path.
func imageOf(digest, rootfs string) string {
	if digest != "" {
		return digest
	}
	return rootfs
}

// Unregister removes a named run's state.
func (c *Containers) Unregister(id string) { removeState(c.Dir(id)) }

// Sweep removes the state of stopped containers that asked for it
// (Autoremove), such as named runs whose hpcrun was killed.
func (c *Containers) Sweep() {
	ents, _ := os.ReadDir(c.Root)
	var groups []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), groupPrefix) {
			groups = append(groups, e.Name())
			continue
		}
		if s, err := c.Load(e.Name()); err == nil && s.Autoremove && s.Status == StatusStopped {
			removeState(c.Dir(e.Name()))
		}
	}
	c.sweepGroups(groups)
}

// List returns the containers under the root, oldest first.
func (c *Containers) List() ([]*State, error) {
	c.Sweep()
	ents, err := os.ReadDir(c.Root)
	if err != nil {
		return nil, err
	}
	var out []*State
	for _, e := range ents {
		if !e.IsDir() || CheckID(e.Name()) != nil {
			continue
		}
		if s, err := c.Load(e.Name()); err == nil {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *State) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Start starts the job of a created container.
func (c *Containers) Start(id string) error {
	s, err := c.Load(id)
	if err != nil {
		return err
	}
	if s.Status != StatusCreated {
		return fmt.Errorf("container %s is %s; only a created container can be started", id, s.Status)
	}
	return StartJob(c.Dir(id))
}

// Kill sends sig to the container's job, or with all to every process in
// it. A created container ends.
func (c *Containers) Kill(id string, sig unix.Signal, all bool) error {
	s, err := c.Load(id)
	if err != nil {
		return err
	}
	switch s.Status {
	case StatusStopped, StatusCreating:
		return fmt.Errorf("container %s is %s; there is nothing to signal", id, s.Status)
	}
	if err := Signal(c.Dir(id), sig, all); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// Delete removes a stopped container's state. With force, a created or
// running container is killed first.
func (c *Containers) Delete(id string, force bool) error {
	s, err := c.Load(id)
	if err != nil {
		return err
	}
	dir := c.Dir(id)
	switch s.Status {
	case StatusRunning, StatusPaused, StatusCreated:
		// The runtime spec: deleting a container that is not stopped
		// must fail and leave it alone.
		if !force {
			return fmt.Errorf("container %s is %s; stop it first (hpcrun kill %s) or delete --force", id, s.Status, id)
		}
	case StatusCreating:
		if !force {
			return fmt.Errorf("container %s is still being created; wait, or delete --force", id)
		}
	}
	if s.Status != StatusStopped && s.Pid > 0 {
		if err := s.killInit(); err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
	}
	return removeState(dir)
}

// killInit kills the init, and with it the container, and waits until it
// is gone. The handle pins the process whose pid and start time the state
// names, so a reused pid is never signalled.
func (s *State) killInit() error {
	h, err := procs.Open(s.Pid, s.Start)
	if errors.Is(err, procs.ErrGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kill the init: %w", err)
	}
	defer h.Close()
	if err := h.Signal(unix.SIGKILL); err != nil {
		return fmt.Errorf("kill the init: %w", err)
	}
	if !h.Wait(10 * time.Second) {
		return errors.New("the init did not die within 10s of SIGKILL")
	}
	return nil
}

// Wait waits until the container's init has exited, and returns the job's
// status.
func (c *Containers) Wait(id string) (int, error) {
	s, err := c.Load(id)
	if err != nil {
		return StatusFailed, err
	}
	if s.Pid > 0 {
		if h, err := procs.Open(s.Pid, s.Start); err == nil {
			h.Wait(-1)
			h.Close()
		}
	}
	if s, err = c.Load(id); err != nil {
		return StatusFailed, err
	}
	if s.ExitCode < 0 {
		return StatusFailed, fmt.Errorf("container %s ended without recording its job's status (its init was killed)", id)
	}
	return s.ExitCode, nil
}

// running loads a container that must be running (or paused).
func (c *Containers) running(id, verb string) (*State, error) {
	s, err := c.Load(id)
	if err != nil {
		return nil, err
	}
	if s.Status != StatusRunning && s.Status != StatusPaused {
		return nil, fmt.Errorf("container %s is %s; %s needs a running container", id, s.Status, verb)
	}
	return s, nil
}

// Processes lists the processes of a running container, found by its pid
// namespace in /proc: no cgroup is needed.
func (c *Containers) Processes(id string) ([]procs.Proc, error) {
	s, err := c.running(id, "ps")
	if err != nil {
		return nil, err
	}
	return procs.List(s.Pid)
}

// Stats sums the CPU time and memory of a running container's processes.
func (c *Containers) Stats(id string) (procs.Stats, error) {
	s, err := c.running(id, "events")
	if err != nil {
		return procs.Stats{}, err
	}
	return procs.Collect(s.Pid)
}

// Pause stops every process of a running container but its init (which
// keeps serving), with SIGSTOP sweeps until none is left running.
func (c *Containers) Pause(id string) error {
	s, err := c.running(id, "pause")
	if err != nil {
		return err
	}
	if s.Status == StatusPaused {
		return fmt.Errorf("container %s is paused already", id)
	}
	// The cgroup v2 freezer where the container's cgroup is delegated to
	// us, else the signal sweep. The paused file names the cgroup used.
	cgroup, err := procs.FreezeCgroup(s.Pid, "hpcrun-"+id)
	thaw := func() { procs.ThawCgroup(s.Pid, cgroup) }
	if errors.Is(err, procs.ErrNoDelegatedCgroup) {
		err = procs.Freeze(s.Pid)
		thaw = func() { procs.Thaw(s.Pid) }
	}
	if err != nil {
		return fmt.Errorf("pause %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir(id), pausedFile), []byte(cgroup), 0o600); err != nil {
		thaw()
		return fmt.Errorf("pause %s: %w", id, err)
	}
	return nil
}

// pauseCgroup is the cgroup that pause froze a container in, or "".
func pauseCgroup(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, pausedFile))
	if err != nil {
		return ""
	}
	return string(b)
}

// removeState removes a container's state dir, and the cgroup that pause
// made for it, whose processes have ended.
func removeState(dir string) error {
	procs.RemoveCgroup(pauseCgroup(dir))
	return os.RemoveAll(dir)
}

// Resume continues the processes of a paused container.
func (c *Containers) Resume(id string) error {
	s, err := c.Load(id)
	if err != nil {
		return err
	}
	if s.Status != StatusPaused {
		return fmt.Errorf("container %s is %s, not paused", id, s.Status)
	}
	if cg := pauseCgroup(c.Dir(id)); cg != "" {
		err = procs.ThawCgroup(s.Pid, cg)
	} else {
		err = procs.Thaw(s.Pid)
	}
	if err != nil {
		return fmt.Errorf("resume %s: %w", id, err)
	}
	return os.Remove(filepath.Join(c.Dir(id), pausedFile))
}
