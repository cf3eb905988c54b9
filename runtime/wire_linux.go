package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The parent hands the init its config, and the init hands back its report,
// in a small length-prefixed binary form rather than JSON. Encoding a
// specs.Spec with encoding/json costs more than a millisecond on each side
// (reflection over the whole OCI schema), a tenth of a job's start-up, and
// the init would pay again to fault in the decoder.

// initConfig is what the init acts on: the spec reduced to the values it
// uses, checked by the parent before the clone.
type initConfig struct {
	Rootfs     string
	Args, Env  []string
	Cwd        string
	UID, GID   uint32
	NoNewPrivs bool
	Caps       capSets
	Mounts     []specs.Mount
	Files      []File
	Unshare    uint64 // namespaces beyond user, mount and pid: CLONE_NEWNET, ...
	Hostname   string
	Writable   bool
	Foreground bool
	Verbose    bool
	Start      time.Time
	// StateDir, when set, makes the init serve its control socket there
	// (see ctl_linux.go); with Detached it starts the job only when asked.
	StateDir string
	Detached bool // with StateDir: a created container; without: a named run
	Terminal bool
	AnchorFD int // the init's descriptor of Config.Anchor; 0 for none
	Held     int // descriptors 5, 6, ... are the init's own (Hold, Anchor)
	// WritableRoot: the spec's root.readonly is false (an OCI bundle's
	// own rootfs); hpcrun's runs keep the image read-only.
	WritableRoot bool
	Rlimits      []rlimit
	OOMScoreAdj  *int
	// MaskedPaths are hidden (an empty read-only tmpfs over a directory,
	// /dev/null over a file) and ReadonlyPaths made read-only, as the
	// spec's linux.maskedPaths and linux.readonlyPaths ask.
	MaskedPaths, ReadonlyPaths []string
	// Members: a group container (see Config.Members).
	Members int
	// Keyring names the fresh session keyring that the job and every
	// process started in the container join (see keyring_linux.go); ""
	// keeps the caller's.
	Keyring string
	// Hooks are the OCI hooks the init runs, and whether it stops for
	// the caller's (see hooks_linux.go); "" for none.
	Hooks string
	// beforePivot, when set, runs once the mounts are in place and
	// returns the root to pivot into (see creationHooks).
	beforePivot func(newroot string) (string, error)
	// Sysctls are linux.sysctl's writes, FILE=VALUE (see sysctl_linux.go);
	// RootPropagation is linux.rootfsPropagation's mount flags, 0 for none.
	Sysctls         []string
	RootPropagation uint64
	// Seccomp is the compiled linux.seccomp (seccompFilter.String) that
	// the pre-exec shim installs; "" for none.
	Seccomp string
	// The checkpoint to restore in place of the job's exec (Restore);
	// RestoreDir "" for none.
	RestoreDir, RestoreCriu   string
	RestorePid, RestoreMaxPid int
	RestoreStdio              []string
}

// rlimit is a process.rlimits entry: resource number and limits.
type rlimit struct {
	Resource   int
	Soft, Hard uint64
}

// rlimitNumbers are the resources process.rlimits may name.
var rlimitNumbers = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// capSets are a process's capability sets as bit masks.
type capSets struct {
	Bounding, Effective, Permitted, Inheritable, Ambient uint64
}

