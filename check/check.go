package check

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/jobs"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// Status is how a check came out.
type Status string

const (
	// OK: it works.
	OK Status = "ok"
	// Warn: containers run, but a feature will not work, or works badly.
	Warn Status = "warn"
	// Fail: no container can run here until it is fixed.
	Fail Status = "fail"
	// Info: a fact about the node, neither good nor bad.
	Info Status = "info"
)

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`        // what was found, one line
	Fix    string `json:"fix,omitempty"` // what to do, one line; only when the status is warn or fail
}

// Env is the node and the caller that Run diagnoses, as values.
type Env struct {
	// Proc is where the kernel's proc files are read (sys/user/...,
	// sys/kernel/osrelease): "" for /proc.
	Proc    string
	Environ []string // the caller's environment, K=V
	UID     int      // the caller's uid

	// ConfigRead are the config files read; ConfigErr why the config
	// did not load.
	ConfigRead []string
	ConfigErr  error

	// Cache is the image cache as a run would resolve it (flag,
	// HPCRUN_CACHE, config, else in the node-local scratch dir), and
	// CacheFrom where that came from; CacheErr says why there is none.
	Cache     string
	CacheFrom string
	CacheErr  error

	// StateRoot is --root, where it was given; "" for the default
	// ($XDG_RUNTIME_DIR/hpcrun, else /tmp/hpcrun-UID/run).
	StateRoot string

	// Dir gives a directory's filesystem facts; nil for jobs.ProbeDir.
	Dir func(string) jobs.Dir
	// UserNS tries new user, mount and pid namespaces as a container's
	// init does (runtime.ProbeUserNS); Overlay tries an overlay in them
	// (runtime.ProbeOverlay). nil: not tried, and the sysctls decide.
	UserNS, Overlay func() error
	// Checkpoint says why the kernel cannot checkpoint a job
	// (runtime.CheckpointSupport); nil: not tried. Criu is the site's
	// criu (the config's criu, HPCRUN_CRIU), CriuFrom where it was set;
	// "" for the image's.
	Checkpoint     func() error
	Criu, CriuFrom string

	// GPU is the host that gpu.Find looks at for each vendor's driver.
	GPU gpu.Host
}

func (e Env) withDefaults() Env {
	if e.Proc == "" {
		e.Proc = "/proc"
	}
	if e.Dir == nil {
		e.Dir = jobs.ProbeDir
	}
	if e.GPU.Env == nil {
		e.GPU.Env = e.Environ
	}
	return e
}

// sysctl reads one sysctl by its dotted name below Proc; ok is false
// when the kernel does not have it.
func (e Env) sysctl(name string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(e.Proc, "sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// getenv is the last value of key in Environ, and whether it is set.
func (e Env) getenv(key string) (string, bool) {
	for i := len(e.Environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e.Environ[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Run diagnoses the node, one Result per check, in this order: config,
// kernel, user namespaces, overlayfs, image cache, container state,
// checkpoint, GPU drivers, scheduler.
func Run(e Env) []Result {
	e = e.withDefaults()
	k := readKernel(e)
	userns := userNamespaces(e, k)
	rs := []Result{
		config(e),
		kernelResult(k),
		userns,
		overlay(e, k, userns.Status != Fail),
		cache(e),
		state(e),
		checkpoint(e),
	}
	rs = append(rs, gpus(e)...)
	return append(rs, scheduler(e))
}

// Failed reports whether a check failed: no container can run.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Summary is a line that sums the results up.
func Summary(rs []Result) string {
	var failed []string
	warns := 0
	for _, r := range rs {
		switch r.Status {
		case Fail:
			failed = append(failed, r.Name)
		case Warn:
			warns++
		}
	}
	if len(failed) > 0 {
		return "hpcrun cannot run containers on this node: fix " + strings.Join(failed, " and ")
	}
	s := "hpcrun can run containers on this node"
	switch warns {
	case 0:
	case 1:
		s += "; 1 warning"
	default:
		s += "; " + strconv.Itoa(warns) + " warnings"
	}
	return s
}

// statusWidth is the width of the status column: "warn" and two spaces.
const statusWidth = 6

// Write prints one line per result, in aligned columns (status, name,
// detail), with an indented "fix:" line under each that has a fix.
func Write(w io.Writer, rs []Result) error {
	width := 0
	for _, r := range rs {
		width = max(width, len(r.Name))
	}
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%-*s%-*s  %s\n", statusWidth, r.Status, width, r.Name, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(&b, "%*sfix: %s\n", statusWidth, "", r.Fix)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// checkpoint says whether hpcrun checkpoint can work here: the kernel's
// part, and a site's criu where one is named. The image's
// criu is checked when a checkpoint runs.
func checkpoint(e Env) Result {
	r := Result{Name: "checkpoint", Status: Info, Detail: "not tried"}
	if e.Checkpoint == nil {
		return r
	}
	if err := e.Checkpoint(); err != nil {
		r.Status, r.Detail = Warn, "hpcrun checkpoint will not work: "+err.Error()
		r.Fix = "checkpoint on a node with Linux 5.9 or newer, or save the job's state yourself (a TERM handler)"
		return r
	}
	r.Status, r.Detail = OK, "the kernel can: hpcrun checkpoint needs criu 4.1 or newer in the image"
	if p := e.Criu; p != "" {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			r.Status, r.Detail = Warn, fmt.Sprintf("criu %s (%s) is not an executable file", p, e.CriuFrom)
			r.Fix = "point it at a static criu 4.1 or newer, or unset it to use the image's"
			return r
		}
		r.Detail = fmt.Sprintf("the kernel can, with criu %s (%s)", p, e.CriuFrom)
	}
	return r
}

func config(e Env) Result {
	r := Result{Name: "config", Status: OK}
	switch {
	case e.ConfigErr != nil:
		r.Status, r.Detail = Fail, termsafe.Line(e.ConfigErr.Error())
		r.Fix = "correct the file and line named above; `hpcrun config` prints what loads"
	case len(e.ConfigRead) == 0:
		r.Detail = "no config files; the built-in defaults"
	default:
		r.Detail = "read " + strings.Join(e.ConfigRead, ", ")
	}
	return r
}

// Report prints the results: as Write does with the summary after them,
// or with asJSON as one JSON document, for scripts.
func Report(w io.Writer, rs []Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Failed  bool     `json:"failed"`
			Summary string   `json:"summary"`
			Results []Result `json:"results"`
		}{Failed(rs), Summary(rs), rs})
	}
	if err := Write(w, rs); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, Summary(rs))
	return err
}
