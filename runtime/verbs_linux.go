package runtime

// The life-cycle verbs' work over a bundle or a running container, which
// cmd/hpcrun's create, run, exec and kill call with their flags.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/atomicfile"
	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/runtime/procs"

	"github.com/hpcrun/hpcrun/internal/columns"
)

// ErrNoConsoleSocket: the bundle asks for a terminal, and no socket was
// given to send its master to.
var ErrNoConsoleSocket = errors.New("config.json asks for a terminal, and there is no console socket to send it to")

// BundleOptions are how CreateBundle makes a container.
type BundleOptions struct {
	Bundle string // the bundle dir: config.json and its root.path
	// PidFile, when set, gets the init's pid, as runc writes it.
	PidFile string
	// ConsoleSocket receives the master of a new pty when the bundle asks
	// for a terminal.
	ConsoleSocket string
	Stdio         Stdio // the process's, when it has no terminal
}

// CreateBundle creates container id from a bundle, with o.Stdio or, when
// the spec asks for a terminal, a new pty whose master goes to
// o.ConsoleSocket. ignored lists what the bundle asks for that hpcrun
// does not apply, for the caller to say, whether or not the container
// could be made: tools may count on it for confinement.
func (c *Containers) CreateBundle(id string, o BundleOptions) (s *State, ignored []string, err error) {
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, nil, err
	}
	spec, added, err := LoadBundle(bundle, uint32(os.Getuid()), uint32(os.Getgid()))
	if err != nil {
		return nil, nil, err
	}
	if ignored, err = bundleUnapplied(spec, lastCap(), fenceAvailable()); err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", o.Bundle, err)
	}
	ignored = append(added, ignored...)
	if err := checkHooks(spec.Hooks); err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	if spec.Process.ApparmorProfile != "" || spec.Process.SelinuxLabel != "" {
		ignored = append(ignored, "an LSM label")
	}
	ignored = append(ignored, mountsUnapplied(spec)...)
	// The limits go into a cgroup of the container's own where one is
	// delegated to the caller; the init joins it (see Create). Not for a
	// name in use, whose container may hold that cgroup.
	if _, err := c.Load(id); err == nil {
		return nil, ignored, c.taken(id)
	}
	cgroups, err := prepareCgroups(spec, id)
	if err != nil {
		return nil, ignored, fmt.Errorf("bundle %s: %w", o.Bundle, err)
	}
	defer func() {
		if cgroups != nil {
			ignored = append(ignored, cgroups.unapplied...)
		}
		cgroups.close()
	}()
	stdio := o.Stdio
	if spec.Process.Terminal {
		if o.ConsoleSocket == "" {
			cgroups.remove()
			return nil, ignored, ErrNoConsoleSocket
		}
		pty, err := NewConsole(o.ConsoleSocket)
		if err != nil {
			cgroups.remove()
			return nil, ignored, err
		}
		defer pty.Close()
		stdio = Stdio{In: pty, Out: pty, Err: pty}
	}
	s, err = c.Create(id, &Config{Spec: spec, Terminal: spec.Process.Terminal, cgroups: cgroups}, CreateOptions{Bundle: bundle, Stdio: &stdio})
	if err != nil {
		cgroups.remove()
		return nil, ignored, err
	}
	if o.PidFile != "" {
		// The bare pid, no newline, as runc writes it: into a new file of
		// its own (never through a planted link), renamed into place.
		if err := atomicfile.Write(o.PidFile, []byte(strconv.Itoa(s.Pid)), 0o644); err != nil {
			c.Delete(id, true)
			return nil, ignored, fmt.Errorf("pid file: %w", err)
		}
	}
	return s, ignored, nil
}

// WaitForeground waits for started container id, passing on the signals
// caught on sigs, then deletes it (with remove), and returns its
// process's status.
func (c *Containers) WaitForeground(id string, remove bool, sigs <-chan os.Signal) (int, error) {
	go func() {
		for s := range sigs {
			c.Kill(id, s.(unix.Signal), false)
		}
	}()
	code, err := c.Wait(id)
	if remove {
		c.Delete(id, true)
	}
	return code, err
}

// ExecIn runs p in running container id with stdio, passing on the
// signals this process gets, and returns its status. With p.TTY, p gets a
// terminal of its own: a new pty relayed to stdio, whose own terminal
// (when stdinTTY) is put in raw mode meanwhile.
func (c *Containers) ExecIn(id string, p Process, stdio Stdio, stdinTTY bool) (int, error) {
	s, err := c.Load(id)
	if err != nil {
		return StatusFailed, err
	}
	if s.Status != StatusRunning {
		return StatusFailed, fmt.Errorf("container %s is %s; exec needs a running container", id, s.Status)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, ForwardedSignals...)
	defer signal.Stop(sigs)
	switch {
	case p.TTY && stdinTTY:
		t, err := NewExecTerminal(stdio)
		if err != nil {
			return StatusFailed, err
		}
		defer t.Close()
		stdio = t.Stdio()
	case p.TTY:
		t, err := NewRelayedTerminal(stdio.In, stdio.Out)
		if err != nil {
			return StatusFailed, err
		}
		defer t.Close()
		stdio = t.Stdio()
	}
	return Exec(c.Dir(id), p, stdio, sigs)
}