// newInitConfig checks the spec and reduces it to what the init needs.
func newInitConfig(cfg *Config) (*initConfig, error) {
	s := cfg.Spec
	unshare, err := namespaceFlags(s)
	if err != nil {
		return nil, err
	}
	ic := &initConfig{
		Unshare: uint64(unshare), Hostname: s.Hostname,
		Rootfs: s.Root.Path, Args: s.Process.Args, Env: s.Process.Env, Cwd: s.Process.Cwd,
		UID: s.Process.User.UID, GID: s.Process.User.GID, NoNewPrivs: s.Process.NoNewPrivileges,
		Mounts: s.Mounts, Files: cfg.Files, Writable: cfg.WritableTmpfs, Foreground: cfg.Foreground,
		Verbose: cfg.Verbose, Start: cfg.Start, StateDir: cfg.StateDir, Terminal: cfg.Terminal,
		Detached: cfg.detached, Members: cfg.Members,
	}
	if cfg.NewKeyring {
		if ic.Keyring, err = keyringName(); err != nil {
			return nil, err
		}
	}
	if cfg.Anchor != nil {
		// After stdio, the two pipes and the held files (StartDetached).
		ic.AnchorFD = 5 + len(cfg.Hold)
	}
	ic.Held = len(cfg.Hold)
	if cfg.Anchor != nil {
		ic.Held++
	}
	ic.WritableRoot = !s.Root.Readonly
	ic.Hooks = cfg.hooks.forInit(5 + ic.Held)
	for _, r := range s.Process.Rlimits {
		n, ok := rlimitNumbers[r.Type]
		if !ok {
			return nil, fmt.Errorf("process.rlimits: unknown resource %q", r.Type)
		}
		if r.Soft > r.Hard {
			return nil, fmt.Errorf("process.rlimits: %s soft limit %d is above its hard limit %d", r.Type, r.Soft, r.Hard)
		}
		ic.Rlimits = append(ic.Rlimits, rlimit{Resource: n, Soft: r.Soft, Hard: r.Hard})
	}
	ic.OOMScoreAdj = s.Process.OOMScoreAdj
	if s.Linux != nil {
		ic.MaskedPaths, ic.ReadonlyPaths = s.Linux.MaskedPaths, s.Linux.ReadonlyPaths
	}
	if ic.Seccomp, err = seccompArg(s); err != nil {
		return nil, err
	}
	if r := cfg.Restore; r != nil {
		ic.RestoreDir, ic.RestoreCriu, ic.RestorePid, ic.RestoreMaxPid, ic.RestoreStdio = r.Dir, r.Criu, r.Pid, r.MaxPid, r.Stdio
	}
	// No job sees the state roots, wherever a bind shows them (see
	// fence_linux.go).
	hidden := hiddenPaths(stateRoots(os.Environ(), os.Getuid(), cfg.StateDir), s.Mounts, realPath)
	ic.MaskedPaths = append(slices.Clip(ic.MaskedPaths), hidden...)
	if ic.Cwd == "" {
		ic.Cwd = "/"
	}
	if ic.Hostname != "" && unshare&unix.CLONE_NEWUTS == 0 {
		return nil, errors.New("the spec sets a hostname without a new uts namespace")
	}
	if c := s.Process.Capabilities; c != nil {
		for _, set := range []struct {
			names []string
			mask  *uint64
		}{
			{c.Bounding, &ic.Caps.Bounding}, {c.Effective, &ic.Caps.Effective}, {c.Permitted, &ic.Caps.Permitted},
			{c.Inheritable, &ic.Caps.Inheritable}, {c.Ambient, &ic.Caps.Ambient},
		} {
			m, err := capMask(set.names)
			if err != nil {
				return nil, err
			}
			*set.mask = m
		}
	}
	if needsFence(ic.Caps) {
		ic.Rlimits = append(ic.Rlimits, rlimit{Resource: fenceResource})
	}
	if s.Linux != nil {
		if ic.Sysctls, err = sysctlWrites(s.Linux.Sysctl, unshare); err != nil {
			return nil, err
		}
		prop, err := rootPropagation(s.Linux.RootfsPropagation)
		if err != nil {
			return nil, err
		}
		ic.RootPropagation = uint64(prop)
	}
	return ic, nil
}

// logf prints a -v line of the init, timed from the parent's start.
func (c *initConfig) logf(format string, args ...any) {
	if c.Verbose {
		logLine(c.Start, "init: "+format, args...)
	}
}

func (c *initConfig) encode() []byte {
	var e encoder
	e.str(c.Rootfs)
	e.strs(c.Args)
	e.strs(c.Env)
	e.str(c.Cwd)
	e.uint(uint64(c.UID))
	e.uint(uint64(c.GID))
	e.bools(c.NoNewPrivs, c.Writable, c.Foreground, c.Verbose)
	e.uint(c.Unshare)
	e.str(c.Hostname)
	for _, m := range []uint64{c.Caps.Bounding, c.Caps.Effective, c.Caps.Permitted, c.Caps.Inheritable, c.Caps.Ambient} {
		e.uint(m)
	}
	e.uint(uint64(len(c.Mounts)))
	for _, m := range c.Mounts {
		e.str(m.Destination)
		e.str(m.Type)
		e.str(m.Source)
		e.strs(m.Options)
	}
	e.uint(uint64(len(c.Files)))
	for _, f := range c.Files {
		e.str(f.Path)
		e.str(string(f.Data))
		e.uint(uint64(f.Mode))
	}
	e.uint(uint64(c.Start.UnixNano()))
	e.str(c.StateDir)
	e.bools(c.Terminal, c.Detached, c.WritableRoot, c.OOMScoreAdj != nil)
	e.uint(uint64(c.AnchorFD))
	e.uint(uint64(c.Held))
	e.uint(uint64(len(c.Rlimits)))
	for _, r := range c.Rlimits {
		e.uint(uint64(r.Resource))
		e.uint(r.Soft)
		e.uint(r.Hard)
	}
	if c.OOMScoreAdj != nil {
		e.uint(uint64(int64(*c.OOMScoreAdj) + 1000)) // -1000..1000
	}
	e.strs(c.MaskedPaths)
	e.strs(c.ReadonlyPaths)
	e.uint(uint64(c.Members))
	e.str(c.Keyring)
	e.str(c.Hooks)
	e.strs(c.Sysctls)
	e.uint(c.RootPropagation)
	e.str(c.Seccomp)
	e.str(c.RestoreDir)
	e.str(c.RestoreCriu)
	e.uint(uint64(c.RestorePid))
	e.uint(uint64(c.RestoreMaxPid))
	e.strs(c.RestoreStdio)
	return e.b
}

