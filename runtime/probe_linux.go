package runtime

// Probes for `hpcrun check`: they try what a container's init does, in a
// throwaway child, and say which step the kernel refused and with which
// errno. The child is this binary again, as ProbeArg0, cloned into new
// namespaces exactly as Start clones the init.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/initclone"
)

// ProbeArg0 is argv[0] of the probe stage; cmd/hpcrun hands control to
// RunProbe as soon as it sees it.
const ProbeArg0 = initclone.ProbeArg0

// ProbeMountProc is the step of ProbeUserNS that mounts a fresh proc.
const ProbeMountProc = "mount a fresh proc"

// probeTimeout bounds a probe: its child only mounts a few filesystems.
const probeTimeout = 10 * time.Second

// ProbeError is a probe's failure: the step that failed, and the errno
// the kernel gave for it (0 when there was none, such as a timeout).
type ProbeError struct {
	Step  string
	Errno syscall.Errno
	Msg   string // when there is no errno: what went wrong
}

func (e *ProbeError) Error() string {
	if e.Errno == 0 {
		return e.Step + ": " + e.Msg
	}
	return e.Step + ": " + ErrnoString(e.Errno)
}

func (e *ProbeError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ErrnoString writes an errno as its name and its text: "EPERM (operation
// not permitted)".
func ErrnoString(e syscall.Errno) string {
	if name := unix.ErrnoName(e); name != "" {
		return name + " (" + e.Error() + ")"
	}
	return e.Error()
}

// ProbeUserNS tries what every container needs: a child cloned into new
// user, mount and pid namespaces, with the caller's uid and gid mapped and
// the init's ambient capabilities, that makes / a slave mount, mounts a
// tmpfs, and mounts a fresh proc (the container's /proc) as PID 1 of its
// pid namespace. nil when all of it worked.
func ProbeUserNS() error { return probe("userns") }

// ProbeOverlay tries what --writable-tmpfs needs, in the same kind of
// child: an overlay, with its upper layer in a tmpfs, mounted as the init
// mounts it (mountOverlay). Run ProbeUserNS first: this fails too where
// user namespaces do.
func ProbeOverlay() error { return probe("overlay") }

func probe(what string) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "/proc/self/exe", what)
	cmd.Args[0] = ProbeArg0
	cmd.Env = []string{"GOMAXPROCS=1"}
	cmd.Stdout = &out
	uid, gid := os.Getuid(), os.Getgid()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID,
		// The init's own map: the caller's ids, once each; an
		// unprivileged process may write no other, and only with
		// setgroups denied.
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		AmbientCaps:                initCaps,
		Pdeathsig:                  syscall.SIGKILL,
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return &ProbeError{Step: "probe " + what, Msg: fmt.Sprintf("no answer in %v", probeTimeout)}
	case errors.As(err, &ee):
		if pe := parseProbeReport(out.String()); pe != nil {
			return pe
		}
		return &ProbeError{Step: "probe " + what, Msg: fmt.Sprintf("the child ended with %v", ee.ProcessState)}
	case err != nil:
		// Go reports the clone's errno, or that of writing the id maps.
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return &ProbeError{Step: "clone(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID) with your uid mapped", Errno: errno}
		}
		return &ProbeError{Step: "start the probe", Msg: err.Error()}
	}
	return nil
}

// parseProbeReport reads the child's "STEP\nERRNO\n"; nil if malformed.
func parseProbeReport(s string) *ProbeError {
	step, num, ok := strings.Cut(strings.TrimSuffix(s, "\n"), "\n")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || step == "" {
		return nil
	}
	return &ProbeError{Step: step, Errno: syscall.Errno(n)}
}

// RunProbe is the probe's child: PID 1 of fresh namespaces. It runs the
// steps that os.Args[1] names, and exits 0 when they all worked, else 1
// after writing the failed step and its errno to stdout. It never
// returns.
func RunProbe() {
	what := ""
	if len(os.Args) > 1 {
		what = os.Args[1]
	}
	step, err := probeSteps(what)
	if err == nil {
		os.Exit(0)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		errno = unix.EIO
	}
	fmt.Fprintf(os.Stdout, "%s\n%d\n", step, int(errno))
	os.Exit(1)
}

// probeSteps does the probe's work and returns the step that failed.
func probeSteps(what string) (string, error) {
	// As the init does: nothing mounted here may reach the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return "make / a slave mount", err
	}
	// A private tmpfs to work in; it hides /tmp from this child alone.
	const work = "/tmp"
	if err := unix.Mount("hpcrun", work, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return "mount a tmpfs", err
	}
	switch what {
	case "userns":
		p := filepath.Join(work, "proc")
		if err := unix.Mkdir(p, 0o755); err != nil {
			return "mkdir in the tmpfs", err
		}
		// A proc mount fails (EPERM) where the host's /proc has parts
		// hidden under other mounts, as in many outer containers.
		if err := unix.Mount("proc", p, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return ProbeMountProc, err
		}
		return "", nil
	case "overlay":
		rootfs, rw, target := filepath.Join(work, "rootfs"), filepath.Join(work, "rw"), filepath.Join(work, "root")
		for _, d := range []string{rootfs, rw, target} {
			if err := unix.Mkdir(d, 0o755); err != nil {
				return "mkdir in the tmpfs", err
			}
		}
		// The init's layout: a tmpfs of its own for the layers.
		if err := unix.Mount("hpcrun", rw, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return "mount a tmpfs", err
		}
		for _, d := range []string{"upper", "work", "lower"} {
			if err := unix.Mkdir(rw+"/"+d, 0o755); err != nil {
				return "mkdir in the tmpfs", err
			}
		}
		if err := mountOverlay(rootfs, rw, target); err != nil {
			if !errors.Is(err, ErrOverlayRefused) {
				return "bind the lower layer", err
			}
			return "mount an overlay (upper layer in a tmpfs)", err
		}
		return "", nil
	}
	return "probe " + strconv.Quote(what), unix.EINVAL
}
