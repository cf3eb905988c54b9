// Package e2e runs the built hpcrun binary, as an unprivileged user, against a
// tiny busybox rootfs and checks the behaviour promised by the CLI contract.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"github.com/hpcrun/hpcrun/internal/treesnap"
	"golang.org/x/sys/unix"
)

// standardPath is the PATH a --rootfs container gets, whatever the host has.
const standardPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// hostBusybox is Debian's static busybox (package busybox-static).
const hostBusybox = "/bin/busybox"

// Fixtures shared by all tests; set up once by TestMain.
var (
	baseDir   string // private scratch dir under /tmp, mode 0755
	outerDir  string // private scratch dir outside /tmp, /var/tmp and system dirs, mode 0755
	sysDir    string // private scratch dir under /run (a host system dir); "" when not root
	binPath   string // the built hpcrun
	rootfsDir string // busybox rootfs owned by root (by the test user when not root)
	homeDir   string // default $HOME of the test user, owned by it, under /tmp
	workDir   string // default cwd of every run, owned by the test user, under /tmp
	outerHome string // a $HOME outside /tmp, for the tests of the $HOME bind

	testUID, testGID  int    // the unprivileged caller
	testUser, testGrp string // their host names
	asOther           bool   // true when we are root and switch to testUID
	setgroupsDenied   bool   // in a user namespace with setgroups denied: keep our groups
	usernsErr         error  // why user namespaces are unusable, nil if they work
	requireUserns     = os.Getenv("HPCRUN_TEST_REQUIRE_USERNS") == "1"
	defaultCmdTimeout = 30 * time.Second
	hostNetNS         string // /proc/self/ns/net of the test process
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		for _, d := range []string{baseDir, outerDir, sysDir} {
			if d != "" {
				os.RemoveAll(d)
			}
		}
		os.Exit(1)
	}
	code := m.Run()
	if err := stopSlurm(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e cleanup: %v\n", err)
		code = 1
	}
	for _, d := range []string{baseDir, outerDir, sysDir} {
		if d == "" {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(os.Stderr, "e2e cleanup: %v\n", err)
		}
	}
	os.Exit(code)
}

func setup() error {
	var err error
	// Not named hpcrun* so that the "no stray /tmp/hpcrun* files" checks only
	// see what the runtime itself leaves behind.
	baseDir, err = os.MkdirTemp("/tmp", "e2e-hpcrun-")
	if err != nil {
		return err
	}
	// MkdirTemp makes 0700; the test user must be able to walk into it.
	if err := os.Chmod(baseDir, 0o755); err != nil {
		return err
	}

	// Inside a user namespace with setgroups denied, root can still switch
	// uid but not drop supplementary groups.
	b, _ := os.ReadFile("/proc/self/setgroups")
	setgroupsDenied = strings.TrimSpace(string(b)) == "deny"
	if os.Geteuid() == 0 {
		asOther = true
		testUID, testGID = 65534, 65534
	} else {
		testUID, testGID = os.Getuid(), os.Getgid()
	}
	if u, err := user.LookupId(strconv.Itoa(testUID)); err == nil {
		testUser = u.Username
	} else {
		return fmt.Errorf("look up uid %d: %w", testUID, err)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(testGID)); err == nil {
		testGrp = g.Name
	} else {
		return fmt.Errorf("look up gid %d: %w", testGID, err)
	}
	if hostNetNS, err = os.Readlink("/proc/self/ns/net"); err != nil {
		return err
	}

	// Build the binary.
	repo, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	binDir := filepath.Join(baseDir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		return err
	}
	binPath = filepath.Join(binDir, "hpcrun")
	// As `make build` does: hpcrun with its image unpacker embedded.
	build := exec.Command("make", "-s", "build", "BIN="+binPath)
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("the hpcrun binary did not build: make build: %v\n%s", err, out)
	}
	if err := os.Chmod(binPath, 0o755); err != nil {
		return err
	}

	// The shared rootfs belongs to root, so the test user cannot change it.
	rootfsDir = filepath.Join(baseDir, "rootfs")
	if err := buildRootfs(rootfsDir, 0, 0); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}

	homeDir = filepath.Join(baseDir, "home")
	workDir = filepath.Join(baseDir, "work")

	// The tests of the $HOME and cwd binds use dirs outside /tmp, which
	// hpcrun binds anyway, so that seeing them inside proves they were bound
	// themselves. Other tests stay under /tmp so that a broken $HOME or cwd
	// bind fails only those tests.
	outers := []string{"/srv", "/mnt", "/opt"} // not system dirs hpcrun may skip
	if !asOther {
		c, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		os.MkdirAll(c, 0o755)
		outers = []string{c}
	}
	for _, o := range outers {
		if outerDir, err = os.MkdirTemp(o, "e2e-hpcrun-"); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("make a scratch dir outside /tmp in one of %q: %w", outers, err)
	}
	if err := os.Chmod(outerDir, 0o755); err != nil {
		return err
	}
	if asOther {
		// Optional: the test that needs it skips without it.
		if d, err := os.MkdirTemp("/run", "e2e-hpcrun-"); err == nil {
			sysDir = d
			if err := os.Chmod(sysDir, 0o755); err != nil {
				return err
			}
		}
	}
	outerHome = filepath.Join(outerDir, "home")
	for _, d := range []string{homeDir, workDir, outerHome} {
		if err := mkdirOwned(d); err != nil {
			return err
		}
	}

	usernsErr = probeUserns()
	if usernsErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: user namespaces unusable: %v\n", usernsErr)
	}
	return nil
}