func decodeInitConfig(b []byte) (*initConfig, error) {
	d := decoder{b: b}
	c := &initConfig{}
	c.Rootfs = d.str()
	c.Args = d.strs()
	c.Env = d.strs()
	c.Cwd = d.str()
	c.UID = uint32(d.uint())
	c.GID = uint32(d.uint())
	flags := d.bools(4)
	c.NoNewPrivs, c.Writable, c.Foreground, c.Verbose = flags[0], flags[1], flags[2], flags[3]
	c.Unshare = d.uint()
	c.Hostname = d.str()
	for _, m := range []*uint64{&c.Caps.Bounding, &c.Caps.Effective, &c.Caps.Permitted, &c.Caps.Inheritable, &c.Caps.Ambient} {
		*m = d.uint()
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		c.Mounts = append(c.Mounts, specs.Mount{Destination: d.str(), Type: d.str(), Source: d.str(), Options: d.strs()})
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		c.Files = append(c.Files, File{Path: d.str(), Data: []byte(d.str()), Mode: uint32(d.uint())})
	}
	c.Start = time.Unix(0, int64(d.uint()))
	c.StateDir = d.str()
	tf := d.bools(4)
	c.Terminal, c.Detached, c.WritableRoot = tf[0], tf[1], tf[2]
	c.AnchorFD = int(d.uint())
	c.Held = int(d.uint())
	for n := d.count(); n > 0 && d.err == nil; n-- {
		c.Rlimits = append(c.Rlimits, rlimit{Resource: int(d.uint()), Soft: d.uint(), Hard: d.uint()})
	}
	if tf[3] {
		v := int(int64(d.uint()) - 1000)
		c.OOMScoreAdj = &v
	}
	c.MaskedPaths, c.ReadonlyPaths = d.strs(), d.strs()
	c.Members = int(d.uint())
	c.Keyring = d.str()
	c.Hooks = d.str()
	c.Sysctls, c.RootPropagation = d.strs(), d.uint()
	c.Seccomp = d.str()
	c.RestoreDir, c.RestoreCriu, c.RestorePid, c.RestoreMaxPid, c.RestoreStdio = d.str(), d.str(), int(d.uint()), int(d.uint()), d.strs()
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil || len(c.Args) == 0 {
		return nil, fmt.Errorf("garbled container config (%v)", d.err)
	}
	return c, nil
}

// message is a report the init sends back on fd 4: the job's exit status,
// or why the container could not start, both final; or, at a terminal,
// that the job was stopped (Ctrl-Z).
type message struct {
	Failed  bool   // Error, Code and Errno are set; otherwise Status
	Stopped bool   // the job stopped; more reports follow
	Ready   bool   // a detached container is set up and serves its socket
	Hooks   bool   // the container is built: the caller runs its creation hooks
	Status  int    // the job's status as a shell reports it; the stop signal
	Error   string // one line
	Code    int    // hpcrun's exit status for the failure (125, 126, 127)
	Errno   int    // the errno behind it, if any
}

// encode frames the message, so the parent reads exactly one report
// without waiting for the init to close the pipe.
func (m message) encode() []byte {
	var e encoder
	e.bools(m.Failed, m.Stopped, m.Ready, m.Hooks)
	e.uint(uint64(m.Status))
	e.str(m.Error)
	e.uint(uint64(m.Code))
	e.uint(uint64(m.Errno))
	return frame(e.b)
}

// frame prefixes b with its length.
func frame(b []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// readFrame reads one length-prefixed frame of at most 16 MiB.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > 16<<20 {
		return nil, fmt.Errorf("frame of %d bytes is too large", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readMessage reads one report. ok is false when the pipe closed without
// one: the init died before it could say anything.
func readMessage(r io.Reader) (m message, ok bool) {
	body, err := readFrame(r)
	if err != nil {
		return m, false
	}
	d := decoder{b: body}
	flags := d.bools(4)
	m.Failed, m.Stopped, m.Ready, m.Hooks = flags[0], flags[1], flags[2], flags[3]
	m.Status = int(d.uint())
	m.Error = d.str()
	m.Code = int(d.uint())
	m.Errno = int(d.uint())
	if d.err != nil {
		return message{Failed: true, Error: "container init sent a garbled report", Code: StatusFailed}, true
	}
	return m, true
}

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}
func (e *encoder) bools(bs ...bool) {
	var v uint64
	for i, b := range bs {
		if b {
			v |= 1 << uint(i)
		}
	}
	e.uint(v)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("short or bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length and checks it against the bytes left, so a garbled
// config cannot make the init allocate without bound.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.err = errors.New("bad length")
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.count()
	var ss []string
	for ; n > 0 && d.err == nil; n-- {
		ss = append(ss, d.str())
	}
	return ss
}

func (d *decoder) bools(n int) []bool {
	v := d.uint()
	bs := make([]bool, n)
	for i := range bs {
		bs[i] = v&(1<<uint(i)) != 0
	}
	return bs
}
