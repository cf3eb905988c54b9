package launch

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Host is what a job's building needs to know about the caller and the
// node. Tests fill it by hand.
type Host struct {
	Env       []string
	Cwd       string // as the shell knows it ($PWD); "" when it no longer exists
	PhysCwd   string // with symlinks resolved
	UID, GID  uint32
	Exists    func(string) bool
	Real      func(string) string // a path with its symlinks resolved; nil: as it is
	TTY       bool                // stdin is a terminal
	StderrTTY bool                // progress can be drawn
}

// HostFacts reads the Host of this process.
func HostFacts() Host {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = ""
	}
	phys, err := filepath.EvalSymlinks(cwd)
	if err != nil {
		phys = cwd
	}
	return Host{
		Env:     os.Environ(),
		Cwd:     cwd,
		PhysCwd: phys,
		UID:     uint32(os.Getuid()),
		GID:     uint32(os.Getgid()),
		Exists:  func(p string) bool { _, err := os.Stat(p); return err == nil },
		Real: func(p string) string {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				return r
			}
			return p
		},
		TTY:       IsTerminal(os.Stdin),
		StderrTTY: IsTerminal(os.Stderr),
	}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
