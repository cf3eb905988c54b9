package runtime

// OCI hooks (config.json's hooks), each kind at the point of the
// life-cycle, and in the namespaces, that the runtime spec fixes for it:
//
//	prestart, createRuntime  create, once the container's namespaces and
//	                         mounts exist, before pivot_root: run by the
//	                         caller of create, on the host, while the init
//	                         waits (the init's "hooks" report, then a byte
//	                         back on the control pipe)
//	createContainer          then, run by the init, in the container's
//	                         namespaces, still before pivot_root
//	startContainer           start, run by the init in the container, just
//	                         before it forks the process
//	poststart                start, run by the caller once the process runs
//	poststop                 delete, run by the caller once the container
//	                         is gone, or once a failed create's hook has
//	                         ended it
//
// Each hook reads the container's state (the runtime spec's) on stdin, and
// writes to hpcrun's own stderr, never to the container's. Where the
// container's mounts are in place for the creation hooks, the rootfs path
// shows the container's tree (see hookRoot), as it does under runc, so a
// hook that reads root.path from the bundle finds the container's files
// there, in the container's mount namespace (/proc/PID/root/ROOTFS, or
// nsenter --user --mount -t PID).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// Hook kinds, as config.json names them.
const (
	hookPrestart        = "prestart"
	hookCreateRuntime   = "createRuntime"
	hookCreateContainer = "createContainer"
	hookStartContainer  = "startContainer"
	hookPoststart       = "poststart"
	hookPoststop        = "poststop"
)

// hookList is a kind's hooks in a spec's hooks; nil for none.
func hookList(h *specs.Hooks, kind string) []specs.Hook {
	if h == nil {
		return nil
	}
	switch kind {
	case hookPrestart:
		return h.Prestart //nolint:staticcheck // deprecated, and what GPU vendors' hooks use
	case hookCreateRuntime:
		return h.CreateRuntime
	case hookCreateContainer:
		return h.CreateContainer
	case hookStartContainer:
		return h.StartContainer
	case hookPoststart:
		return h.Poststart
	case hookPoststop:
		return h.Poststop
	}
	return nil
}

// hookKinds are the kinds in the order the life-cycle runs them.
var hookKinds = []string{hookPrestart, hookCreateRuntime, hookCreateContainer, hookStartContainer, hookPoststart, hookPoststop}

// checkHooks refuses hooks that the runtime spec does not allow: a path
// that is not absolute, a timeout that is not above zero.
func checkHooks(h *specs.Hooks) error {
	for _, kind := range hookKinds {
		for i, hk := range hookList(h, kind) {
			switch {
			case hk.Path == "" || hk.Path[0] != '/':
				return fmt.Errorf("config.json: hooks.%s[%d].path %q is not an absolute path; give the hook's full path", kind, i, hk.Path)
			case hk.Timeout != nil && (*hk.Timeout <= 0 || *hk.Timeout > maxHookTimeout):
				return fmt.Errorf("config.json: hooks.%s[%d].timeout is %d; give a number of seconds from 1 to %d, or leave it out", kind, i, *hk.Timeout, maxHookTimeout)
			}
		}
	}
	return nil
}

// hookError is a hook that failed or timed out.
type hookError struct {
	kind  string
	index int
	path  string
	err   error // from the hook's run; nil with timeout
	// timeout: the hook ran past its timeout, in seconds, and was killed.
	timeout int
}

func (e *hookError) Error() string {
	if e.timeout > 0 {
		return fmt.Sprintf("%s hook %s (hooks.%s[%d]) timed out after %ds and was killed", e.kind, e.path, e.kind, e.index, e.timeout)
	}
	return fmt.Sprintf("%s hook %s (hooks.%s[%d]) failed: %v", e.kind, e.path, e.kind, e.index, e.err)
}

func (e *hookError) Unwrap() error { return e.err }

// hookState is the state a hook reads on stdin: the runtime spec's, with
// status as at the hook's point and the container's pid as the host sees
// it (none once it is stopped).
func hookState(s *State, status string, pid int) []byte {
	st := specs.State{Version: SpecVersion, ID: s.ID, Status: specs.ContainerState(status), Bundle: s.Bundle, Annotations: s.Annotations}
	if status != StatusStopped {
		st.Pid = pid
	}
	b, _ := json.Marshal(st)
	return b
}

