package runtime

// The fence between a job and the host's side of hpcrun: the job's
// working directory stays inside its root, and no job reaches the state
// or the control socket of any container.
//
// The working directory. The init opens it after pivot_root, refusing
// /proc/<pid>/..., /proc/self/... and /proc/thread-self/... (the magic
// links there name the init's own descriptors and directories, which a
// process of the job would inherit until its execve), and checks that
// the directory it got is the one its path names from the container's
// root: a symlink in the image to /proc/self/fd/N is caught there. The
// job and every exec'd process are then started in that very directory,
// through the init's vetted descriptor. Besides, the init holds no
// descriptor of a host directory after pivot_root: its state directory
// is bound into the init's private stage first, and it keeps only a
// descriptor of that bind, which the pivot detaches with the stage, so
// that it leads to the state directory's own files and to nothing above
// them (see buildRootfs); and the anchor that ends a container with its
// Slurm task is a pidfd, or on kernels without pidfds the parent's
// /proc/PID/stat file, not its directory (see procs.Parent).
//
// The state roots. Containers bind /tmp, /var/tmp, $HOME, the cwd and
// /dev from the host, and a state root may well lie below one of them:
// oci.conf's /tmp/hpcrun-oci-UID, and /tmp/hpcrun-UID/run on nodes with
// no XDG_RUNTIME_DIR. There is no directory the user can write that no
// container binds, so moving the state would not do. Instead every
// container hides the state roots it knows of (its own, the default one
// for its environment, /tmp/hpcrun-UID/run and oci.conf's) wherever a
// bind shows them, under an empty read-only tmpfs, as linux.maskedPaths
// are hidden. The job has no CAP_SYS_ADMIN, so it cannot unmount it.
// The defaults are made first where missing, as the state root is made
// (0700, checked by safedir), so that a container started before any
// other does not see the ones that come later; a default that cannot be
// made safely holds no container of the user's either. A state root
// elsewhere (--root) is hidden from the containers that use it, not
// from those that do not know it: SECURITY.md says so. Sockets stay
// pathname sockets: an abstract one could be reached from any job that
// shares the host's network namespace, and a peer check cannot tell the
// host caller from another container's job (both are pid 0 in the
// init's pid namespace).
//
// Exec'd processes. Each starts under a reaper (RunExecReaper), a child
// subreaper that holds the exec's connection: when the caller hangs up
// it kills everything below it, also what left its session or process
// group (setsid, daemons), as the processes reparent to it.

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hpcrun/hpcrun/internal/safedir"
	"github.com/hpcrun/hpcrun/runtime/procs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/runtime/initclone"
)

// checkCwd refuses a working directory in a process's /proc directory
// (see InProcessDir).
func checkCwd(cwd, flag string) error {
	if InProcessDir(cwd) {
		return fmt.Errorf("working directory %s is in a process's /proc directory, which can lead out of the container; pick another with %s", cwd, flag)
	}
	return nil
}

// openCwd opens cwd, inside the container after pivot_root, as the
// directory to start a process in, and returns its descriptor
// (close-on-exec). flag names the option that sets it, for the error.
func openCwd(cwd, flag string) (int, error) {
	if err := checkCwd(cwd, flag); err != nil {
		return -1, err
	}
	fd, err := unix.Open(cwd, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("working directory %s: %w; pick another with %s", cwd, err, flag)
	}
	if err := reachable(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("working directory %s %v; pick another with %s", cwd, err, flag)
	}
	return fd, nil
}

// reachable checks that directory fd is where its path says, seen from
// this process's root: the kernel names a directory outside the root
// "(unreachable)/..." or by a path that leads elsewhere from here.
func reachable(fd int) error {
	p, err := os.Readlink(fdPath(fd))
	if err != nil {
		return fmt.Errorf("cannot be checked: %w", err)
	}
	return samePlace(fd, p)
}

func samePlace(fd int, p string) error {
	var got, want unix.Stat_t
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("leads out of the container (to %q)", p)
	}
	if err := unix.Fstat(fd, &got); err != nil {
		return fmt.Errorf("cannot be checked: %w", err)
	}
	if err := unix.Stat(p, &want); err != nil || want.Dev != got.Dev || want.Ino != got.Ino {
		return fmt.Errorf("leads out of the container (to %q)", p)
	}
	return nil
}

// chdirJob makes cwd the init's working directory, for the job it starts,
// and checks with getcwd that it lies inside the root.
func chdirJob(cwd string) error {
	fd, err := openCwd(cwd, "--pwd")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		return fmt.Errorf("working directory %s: %w; pick another with --pwd", cwd, err)
	}
	wd, err := unix.Getwd()
	if err == nil {
		err = samePlace(fd, wd)
	}
	if err != nil {
		return fmt.Errorf("working directory %s %v; pick another with --pwd", cwd, err)
	}
	return nil
}

// OCIRoot is the state root that examples/slurm/oci.conf gives Slurm's
// containers of user uid.
func OCIRoot(uid int) string { return "/tmp/hpcrun-oci-" + strconv.Itoa(uid) }