// ParseSignal reads a signal as kill(1) takes it: TERM, SIGTERM or 15.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %s is out of range", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// event is one line of `hpcrun events`, as runc prints them.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

type statsData struct {
	CPU struct {
		Usage struct {
			Total uint64 `json:"total"` // ns
		} `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Usage struct {
			Usage uint64 `json:"usage"` // bytes
		} `json:"usage"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current"`
	} `json:"pids"`
}

// Events writes id's resource use to w as JSON lines, in the shape of
// runc's events, every interval (once, with once), then, when the
// container stops, an exit event, or an oom event when the kernel's OOM
// killer killed its process.
func (c *Containers) Events(id string, once bool, interval time.Duration, w io.Writer) error {
	enc := json.NewEncoder(w)
	oomBefore := oomKills()
	for {
		st, err := c.Stats(id)
		if err != nil {
			s, lerr := c.Load(id)
			if lerr != nil || s.Status != StatusStopped || once {
				return err
			}
			// Stopped: say how, and end.
			typ := "exit"
			if s.ExitCode == 128+9 && oomKills() > oomBefore {
				typ = "oom"
			}
			return enc.Encode(event{Type: typ, ID: id, Data: map[string]int{"status": s.ExitCode}})
		}
		var d statsData
		d.CPU.Usage.Total = uint64(st.CPU.Nanoseconds())
		d.Memory.Usage.Usage = uint64(st.RSS)
		d.Pids.Current = uint64(st.Procs)
		if err := enc.Encode(event{Type: "stats", ID: id, Data: d}); err != nil || once {
			return err
		}
		time.Sleep(interval)
	}
}

// oomKills is the kernel's count of OOM kills (/proc/vmstat oom_kill).
func oomKills() int {
	b, _ := os.ReadFile("/proc/vmstat")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// WriteStatesJSON writes the states as one JSON list, each in the OCI
// state's shape with hpcrun's fields added, for scripts.
func WriteStatesJSON(w io.Writer, all []*State) error {
	out := make([]map[string]any, 0, len(all))
	for _, s := range all {
		out = append(out, map[string]any{"ociVersion": SpecVersion, "id": s.ID, "pid": s.OCI().Pid,
			"status": s.Status, "bundle": s.Bundle, "rootfs": s.Rootfs, "created": s.Created, "owner": s.Owner,
			"image": s.ImageRef()})
	}
	return json.NewEncoder(w).Encode(out)
}

// ImageAnnotation is the annotation in which hpcrun's runs record the
// image they run in (--image, or --rootfs), for list.
const ImageAnnotation = "org.hpcrun.image"

// ImageRef is what the container runs in: the image its run named, else
// the image of a group container, else its rootfs.
func (s *State) ImageRef() string {
	return cmp.Or(s.Annotations[ImageAnnotation], s.Image, s.Rootfs)
}

// WriteStates writes the states as a table, one container a line, with
// times as people say them and owners by name.
func WriteStates(w io.Writer, all []*State) error {
	return writeStates(w, all, time.Now(), procs.UserName)
}

func writeStates(w io.Writer, all []*State, now time.Time, name func(uid string) string) error {
	rows := [][]string{{"ID", "PID", "STATUS", "IMAGE", "CREATED", "OWNER"}}
	for _, s := range all {
		// The fields come from state files, which their owner
		// writes and root may print (see internal/termsafe).
		rows = append(rows, []string{termsafe.Line(s.ID), strconv.Itoa(s.OCI().Pid), termsafe.Line(s.Status),
			termsafe.Line(s.ImageRef()), Ago(now.Sub(s.Created)), termsafe.Line(name(s.Owner))})
	}
	return columns.Write(w, 3, rows)
}

// Ago says how long ago d was, as people do: "just now", "3 minutes ago",
// "2 days ago".
func Ago(d time.Duration) string {
	if d < 10*time.Second {
		return "just now"
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{365 * 24 * time.Hour, "year"}, {7 * 24 * time.Hour, "week"}, {24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		if n := int(d / u.unit); n >= 1 {
			if n == 1 {
				return "1 " + u.name + " ago"
			}
			return strconv.Itoa(n) + " " + u.name + "s ago"
		}
	}
	return "just now"
}
