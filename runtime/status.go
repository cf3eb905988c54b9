package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Exit statuses of hpcrun itself, as podman and Docker use them. Anything
// else is the job's own status.
const (
	StatusFailed        = 125 // hpcrun could not run the job
	StatusNotExecutable = 126 // the command exists but cannot be executed
	StatusNotFound      = 127 // the command is not in the container
)

// Sentinel errors, for errors.Is. ExitStatus maps ErrCommandNotFound and
// ErrNotExecutable to their statuses, and the others, like any error, to
// StatusFailed; their messages carry the hint, so callers need not add one.
var (
	ErrUserNSDisabled   = errors.New("user namespaces are not available")
	ErrCommandNotFound  = errors.New("command not found")
	ErrNotExecutable    = errors.New("command not executable")
	ErrOverlayRefused   = errors.New("overlayfs refused")
	errJoinNotSupported = errors.New("joining an existing namespace is not supported")
)

// statusError is a failure that ends hpcrun with a status of its own, such
// as 128+N when the container was killed by signal N.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// ExitStatus maps an error to hpcrun's exit status; cmd/hpcrun's main ends
// with it for every error it reports.
func ExitStatus(err error) int {
	var se *statusError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &se):
		return se.code
	case errors.Is(err, ErrCommandNotFound):
		return StatusNotFound
	case errors.Is(err, ErrNotExecutable):
		return StatusNotExecutable
	default:
		return StatusFailed
	}
}

// WaitStatusCode is the shell's view of how a process ended: its exit code,
// or 128+N when signal N killed it.
func WaitStatusCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return StatusFailed
	}
}

// execError classifies why execve refused the job's command.
func execError(cmd string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%s: %w in the container (no such file, or its interpreter is missing)", cmd, ErrCommandNotFound)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOEXEC),
		errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ETXTBSY), errors.Is(err, syscall.ELIBBAD):
		return fmt.Errorf("%s: %w: %v", cmd, ErrNotExecutable, err)
	default:
		return fmt.Errorf("start %s: %w", cmd, err)
	}
}

// lookPath finds a command the way a shell would, in the PATH of the job's
// environment, inside the container. A name with a slash is used as is.
// A relative entry of PATH ("", ".") is taken in wd, the directory the
// command will start in; "" is this process's.
func lookPath(file, path, wd string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if wd != "" && !filepath.IsAbs(p) {
			p = filepath.Join(wd, p)
		}
		return file, executable(file, p)
	}
	var denied error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		if wd != "" && !filepath.IsAbs(dir) {
			dir = filepath.Join(wd, dir)
		}
		p := filepath.Join(dir, file)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if err := syscall.Access(p, 1 /* X_OK */); err != nil {
			if denied == nil {
				denied = fmt.Errorf("%s: %w: %s is not executable", file, ErrNotExecutable, p)
			}
			continue
		}
		return p, nil
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("%s: %w in the container's PATH (%s)", file, ErrCommandNotFound, path)
}

// executable checks that path p, command file, is a file this process
// may execute, as execve will, so that a missing command is reported when
// a container is created rather than when its process starts. The init
// looks after pivot_root: links resolve inside the container's root.
func executable(file, p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s: %w in the container (no such file)", file, ErrCommandNotFound)
	case err != nil:
		return fmt.Errorf("%s: %w: %v", file, ErrNotExecutable, err)
	case fi.IsDir():
		return fmt.Errorf("%s: %w: it is a directory", file, ErrNotExecutable)
	}
	if err := syscall.Access(p, 1 /* X_OK */); err != nil {
		return fmt.Errorf("%s: %w: %v", file, ErrNotExecutable, err)
	}
	return nil
}
