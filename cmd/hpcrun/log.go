package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/netns"
	"github.com/hpcrun/hpcrun/runtime"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// logger prints -v lines, each timed from hpcrun's start, and warnings,
// which -q silences.
type logger struct {
	verbose, quiet bool
	start          time.Time
	w              io.Writer
}

func newLogger(g *globalOptions, start time.Time) *logger {
	return &logger{verbose: g.verbose, quiet: g.quiet, start: start, w: os.Stderr}
}

// warnf says something the user should know that does not stop the job.
// infof says something worth a line that is no warning.
func (l *logger) infof(format string, args ...any) {
	if !l.quiet {
		fmt.Fprintf(l.w, "hpcrun: %s\n", fmt.Sprintf(format, args...))
	}
}

func (l *logger) warnf(format string, args ...any) {
	if !l.quiet {
		// Warnings and -v lines quote images, env values and paths.
		fmt.Fprintf(l.w, "hpcrun: warning: %s\n", termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

func (l *logger) debugf(format string, args ...any) {
	if l.verbose {
		fmt.Fprintf(l.w, "hpcrun: [%7.2fms] %s\n", float64(time.Since(l.start).Microseconds())/1000,
			termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

func (l *logger) phase(what string) { l.debugf("%s", what) }

// settings logs every resolved setting of a container.
func (l *logger) settings(cfg *runtime.Config, mode netns.Mode) {
	if !l.verbose {
		return
	}
	s := cfg.Spec
	l.debugf("rootfs: %s (read-only: %v)", s.Root.Path, !cfg.WritableTmpfs)
	l.debugf("command: %s", strings.Join(s.Process.Args, " "))
	l.debugf("uid:gid inside %d:%d, host %d:%d", s.Process.User.UID, s.Process.User.GID,
		s.Linux.UIDMappings[0].HostID, s.Linux.GIDMappings[0].HostID)
	l.debugf("network: %s", mode)
	l.debugf("working directory: %s", s.Process.Cwd)
	for _, m := range s.Mounts {
		l.debugf("mount: %s", mountLine(m))
	}
	for _, f := range cfg.Files {
		l.debugf("generated: %s (%d bytes)", f.Path, len(f.Data))
	}
	l.debugf("environment: %d variables", len(s.Process.Env))
	for _, kv := range s.Process.Env {
		l.debugf("  %s", kv)
	}
	l.debugf("terminal: %v", s.Process.Terminal)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
