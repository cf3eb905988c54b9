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

	"github.com/hpcrun/hpcrun/internal/envlist"
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
	if v := envlist.Value(env, "XDG_RUNTIME_DIR"); v != "" {
		if fi, err := os.Stat(v); err == nil && fi.IsDir() {
			return filepath.Join(v, "hpcrun")
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
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`      // a bundle's, as create found them (see hooks_linux.go)
	Cgroups     []string          `json:"cgroups,omitempty"`    // those create made for the limits, deepest first, for delete

	Status   string `json:"-"` // computed by Load
	ExitCode int    `json:"-"` // the job's, once stopped; -1 if unknown
	Log      string `json:"-"` // the path of a detached job's output, if it has one (see Load)
}

// OCIState is the state in the runtime spec's form, for `hpcrun state`,
// with what a stopped container leaves for its user added, as runc adds
// fields of its own.
type OCIState struct {
	specs.State
	ExitStatus *int   `json:"exitStatus,omitempty"` // the job's, once stopped, where known
	Log        string `json:"log,omitempty"`        // where a detached job's output went
}

// OCI is the state in the runtime spec's form.
func (s *State) OCI() OCIState {
	st := OCIState{State: specs.State{Version: SpecVersion, ID: s.ID, Status: specs.ContainerState(s.Status), Bundle: s.Bundle, Annotations: s.Annotations}, Log: s.Log}
	if s.Status != StatusStopped {
		st.Pid = s.Pid
	} else if s.ExitCode >= 0 {
		code := s.ExitCode
		st.ExitStatus = &code
	}
	return st
}

// Containers is a root directory of container state.
type Containers struct {
	Root string
	// fd is the root, opened with O_NOFOLLOW and checked to be its
	// owner's: every later step finds the state through it, so that no
	// rename of the path meanwhile can point it elsewhere. nil when there
	// is no root: no containers, nothing to do.
	fd *os.File
}

// OpenContainers opens root, creating it (0700) if create is set. It must
// be its user's and writable by nobody else, in directories that only root
// and that user can change: whoever could swap it could make hpcrun signal
// or delete what they like, or take an exec's stdio. Root (Slurm's
// slurmstepd queries and deletes containers as root) acts on another
// user's root as that user: this process takes the owner's uid and gid
// before it looks inside. A root that is missing holds no containers:
// every verb then does nothing (state and kill find none, delete removes
// nothing), whatever appears at the path later.
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
			return nil, rootParentError(abs, err, "; use another state root")
		}
	}
	// One walk from / decides, each directory opened with O_NOFOLLOW
	// relative to the one before: what it finds is the root from here on,
	// and a name flipped into place after it, or a directory above it
	// renamed or swapped for a symlink, changes nothing.
	fd, real, parents, err := safedir.OpenDir(abs)
	var pe *safedir.ParentError
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return &Containers{Root: abs}, nil // nothing there: no containers
	case errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR):
		return nil, fmt.Errorf("state root %s is not a directory; use another", abs)
	case errors.As(err, &pe):
		return nil, rootParentError(abs, err, "")
	case err != nil:
		return nil, fmt.Errorf("state root: %w", err)
	}
	f := os.NewFile(uintptr(fd), real)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("state root: %w", &os.PathError{Op: "fstat", Path: real, Err: err})
	}
	if uid == 0 && st.Uid != 0 {
		if err := becomeOwner(int(st.Uid), int(st.Gid)); err != nil {
			f.Close()
			return nil, fmt.Errorf("state root %s: act as its owner: %w", real, err)
		}
		actingForOwner = true
		uid = int(st.Uid)
	}
	if err := safedir.CheckStats(parents, uid); err != nil {
		f.Close()
		return nil, rootParentError(abs, err, "")
	}
	if err := checkOwned(real, &st, uid); err != nil {
		f.Close()
		return nil, err
	}
	abs = real
	return &Containers{Root: abs, fd: f}, nil
}

// checkOwned checks the state root
// as fstat saw it: uid's, and writable by nobody else.
func checkOwned(path string, st *unix.Stat_t, uid int) error {
	switch {
	case int(st.Uid) != uid:
		return fmt.Errorf("state root %s belongs to uid %d, not to you; use another", path, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("state root %s can be written by others (mode %04o); chmod go-w it or use another", path, st.Mode&0o7777)
	}
	return nil
}

// rootParentError says what to do about state root root that cannot be
// made or checked: a safedir.ParentError names the directory above it
// that someone else could change (through a symlink, perhaps); other
// errors get hint.
func rootParentError(root string, err error, hint string) error {
	var pe *safedir.ParentError
	if errors.As(err, &pe) {
		return fmt.Errorf("state root %s: its parent %v, who could swap the state of your containers; use a state root whose parents only root and you can change", root, err)
	}
	return fmt.Errorf("state root: %w%s", err, hint)
}

// becomeOwner drops root for the owner of a state root, on every thread
// of the process, for good (real, effective and saved ids). Go (1.16 and
// later, cgo or not) applies Setgroups, Setresgid and Setresuid to every
// thread, so no thread keeps root. This is chosen over a child process
// re-executed with SysProcAttr.Credential: the root's descriptor, opened
// and checked here, goes on in the same process with nothing to pass on
// or check twice, and Slurm's every state, kill and delete pays no second
// start. The groups go first and the uid last: once the uid is dropped,
// the rest could not be.
func becomeOwner(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return err
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return err
	}
	if r, e := syscall.Getuid(), syscall.Geteuid(); r != uid || e != uid {
		return fmt.Errorf("still uid %d/%d after setresuid(%d)", r, e, uid)
	}
	return nil
}

// openDir opens container id's state directory through the root's
// descriptor, without following a symlink, and checks that it is the
// root's owner's. ErrNotFound where there is none, or no root.
func (c *Containers) openDir(id string) (*os.File, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	if c.fd == nil {
		return nil, fmt.Errorf("%w: %s (see hpcrun list)", ErrNotFound, id)
	}
	fd, err := unix.Openat(int(c.fd.Fd()), id, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case err == unix.ENOENT:
		return nil, fmt.Errorf("%w: %s (see hpcrun list)", ErrNotFound, id)
	case err == unix.ELOOP || err == unix.ENOTDIR:
		return nil, fmt.Errorf("container %s: its state %s is not a directory; remove it", id, c.Dir(id))
	case err != nil:
		return nil, fmt.Errorf("container %s: %w", id, &os.PathError{Op: "open", Path: c.Dir(id), Err: err})
	}
	var st, rst unix.Stat_t
	if unix.Fstat(fd, &st) != nil || unix.Fstat(int(c.fd.Fd()), &rst) != nil || st.Uid != rst.Uid || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("container %s: its state %s is not yours alone (uid %d, mode %04o); remove it", id, c.Dir(id), st.Uid, st.Mode&0o7777)
	}
	return os.NewFile(uintptr(fd), c.Dir(id)), nil
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
	// the next hpcrun that lists or creates containers (group containers,
	// runs under a batch system's name); otherwise it stays, with its
	// log and exit status, until delete (OCI containers, --name and
	// --detach runs), as runc's and Docker's do.
	Autoremove bool
	// Image names what the rootfs holds: a manifest digest, or "" for a
	// plain directory. Tasks that join a group compare it, for two
	// caches may hold the same image at two paths.
	Image string
}

// stateMargin is room in a state file for what later writes add.
const stateMargin = 1 << 10

// LogPath is where a detached run's output goes: in its state directory,
// so it stays as long as the container does, until delete.
func (c *Containers) LogPath(id string) string { return filepath.Join(c.Dir(id), logFile) }

// logFile is a detached container's output, in its state directory.
const logFile = "log"

// taken is the error for a name that is in use: by a stopped container,
// whose name is free once it is deleted, or by one that runs.
func (c *Containers) taken(id string) error {
	if s, err := c.Load(id); err == nil && s.Status == StatusStopped {
		exit := ""
		if s.ExitCode >= 0 {
			exit = fmt.Sprintf(" (exit status %d)", s.ExitCode)
		}
		return fmt.Errorf("%w: %s, stopped%s and kept for its log and status; delete it first (hpcrun delete %s) or choose another name", ErrExists, id, exit, id)
	}
	return fmt.Errorf("%w: %s; delete it first (hpcrun delete %s) or choose another name", ErrExists, id, id)
}

// Create makes container id from cfg, whose job waits for Start. It
// returns once the container is built, and the init outlives the caller.
func (c *Containers) Create(id string, cfg *Config, o CreateOptions) (*State, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	c.Sweep()
	dir := c.Dir(id)
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		return nil, c.taken(id)
	} else if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	s := &State{ID: id, Bundle: o.Bundle, Rootfs: cfg.Spec.Root.Path, Created: time.Now().UTC(), Owner: strconv.Itoa(os.Getuid()), Autoremove: o.Autoremove, Members: cfg.Members, Image: o.Image, Hooks: cfg.Spec.Hooks}
	if cfg.Spec.Annotations != nil {
		s.Annotations = cfg.Spec.Annotations
	}
	if cfg.cgroups != nil {
		s.Cgroups = cfg.cgroups.made
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
	cfg.hooks = newHookRun(cfg, s)
	extra = append(extra, cfg.hooks.files()...)
	init := StartDetached(stdio, cfg.Spec, extra...)
	// Into the container's cgroups while it waits for its config, before
	// it forks anything.
	cfg.cgroups.join(init.Pid())
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
		cfg.hooks.failed()
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
	// Every read of it is capped (maxStateFile): a state that could not be
	// read back would leave a container that no verb can reach. The
	// margin is for what later writes add (the pid, its start time).
	if len(b) > maxStateFile-stateMargin {
		return fmt.Errorf("container %s: its state would take %d bytes, more than the %d hpcrun keeps; config.json's hooks or annotations are too large, trim them", s.ID, len(b), maxStateFile-stateMargin)
	}
	tmp := filepath.Join(dir, ".state.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// Load reads container id's state and works out its status.
func (c *Containers) Load(id string) (*State, error) {
	dir, err := c.openDir(id)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return loadAt(int(dir.Fd()), dir.Name(), id)
}

// loadAt is Load of the state directory dir (path, for messages).
func loadAt(dir int, path, id string) (*State, error) {
	b, err := readStateAt(dir, "state.json", maxStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		// A create killed before it wrote anything: creating for a
		// moment, then stopped, so that delete can clear it.
		var st unix.Stat_t
		if err := unix.Fstat(dir, &st); err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		s := &State{ID: id, Status: StatusStopped, ExitCode: -1}
		if time.Since(time.Unix(st.Mtim.Unix())) < createGrace {
			s.Status = StatusCreating
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w; remove %s by hand", id, err, path)
	}
	s, err := parseState(b)
	if err != nil {
		return nil, fmt.Errorf("container %s: state.json: %w; remove %s by hand", id, err, path)
	}
	s.ID = id
	s.Status, s.ExitCode = status(dir, s)
	var st unix.Stat_t
	if unix.Fstatat(dir, logFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		s.Log = filepath.Join(path, logFile)
	}
	return s, nil
}

// createGrace is how long a create may take to record its init: a
// create's first steps take milliseconds, so state that has said nothing
// more for this long was left by a create that was killed.
const createGrace = 10 * time.Second

// status reads a container's status from its files (in the state
// directory dir) and its init.
func status(dir int, s *State) (string, int) {
	code := -1
	if b, err := readStateAt(dir, exitFile, maxStateFile); err == nil {
		return StatusStopped, parseExit(b)
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
	var st unix.Stat_t
	if unix.Fstatat(dir, pausedFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return StatusPaused, code
	}
	if unix.Fstatat(dir, startedFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return StatusRunning, code
	}
	return StatusCreated, code
}

// alive reports whether the init still runs: its pid names the same
// process as at create, that process is a container's init of the
// caller's (procs.OpenInit), and it has not exited. An init killed
// outright (SIGKILL, the OOM killer) writes no exit file, and as a
// detached one it is no child of ours: it may stay a zombie for as long as
// nothing reaps it, and is stopped all the same.
func (s *State) alive() bool { return procs.InitAlive(s.Pid, s.Start) }

// Register makes the state of a named run, whose init (pid) the caller
// is about to hand a config with StateDir set to the returned directory;
// Unregister removes it. With autoremove, a stopped run's state is swept
// (see CreateOptions.Autoremove).
func (c *Containers) Register(id string, pid int, rootfs string, autoremove bool) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	c.Sweep()
	dir := c.Dir(id)
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		return "", c.taken(id)
	} else if err != nil {
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	s := &State{ID: id, Pid: pid, Rootfs: rootfs, Created: time.Now().UTC(), Owner: strconv.Itoa(os.Getuid()), Autoremove: autoremove, Ready: true}
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
		if err := c.remove(id); err != nil {
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

// started reports whether container id's job was started: its init
// recorded it in the state directory.
func (c *Containers) started(id string) bool {
	dir, err := c.openDir(id)
	if err != nil {
		return false
	}
	defer dir.Close()
	var st unix.Stat_t
	return unix.Fstatat(int(dir.Fd()), startedFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// Unregister removes a named run's state.
func (c *Containers) Unregister(id string) { c.remove(id) }

// Sweep removes the state of stopped containers that asked for it
// (Autoremove), such as runs under a batch system's name whose hpcrun was
// killed.
func (c *Containers) Sweep() {
	var groups []string
	for _, name := range c.names() {
		if strings.HasPrefix(name, groupPrefix) {
			groups = append(groups, name)
			continue
		}
		if s, err := c.Load(name); err == nil && s.Autoremove && s.Status == StatusStopped {
			c.remove(name)
		}
	}
	c.sweepGroups(groups)
}

// names lists the entries of the root; none where there is no root.
func (c *Containers) names() []string {
	if c.fd == nil {
		return nil
	}
	return dirNames(int(c.fd.Fd()))
}

// List returns the containers under the root, oldest first.
func (c *Containers) List() ([]*State, error) {
	c.Sweep()
	var out []*State
	for _, name := range c.names() {
		if CheckID(name) != nil {
			continue
		}
		if s, err := c.Load(name); err == nil {
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
	// startContainer hooks, run by the init, write to this stderr.
	var out []*os.File
	if len(hookList(s.Hooks, hookStartContainer)) > 0 {
		out = append(out, os.Stderr)
	}
	if err := StartJob(c.Dir(id), out...); err != nil {
		return err
	}
	poststart(s)
	return nil
}

// Kill sends sig to the container's job, or with all to every process in
// it. A created container ends.
func (c *Containers) Kill(id string, sig unix.Signal, all bool) error {
	dir, err := c.openDir(id)
	if err != nil {
		return err
	}
	defer dir.Close()
	s, err := loadAt(int(dir.Fd()), dir.Name(), id)
	if err != nil {
		return err
	}
	switch s.Status {
	case StatusStopped, StatusCreating:
		return fmt.Errorf("container %s is %s; there is nothing to signal", id, s.Status)
	}
	if err := Signal(atDir(dir), sig, all); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// atDir names an open state directory for what takes a path: through the
// descriptor, so that the name is not looked up again.
func atDir(dir *os.File) string { return fdPath(int(dir.Fd())) + "/." }

// Delete removes a stopped container's state. With force, a created or
// running container is killed first.
func (c *Containers) Delete(id string, force bool) error {
	dir, err := c.openDir(id)
	if err != nil {
		return err
	}
	defer dir.Close()
	s, err := loadAt(int(dir.Fd()), dir.Name(), id)
	if err != nil {
		return err
	}
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
	// Read before anything is done, so that a bad file leaves all as it was.
	cgroup, err := pauseCgroupAt(int(dir.Fd()), id)
	if err != nil {
		return fmt.Errorf("container %s: %w; remove %s by hand", id, err, filepath.Join(dir.Name(), pausedFile))
	}
	if s.Status != StatusStopped && s.Pid > 0 {
		if err := s.killInit(); err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
	}
	if err := c.removeAt(dir, id, cgroup, s.Cgroups); err != nil {
		return err
	}
	poststop(s)
	return nil
}

// killInit kills the init, and with it the container, and waits until it
// is gone. The handle pins the process whose pid and start time the state
// names, once it is checked to be a container's init of the caller's, so
// neither a reused pid nor a forged one is ever signalled.
func (s *State) killInit() error {
	h, err := procs.OpenInit(s.Pid, s.Start)
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
		if h, err := procs.OpenInit(s.Pid, s.Start); err == nil {
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
	cgroup, err := procs.FreezeCgroup(s.Pid, pauseCgroupName(id))
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

// pauseCgroupAt is the cgroup that pause froze container id in, from the
// paused file of its state directory dir: "" for none, or for a pause by
// signals.
func pauseCgroupAt(dir int, id string) (string, error) {
	b, err := readStateAt(dir, pausedFile, maxStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	mnt, _ := procs.Cgroup2Mount()
	return parsePaused(b, mnt, id)
}

// remove removes container id's state, as Unregister and Sweep do.
func (c *Containers) remove(id string) error {
	dir, err := c.openDir(id)
	if err != nil {
		return err
	}
	defer dir.Close()
	cgroup, err := pauseCgroupAt(int(dir.Fd()), id)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	var made []string
	if s, err := loadAt(int(dir.Fd()), dir.Name(), id); err == nil {
		made = s.Cgroups
	}
	return c.removeAt(dir, id, cgroup, made)
}

// removeAt removes container id's state directory dir, opened through the
// root, and the cgroup that pause made for it, whose processes have
// ended: its files through dir, then its name in the root, which
// unlinkat removes only while it is an empty directory. made are the
// cgroups create made for the container's limits (State.Cgroups).
func (c *Containers) removeAt(dir *os.File, id, cgroup string, made []string) error {
	procs.RemoveCgroup(cgroup)
	removeCgroups(made)
	if err := clearTree(int(dir.Fd())); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if err := unix.Unlinkat(int(c.fd.Fd()), id, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return fmt.Errorf("container %s: %w", id, &os.PathError{Op: "remove", Path: dir.Name(), Err: err})
	}
	return nil
}

// clearTree removes everything in directory dir, descending without
// following symlinks.
func clearTree(dir int) error {
	var errs []error
	for _, name := range dirNames(dir) {
		err := unix.Unlinkat(dir, name, 0)
		if err == unix.EISDIR {
			sub, oerr := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if oerr != nil {
				errs = append(errs, &os.PathError{Op: "open", Path: name, Err: oerr})
				continue
			}
			if err := clearTree(sub); err != nil {
				errs = append(errs, err)
			}
			unix.Close(sub)
			err = unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
		}
		if err != nil && err != unix.ENOENT {
			errs = append(errs, &os.PathError{Op: "remove", Path: name, Err: err})
		}
	}
	return errors.Join(errs...)
}

// Resume continues the processes of a paused container.
func (c *Containers) Resume(id string) error {
	dir, err := c.openDir(id)
	if err != nil {
		return err
	}
	defer dir.Close()
	s, err := loadAt(int(dir.Fd()), dir.Name(), id)
	if err != nil {
		return err
	}
	if s.Status != StatusPaused {
		return fmt.Errorf("container %s is %s, not paused", id, s.Status)
	}
	cg, err := pauseCgroupAt(int(dir.Fd()), id)
	if err != nil {
		return fmt.Errorf("resume %s: %w", id, err)
	}
	if cg != "" {
		err = procs.ThawCgroup(s.Pid, cg)
	} else {
		err = procs.Thaw(s.Pid)
	}
	if err != nil {
		return fmt.Errorf("resume %s: %w", id, err)
	}
	if err := unix.Unlinkat(int(dir.Fd()), pausedFile, 0); err != nil {
		return fmt.Errorf("resume %s: %w", id, err)
	}
	return nil
}
