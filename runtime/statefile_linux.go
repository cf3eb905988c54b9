package runtime

// The files of a container's state directory, as every reader takes them.
// The state root belongs to a user, and root reads it too (Slurm's
// slurmstepd runs state, kill and delete): whatever is there may have
// been planted to hang, flood or steer the reader.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxStateFile caps every state file read: state.json with its
// annotations, the exit status, the paused cgroup's path.
const maxStateFile = 1 << 16

// ErrBadStateFile says that a state file is not a small regular file.
var ErrBadStateFile = errors.New("is not a regular file of at most 64 KiB (a FIFO, device, symlink or huge file was put there)")

// readStateAt reads file name of the state directory dir: without
// following a symlink, without blocking (a FIFO opened O_NONBLOCK neither
// waits for a writer nor is read), only a regular file as fstat shows it,
// and at most max bytes. A missing file is fs.ErrNotExist; anything else
// that is not a small regular file is ErrBadStateFile, named.
func readStateAt(dir int, name string, max int64) ([]byte, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	switch {
	case err == unix.ENOENT:
		return nil, fs.ErrNotExist
	case err == unix.ELOOP:
		return nil, fmt.Errorf("%s %w", name, ErrBadStateFile)
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > max {
		return nil, fmt.Errorf("%s %w", name, ErrBadStateFile)
	}
	// The file may grow after the fstat: the read stops at max all the same.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: name, Err: err}
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s %w", name, ErrBadStateFile)
	}
	return b, nil
}

// parseState reads a state.json.
func parseState(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Pid < 0 || s.Members < 0 {
		return nil, fmt.Errorf("pid %d, members %d: want numbers of 0 or more", s.Pid, s.Members)
	}
	return &s, nil
}

// parseExit reads the exit file: the job's status, or -1 if unreadable.
func parseExit(b []byte) int {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 255+128 {
		return -1
	}
	return n
}

// pauseCgroupName is the cgroup that pause makes for container id.
func pauseCgroupName(id string) string { return "hpcrun-" + id }

// parsePaused reads the paused file of container id: "" for a signal
// sweep's pause, else the cgroup that pause made, which must be a clean
// absolute path right below mount (the cgroup2 mount) and named for this
// container. The text is the user's: nothing else may be taken for a
// cgroup to thaw and remove.
func parsePaused(b []byte, mount, id string) (string, error) {
	p := string(b)
	if p == "" {
		return "", nil
	}
	rel, err := filepath.Rel(mount, p)
	switch {
	case mount == "" || !filepath.IsAbs(mount):
		return "", fmt.Errorf("paused file names cgroup %q, but no cgroup v2 hierarchy is mounted", p)
	case !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, "\x00\n"):
		return "", fmt.Errorf("paused file names %q, not a clean absolute path", p)
	case err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../"):
		return "", fmt.Errorf("paused file names %q, which is not below the cgroup v2 mount %s", p, mount)
	case filepath.Base(p) != pauseCgroupName(id):
		return "", fmt.Errorf("paused file names %q, not the cgroup %s that pause makes for this container", p, pauseCgroupName(id))
	}
	return p, nil
}
