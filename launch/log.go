package launch

import (
	"fmt"
	"io"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/netns"
	"github.com/hpcrun/hpcrun/runtime"
)

// Log prints -v lines, each timed from hpcrun's start, and warnings,
// which -q silences. Everything it prints goes through termsafe: the lines
// quote images, env values and paths.
type Log struct {
	Verbose, Quiet bool
	Start          time.Time
	W              io.Writer // standard error
	Out            io.Writer // standard output
}

// Infof says something worth a line that is no warning.
func (l *Log) Infof(format string, args ...any) {
	if !l.Quiet {
		fmt.Fprintf(l.W, "hpcrun: %s\n", termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

// Printf is a result the user asked for, on standard output: what -q
// silences.
func (l *Log) Printf(format string, args ...any) {
	if !l.Quiet {
		fmt.Fprintf(l.Out, "%s\n", termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

// Warnf says something the user should know that does not stop the job.
func (l *Log) Warnf(format string, args ...any) {
	if !l.Quiet {
		fmt.Fprintf(l.W, "hpcrun: warning: %s\n", termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

// warn is Warnf of one message.
func (l *Log) warn(msg string) { l.Warnf("%s", msg) }

// Debugf is a -v line.
func (l *Log) Debugf(format string, args ...any) {
	if l.Verbose {
		fmt.Fprintf(l.W, "hpcrun: [%7.2fms] %s\n", float64(time.Since(l.Start).Microseconds())/1000,
			termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

// Phase marks the end of a step of the start, for -v's clock.
func (l *Log) Phase(what string) { l.Debugf("%s", what) }

// settings logs every resolved setting of a container.
func (l *Log) settings(cfg *runtime.Config, mode netns.Mode) {
	if !l.Verbose {
		return
	}
	s := cfg.Spec
	l.Debugf("rootfs: %s (read-only: %v)", s.Root.Path, !cfg.WritableTmpfs)
	l.Debugf("command: %s", strings.Join(s.Process.Args, " "))
	l.Debugf("uid:gid inside %d:%d, host %d:%d", s.Process.User.UID, s.Process.User.GID,
		s.Linux.UIDMappings[0].HostID, s.Linux.GIDMappings[0].HostID)
	l.Debugf("network: %s", mode)
	l.Debugf("working directory: %s", s.Process.Cwd)
	for _, m := range s.Mounts {
		l.Debugf("mount: %s", mountLine(m))
	}
	for _, f := range cfg.Files {
		l.Debugf("generated: %s (%d bytes)", f.Path, len(f.Data))
	}
	l.Debugf("environment: %d variables", len(s.Process.Env))
	for _, kv := range s.Process.Env {
		l.Debugf("  %s", maskSecret(kv))
	}
	l.Debugf("terminal: %v", s.Process.Terminal)
}

// mountLine renders a spec mount for -v.
func mountLine(m specs.Mount) string {
	src := m.Source
	if m.Type != "bind" {
		src = m.Type
	}
	return fmt.Sprintf("%s <- %s (%s)", m.Destination, src, strings.Join(m.Options, ","))
}

// maskSecret hides the value of a variable whose name looks like it holds
// a secret (a token, a password, a key, AWS credentials): -v output lands
// in batch logs that others may read. The job's environment keeps it.
func maskSecret(kv string) string {
	name, _, ok := strings.Cut(kv, "=")
	if !ok || !secretName(name) {
		return kv
	}
	return name + "=(hidden)"
}

func secretName(name string) bool {
	n := strings.ToUpper(name)
	if strings.HasPrefix(n, "AWS_") {
		return true
	}
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	for _, part := range strings.Split(n, "_") {
		if part == "KEY" || part == "PASS" || part == "PW" {
			return true
		}
	}
	return false
}