// mkdirOwned makes a 0755 dir owned by the test user.
func mkdirOwned(d string) error {
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return err
	}
	if asOther {
		return os.Chown(d, testUID, testGID)
	}
	return nil
}

// tempDirOwned returns a fresh dir under /tmp owned by the test user, removed
// after t.
func tempDirOwned(t *testing.T) string {
	t.Helper()
	return tempDirOwnedIn(t, baseDir)
}

// tempDirOwnedIn is tempDirOwned in parent.
func tempDirOwnedIn(t *testing.T, parent string) string {
	t.Helper()
	d, err := os.MkdirTemp(parent, "t-")
	if err != nil {
		t.Fatal(err)
	}
	if err := mkdirOwned(d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// probeUserns tries what hpcrun needs, independently of hpcrun: a user, mount
// and pid namespace created by the test user.
func probeUserns() error {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		// Fall back to hpcrun itself.
		r := runRaw(opts{}, binPath, "--rootfs", rootfsDir, "true")
		if r.err != nil || r.code != 0 {
			return fmt.Errorf("no unshare(1), and hpcrun --rootfs R true gave %s", r)
		}
		return nil
	}
	r := runRaw(opts{}, unshare, "--user", "--map-root-user", "--mount", "--pid", "--fork", "true")
	if r.err != nil || r.code != 0 {
		return fmt.Errorf("unshare -Urmpf true as uid %d: %s", testUID, r)
	}
	return nil
}

// needUserns skips (or fails, in CI) a test that cannot work without user
// namespaces.
func needUserns(t *testing.T) {
	t.Helper()
	if usernsErr == nil {
		return
	}
	if requireUserns {
		t.Fatalf("HPCRUN_TEST_REQUIRE_USERNS=1 but user namespaces are unusable: %v", usernsErr)
	}
	t.Skipf("user namespaces unusable (set HPCRUN_TEST_REQUIRE_USERNS=1 to fail instead): %v", usernsErr)
}

// buildRootfs makes a minimal busybox image at dir, every entry owned by
// uid:gid (when we can chown), dirs 0755, files 0644.
func buildRootfs(dir string, uid, gid int) error {
	dirs := []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin",
		"etc", "proc", "sys", "dev", "tmp", "var/tmp", "home", "root", "run"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	bb, err := os.ReadFile(hostBusybox)
	if err != nil {
		return fmt.Errorf("read %s (install busybox-static): %w", hostBusybox, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(hostBusybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, name := range strings.Fields(string(list)) {
		if name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", name)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":      "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":       "root:x:0:\n",
		"etc/hosts":       "",
		"etc/resolv.conf": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	// A program named like hpcrun's subcommand, to prove CMD is not parsed.
	if err := os.WriteFile(filepath.Join(dir, "bin/spec"), []byte("#!/bin/sh\necho ran-spec\n"), 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
		case d.IsDir():
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		case p == filepath.Join(dir, "bin/busybox") || p == filepath.Join(dir, "bin/spec"):
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		default:
			if err := os.Chmod(p, 0o644); err != nil {
				return err
			}
		}
		if os.Geteuid() == 0 {
			return os.Lchown(p, uid, gid)
		}
		return nil
	})
}

// ownedRootfs returns a private copy of the rootfs owned by the test user, so
// that the test user could modify it if hpcrun let the job (or itself) write
// there. Tests that check "rootfs unchanged" use it, otherwise the file
// permissions alone would make them pass.
func ownedRootfs(t *testing.T) string {
	t.Helper()
	d := filepath.Join(tempDirOwned(t), "rootfs")
	if err := buildRootfs(d, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	return d
}

// opts controls how a command is started as the test user.
type opts struct {
	env     []string // added to (and overriding) the controlled base env
	dir     string   // cwd; workDir if empty
	timeout time.Duration
	asRoot  bool   // run with our own credentials (root) rather than the test user
	uid     int    // when not 0, run as this uid (and gid) rather than the test user; needs root
	stdin   string // fed to the command; empty: no stdin (/dev/null)
	// files sends stdout and stderr to files rather than pipes, for a
	// command that leaves a process holding them (hpcrun create).
	files bool
	// cgroupFD, when not 0, is an open cgroup v2 dir to start the command in.
	cgroupFD int
}

// result is what a finished command gave.
type result struct {
	args           []string
	stdout, stderr string
	code           int // exit status, or 128+N if killed by signal N
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("%q: exit %d, err %v\nstdout: %q\nstderr: %q", r.args, r.code, r.err, r.stdout, r.stderr)
}

// hasClone3 reports whether the kernel has clone3 (Linux 5.3), which Go
// needs to start a process in a cgroup (SysProcAttr.UseCgroupFD). An empty
// clone3 fails with EINVAL where it exists, and starts nothing.
var hasClone3 = sync.OnceValue(func() bool {
	_, _, errno := syscall.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	return errno != syscall.ENOSYS
})

// baseEnv is the controlled environment of every run. The test switch
// of hpcrun's kernel fallbacks passes through, so that
// HPCRUN_TEST_FALLBACK=pidfd,... go test ./e2e/ runs the suite on them.
func baseEnv() []string {
	return append([]string{"HOME=" + homeDir, "USER=" + testUser, "PATH=/usr/bin:/bin"}, fallback.Environ()...)
}

// command prepares name args as the test user, with the controlled env.
func command(ctx context.Context, o opts, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(baseEnv(), o.env...) // exec keeps the last of duplicates
	cmd.Dir = o.dir
	if cmd.Dir == "" {
		cmd.Dir = workDir
	}
	if asOther && !o.asRoot {
		uid, gid := testUID, testGID
		if o.uid != 0 {
			uid, gid = o.uid, o.uid
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{},
				NoSetGroups: setgroupsDenied},
		}
	}
	if o.cgroupFD != 0 && hasClone3() {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, o.cgroupFD
	} else if o.cgroupFD != 0 {
		// Without clone3 (make e2e-kernsim), a shell moves itself into
		// the cgroup and then becomes the command; with our credentials,
		// as clone3 would have moved it, and then the test user's.
		dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(o.cgroupFD))
		args := []string{"sh", "-c", `echo 0 >"$0/cgroup.procs" && exec "$@"`, dir}
		if c := cmd.SysProcAttr; c != nil && c.Credential != nil {
			args = append(args, "setpriv", fmt.Sprintf("--reuid=%d", c.Credential.Uid),
				fmt.Sprintf("--regid=%d", c.Credential.Gid), "--clear-groups", "--")
			c.Credential = nil
		}
		cmd.Args = append(append(args, cmd.Path), cmd.Args[1:]...)
		cmd.Path, cmd.Err = "/bin/sh", err
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runRaw runs a command to completion; it never fails the test itself.
func runRaw(o opts, name string, args ...string) result {
	if o.timeout == 0 {
		o.timeout = defaultCmdTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := command(ctx, o, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var files []*os.File
	if o.files {
		for range 2 {
			f, err := os.CreateTemp(baseDir, "out-")
			if err != nil {
				return result{args: append([]string{name}, args...), code: -1, err: err}
			}
			defer os.Remove(f.Name())
			defer f.Close()
			if asOther && !o.asRoot {
				if o.uid != 0 {
					f.Chown(o.uid, o.uid)
				} else {
					f.Chown(testUID, testGID)
				}
			}
			files = append(files, f)
		}
		cmd.Stdout, cmd.Stderr = files[0], files[1]
	}
	if o.stdin != "" {
		cmd.Stdin = strings.NewReader(o.stdin)
	}
	err := cmd.Run()
	if o.files {
		b, _ := os.ReadFile(files[0].Name())
		stdout.Write(b)
		b, _ = os.ReadFile(files[1].Name())
		stderr.Write(b)
	}
	r := result{args: append([]string{name}, args...), stdout: stdout.String(), stderr: stderr.String(), code: exitCode(cmd.ProcessState)}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.err = err
	}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("timed out after %v", o.timeout)
	}
	return r
}

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// run runs hpcrun with args as the test user; a start failure or timeout
// fails the test.
func run(t *testing.T, o opts, args ...string) result {
	t.Helper()
	r := runRaw(o, binPath, args...)
	if r.err != nil {
		t.Fatalf("running hpcrun: %s", r)
	}
	return r
}

// mustRun is run that also requires exit status 0.
func mustRun(t *testing.T, o opts, args ...string) result {
	t.Helper()
	r := run(t, o, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	return r
}

// fingerprint describes every entry under root: type and mode, size, owner,
// mtime, ctime and symlink target.
func fingerprint(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fmt.Sprintf("%v size=%d owner=%d:%d mtime=%d ctime=%d.%d", fi.Mode(), fi.Size(), st.Uid, st.Gid,
			fi.ModTime().UnixNano(), st.Ctim.Sec, st.Ctim.Nsec)
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s += " -> " + target
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("fingerprint %s: %v", root, err)
	}
	return m
}

func assertUnchanged(t *testing.T, root string, before map[string]string) {
	t.Helper()
	if diffs := treesnap.Diff(before, fingerprint(t, root)); len(diffs) > 0 {
		t.Errorf("rootfs %s changed:\n%s", root, strings.Join(diffs, "\n"))
	}
}

// lines splits output into trimmed non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// readLines streams r line by line into a channel, closed at EOF.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}