// stateRoots are the state roots that a container of this process hides
// from its job: its own (stateDir's parent, if any), the default root of
// this environment, the one without XDG_RUNTIME_DIR and oci.conf's. The
// defaults are made when missing (see the top of this file).
func stateRoots(env []string, uid int, stateDir string) []string {
	var roots []string
	add := func(r string) {
		r = filepath.Clean(r)
		if real, err := filepath.EvalSymlinks(r); err == nil {
			r = real
		}
		for _, have := range roots {
			if have == r {
				return
			}
		}
		roots = append(roots, r)
	}
	if stateDir != "" {
		add(filepath.Dir(stateDir))
	}
	for _, r := range []string{DefaultRoot(env, uid), DefaultRoot(nil, uid), OCIRoot(uid)} {
		safedir.MkdirAll(r, uid)
		add(r)
	}
	return roots
}

// hiddenPaths returns where, inside the container, the binds among
// mounts show any of roots (host paths): the root's path below a bind of
// one of its parents, or the bind's destination when it binds the root
// or something in it. resolve turns a bind source into its real path.
func hiddenPaths(roots []string, mounts []specs.Mount, resolve func(string) string) []string {
	var out []string
	for _, m := range mounts {
		if !isBind(m) {
			continue
		}
		src := resolve(m.Source)
		for _, r := range roots {
			switch {
			case within(r, src):
				rel, _ := filepath.Rel(src, r)
				out = append(out, filepath.Join(m.Destination, rel))
			case within(src, r):
				out = append(out, m.Destination)
			}
		}
	}
	return out
}

// realPath is a path with its symlinks resolved, or the path cleaned.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// ExecReaperArg0 is argv[0] of the reaper that each exec'd process
// starts under; cmd/hpcrun hands control to RunExecReaper when it sees it.
const ExecReaperArg0 = initclone.ExecReaperArg0

// reaperConnFD is the exec's connection in the reaper.
const reaperConnFD = 3

// forkExecd starts an exec'd process, path with args (under cfg's
// rlimits and seccomp filter), under a reaper that holds conn, the exec's
// connection, as its fd 3. attr.Files are the process's stdio.
func forkExecd(cfg *initConfig, path string, args []string, attr *syscall.ProcAttr, conn syscall.Conn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	dup := -1
	if cerr := raw.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return 0, cerr
	}
	if err != nil {
		return 0, err
	}
	defer unix.Close(dup)
	path, args = withShim(cfg, path, args)
	a := *attr
	a.Files = append(append([]uintptr(nil), attr.Files[:3]...), uintptr(dup))
	return syscall.ForkExec("/proc/self/exe", append([]string{ExecReaperArg0, path}, args...), &a)
}

// RunExecReaper runs an exec'd process: os.Args[1] with os.Args[2:]. It
// passes on the signal bytes that the caller sends on the connection (fd
// 3); when the caller hangs up, it kills every process below it and
// exits. It exits with the process's status; what the process left
// running then is the container's, as before.
func RunExecReaper() {
	name := []byte(ExecReaperArg0 + "\x00")
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
	// Orphans below it come to it, not to the init, wherever they moved
	// (setsid, a double fork); the job cannot read or steer it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		os.Stderr.WriteString("hpcrun: exec: become a subreaper: " + err.Error() + "\n")
		os.Exit(StatusFailed)
	}
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.CloseOnExec(reaperConnFD)
	conn := os.NewFile(reaperConnFD, "exec connection")
	// Signals that reach the reaper itself (a terminal's, kill --all) are
	// the process's own business: it gets its copy. Caught, not ignored:
	// an ignored signal would stay ignored in the process.
	drop := make(chan os.Signal, 16)
	signal.Notify(drop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGTSTP, syscall.SIGPIPE)
	go func() {
		for range drop {
		}
	}()
	pid, err := syscall.ForkExec(os.Args[1], os.Args[2:], &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
	if err != nil {
		os.Stderr.WriteString("hpcrun: " + execError(os.Args[2], err).Error() + "\n")
		os.Exit(ExitStatus(execError(os.Args[2], err)))
	}
	// hungUp: the connection is gone, and the goroutine below kills all
	// and ends the reaper; the wait loop must not end it first when it
	// reaps the process, or the process's orphans would outlive the exec.
	var hungUp atomic.Bool
	go func() {
		var b [1]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				hungUp.Store(true)
				unix.Kill(pid, unix.SIGKILL)
				killBelow()
				os.Exit(128 + int(unix.SIGKILL))
			}
			unix.Kill(pid, unix.Signal(b[0]))
		}
	}()
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
		case err != nil:
			os.Exit(StatusFailed)
		case got == pid && hungUp.Load():
			select {} // the hang-up's goroutine ends the reaper
		case got == pid:
			os.Exit(WaitStatusCode(syscall.WaitStatus(ws)))
		}
	}
}

// killBelow kills every process below this one and reaps them, round by
// round until none is left: one forked meanwhile is found in the next
// round, and a killed one's children come to this subreaper.
func killBelow() {
	self := os.Getpid()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		live := procs.Descendants(self)
		for _, p := range live {
			unix.Kill(p, unix.SIGKILL)
		}
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
		}
		if len(live) == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