// runHooks runs hooks of kind in order, each with state on stdin and out
// as its stdout and stderr, and returns the first failure; with keepGoing
// it runs them all and returns every failure.
func runHooks(kind string, hooks []specs.Hook, state []byte, out *os.File, keepGoing bool) error {
	var errs []error
	for i, h := range hooks {
		if err := runHook(kind, i, h, state, out); err != nil {
			if !keepGoing {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runHook runs one hook. Its args[0] is its argv[0] (the path, when it
// has no args); its env is its whole environment, or, when the hook gives
// none, this process's, as runc has it. It runs in a session of its own,
// in /, with no terminal: root runs the poststop hooks of a user's
// container (Slurm's delete) as that user, and a hook must not reach
// root's terminal or hold root's process up. Its output reaches out line
// by line, escaped (see hookOutput). The session is killed when its
// timeout runs out; acting for a user as root, a hook gets at most
// ownerHookTimeout, and no more of root's environment than PATH.
func runHook(kind string, i int, h specs.Hook, state []byte, out *os.File) error {
	w := &hookOutput{out: out}
	env := h.Env
	timeout := h.Timeout
	if actingForOwner {
		if env == nil {
			env = []string{"PATH=" + DefaultPath}
		}
		if timeout == nil || *timeout > ownerHookTimeout {
			t := ownerHookTimeout
			timeout = &t
		}
	}
	cmd := &exec.Cmd{Path: h.Path, Args: hookArgv(h), Env: env, Dir: "/", Stdin: bytes.NewReader(state), Stdout: w, Stderr: w,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}, WaitDelay: hookWaitDelay}
	defer w.flush()
	fail := &hookError{kind: kind, index: i, path: h.Path}
	if err := cmd.Start(); err != nil {
		fail.err = err
		return fail
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var expired <-chan time.Time
	if timeout != nil {
		t := time.NewTimer(time.Duration(*timeout) * time.Second)
		defer t.Stop()
		expired = t.C
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
			fail.err = err
			return fail
		}
		return nil
	case <-expired:
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-done
		fail.timeout = *timeout
		return fail
	}
}

// hookArgv is a hook's argv: its args, whose first is its argv[0], or
// its path alone when it has none.
func hookArgv(h specs.Hook) []string {
	if len(h.Args) == 0 {
		return []string{h.Path}
	}
	return h.Args
}

// maxHookTimeout caps a hook's timeout (a day), so that seconds convert
// to a time.Duration without overflow.
const maxHookTimeout = 24 * 60 * 60

// ownerHookTimeout is the most a hook may take, in seconds, when root
// runs it for the owner of a container (poststop, at Slurm's delete).
var ownerHookTimeout = 30

// hookWaitDelay is how long a hook's output may stay open once the hook
// has exited (a child it left holding it): its output is cut then.
const hookWaitDelay = 2 * time.Second

// actingForOwner is set once root has become the owner of a state root
// (becomeOwner): the hooks it runs are the owner's.
var actingForOwner bool

// hookOutput passes a hook's output on to out a line at a time, escaped
// as termsafe does (a hook is the bundle's code: it must not drive the
// caller's terminal), and at most maxHookOutput bytes of it.
type hookOutput struct {
	out  *os.File
	buf  []byte
	n    int
	full bool
}

const maxHookOutput = 1 << 20

func (w *hookOutput) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *hookOutput) line(s string) {
	if w.full {
		return
	}
	if w.n += len(s) + 1; w.n > maxHookOutput {
		w.full = true
		fmt.Fprintf(w.out, "[hook output cut at %d bytes]\n", maxHookOutput)
		return
	}
	// Tabs pass: they lay out columns and drive nothing.
	parts := strings.Split(s, "\t")
	for i, p := range parts {
		parts[i] = termsafe.Escape(p)
	}
	w.out.WriteString(strings.Join(parts, "\t") + "\n")
}

// flush passes on a last line without a newline.
func (w *hookOutput) flush() {
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

// hookRun carries a created container's hooks through Create: what its
// init runs, and what the caller runs while the init waits.
type hookRun struct {
	spec  *specs.Hooks
	state *State // the container's; its Pid is set once the init is cloned
	// reached: the init built the container and stopped for the creation
	// hooks; a failure from here on ends the container, and its poststop
	// hooks run (the life-cycle's steps 3 to 5 fail to 12 and 13).
	reached bool
}

// newHookRun is the hooks of cfg's spec for container s, or nil when it
// has none that create or start runs.
func newHookRun(cfg *Config, s *State) *hookRun {
	h := cfg.Spec.Hooks
	for _, kind := range []string{hookPrestart, hookCreateRuntime, hookCreateContainer, hookStartContainer} {
		if len(hookList(h, kind)) > 0 {
			return &hookRun{spec: h, state: s}
		}
	}
	return nil
}

// syncs reports whether the init stops for the creation hooks.
func (r *hookRun) syncs() bool {
	return len(hookList(r.spec, hookPrestart))+len(hookList(r.spec, hookCreateRuntime))+len(hookList(r.spec, hookCreateContainer)) > 0
}

// files are the descriptors the init needs for its hooks: hpcrun's own
// stderr, where createContainer hooks write, whatever the container's
// stdio is (a terminal, a log).
func (r *hookRun) files() []*os.File {
	if r == nil || !r.syncs() {
		return nil
	}
	return []*os.File{os.Stderr}
}

// initHooks is what the init runs of the hooks, as it crosses to the init
// in its config (JSON: only bundles with hooks pay for it).
type initHooks struct {
	Sync            bool            // stop before pivot_root for the caller's hooks
	Out             int             // the descriptor createContainer hooks write to
	State           json.RawMessage // the state the hooks read
	CreateContainer []specs.Hook    `json:",omitempty"`
	StartContainer  []specs.Hook    `json:",omitempty"`
}

// forInit encodes the init's part, with out the init's descriptor of
// files()'s first.
func (r *hookRun) forInit(out int) string {
	if r == nil {
		return ""
	}
	ih := initHooks{Sync: r.syncs(), State: hookState(r.state, StatusCreated, r.state.Pid),
		CreateContainer: withEnv(hookList(r.spec, hookCreateContainer), os.Environ()),
		StartContainer:  withEnv(hookList(r.spec, hookStartContainer), os.Environ())}
	if ih.Sync {
		ih.Out = out
	}
	b, _ := json.Marshal(ih)
	return string(b)
}

// withEnv gives the hooks that set no environment env, the caller's, as
// the hooks that the caller runs get: the init's own is not theirs.
func withEnv(hooks []specs.Hook, env []string) []specs.Hook {
	out := slices.Clone(hooks)
	for i := range out {
		if out[i].Env == nil {
			out[i].Env = env
		}
	}
	return out
}

// runtimeHooks runs the prestart and createRuntime hooks, as the init
// (pid) waits before pivot_root.
func (r *hookRun) runtimeHooks(pid int) error {
	r.reached = true
	state := hookState(r.state, StatusCreated, pid)
	for _, kind := range []string{hookPrestart, hookCreateRuntime} {
		if err := runHooks(kind, hookList(r.spec, kind), state, os.Stderr, false); err != nil {
			return err
		}
	}
	return nil
}

// failed runs the poststop hooks of a container whose create failed once
// it was built, as the life-cycle goes on at delete's steps.
func (r *hookRun) failed() {
	if r != nil && r.reached {
		poststop(r.state)
	}
}

// poststart runs a started container's poststart hooks; a failure is a
// warning, and the rest run.
func poststart(s *State) {
	warnHooks(runHooks(hookPoststart, hookList(s.Hooks, hookPoststart), hookState(s, StatusRunning, s.Pid), os.Stderr, true))
}

// poststop runs a deleted container's poststop hooks; a failure is a
// warning, and the rest run.
func poststop(s *State) {
	warnHooks(runHooks(hookPoststop, hookList(s.Hooks, hookPoststop), hookState(s, StatusStopped, 0), os.Stderr, true))
}

// warnHooks says, a line each, which hooks failed, on hpcrun's own
// stderr: the runtime spec has poststart and poststop failures warned of.
func warnHooks(err error) {
	if err == nil {
		return
	}
	for _, e := range unwrapAll(err) {
		fmt.Fprintf(os.Stderr, "hpcrun: warning: %s\n", termsafe.Line(e.Error()))
	}
}

// unwrapAll lists the errors that errors.Join joined.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ---- the init's side ----

// decodeHooks reads the init's hooks from its config.
func (c *initConfig) decodeHooks() (*initHooks, error) {
	var h initHooks
	if err := json.Unmarshal([]byte(c.Hooks), &h); err != nil {
		return nil, fmt.Errorf("garbled hooks in the container config: %w", err)
	}
	return &h, nil
}

// creationHooks runs in the init once the container's mounts are in place,
// before pivot_root: it shows the container's tree at the rootfs path,
// hands over to the caller for the prestart and createRuntime hooks and
// waits for its go-ahead on the control pipe, then runs the
// createContainer hooks here, in the container's namespaces, with the
// init's capabilities in them. It returns the new root to pivot into.
func creationHooks(cfg *initConfig, newroot string, control, status *os.File) (string, error) {
	h, err := cfg.decodeHooks()
	if err != nil || !h.Sync {
		return newroot, err
	}
	root, err := hookRoot(newroot, cfg.Rootfs)
	if err != nil {
		return newroot, err
	}
	cfg.logf("waiting for the runtime's hooks")
	if _, err := status.Write(message{Hooks: true}.encode()); err != nil {
		return root, fmt.Errorf("report to hpcrun: %w", err)
	}
	// Signal bytes that hpcrun forwards before the go-ahead are for a job
	// that does not exist yet: dropped, as they would be after it.
	for b := []byte{1}; b[0] != 0; {
		if _, err := control.Read(b); err != nil {
			return root, fmt.Errorf("hpcrun ended during the runtime's hooks (%v)", err)
		}
	}
	out := os.NewFile(uintptr(h.Out), "hook output")
	defer out.Close()
	cfg.logf("running %d createContainer hooks", len(h.CreateContainer))
	return root, runHooks(hookCreateContainer, h.CreateContainer, h.State, out, false)
}

// hookRoot moves the container's new root onto the rootfs path, over the
// staging tmpfs, and returns the rootfs path, where pivot_root then finds
// it: a hook that reads root.path from the bundle (as GPU vendors' do)
// sees the container's tree there, mounts and all, as under runc. The
// stage, below, is detached with the old root all the same.
func hookRoot(newroot, rootfs string) (string, error) {
	if newroot == rootfs {
		return newroot, nil
	}
	if err := unix.Mount(newroot, rootfs, "", unix.MS_MOVE, ""); err != nil {
		return newroot, fmt.Errorf("move the container's root to %s for its hooks: %w", rootfs, err)
	}
	return rootfs, nil
}

// startHooks runs the startContainer hooks in the container, before the
// process is forked, writing to out. Each starts as the process does
// (forkExec, under its limits, fence, filter and privileges): a hook is
// the bundle's code, and gets no more than its process.
func (c *ctl) startHooks(out *os.File) error {
	if c.cfg.Hooks == "" {
		return nil
	}
	h, err := c.cfg.decodeHooks()
	if err != nil {
		return err
	}
	for i, hk := range h.StartContainer {
		if err := c.runHookHere(i, hk, h.State, out); err != nil {
			return err
		}
	}
	return nil
}

// runHookHere runs a startContainer hook as a child of the init. The
// reaper, which waits for every child, hands its status over (hookExits):
// a wait of the runner's own would race with it. It is called with c.mu
// held, and lets it go while the hook runs: the reaper takes c.mu for
// every child it reaps, and another child (one a createContainer hook
// left) may end before the hook does.
func (c *ctl) runHookHere(i int, h specs.Hook, state []byte, out *os.File) error {
	fail := &hookError{kind: hookStartContainer, index: i, path: h.Path}
	inR, inW, err := os.Pipe()
	if err != nil {
		fail.err = err
		return fail
	}
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		fail.err = err
		return fail
	}
	defer outR.Close()
	attr := jobAttr(c.cfg, h.Env, "/", []uintptr{inR.Fd(), outW.Fd(), outW.Fd()})
	attr.Sys.Setsid = true
	c.hookExits.begin()
	defer c.hookExits.end()
	pid, err := forkExec(c.cfg, h.Path, hookArgv(h), attr)
	inR.Close()
	outW.Close()
	if err != nil {
		fail.err = err
		return fail
	}
	c.poke() // a reaper that had no child to wait for
	go func() {
		inW.Write(state)
		inW.Close()
	}()
	copied := make(chan struct{})
	go func() {
		w := &hookOutput{out: out}
		io.Copy(w, outR)
		w.flush()
		close(copied)
	}()
	var timeout time.Duration
	if h.Timeout != nil {
		timeout = time.Duration(*h.Timeout) * time.Second
	}
	c.mu.Unlock()
	code, ok := c.hookExits.wait(pid, timeout)
	if !ok {
		unix.Kill(-pid, unix.SIGKILL)
		c.hookExits.wait(pid, 0)
		fail.timeout = *h.Timeout
	} else if code != 0 {
		fail.err = fmt.Errorf("exit status %d", code)
	}
	select {
	case <-copied:
	case <-time.After(hookWaitDelay): // a child it left holds its output
	}
	c.mu.Lock()
	if fail.err != nil || fail.timeout > 0 {
		return fail
	}
	return nil
}

// exitBox hands the statuses of children that the reaper reaps to a
// runner that waits for one, between begin and end.
type exitBox struct {
	mu    sync.Mutex
	cond  *sync.Cond
	codes map[int]int // nil outside begin and end
}

func (b *exitBox) begin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	b.codes = map[int]int{}
}

func (b *exitBox) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.codes = nil
}

// note keeps pid's status, while a runner may wait for it.
func (b *exitBox) note(pid, code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.codes != nil {
		b.codes[pid] = code
		b.cond.Broadcast()
	}
}

// wait waits for pid's status, for at most d (0: no limit); ok is false
// when d ran out first.
func (b *exitBox) wait(pid int, d time.Duration) (code int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	expired := false
	if d > 0 {
		t := time.AfterFunc(d, func() {
			b.mu.Lock()
			expired = true
			b.cond.Broadcast()
			b.mu.Unlock()
		})
		defer t.Stop()
	}
	for {
		if code, ok := b.codes[pid]; ok {
			return code, true
		}
		if expired {
			return 0, false
		}
		b.cond.Wait()
	}
}
