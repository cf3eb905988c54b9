package rawclone

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary, spawned with helperEnv set, reports on its standard
// output what the child of a Spawn sees: its descriptors and their files,
// its signal dispositions and mask, its capabilities, its session and its
// parent-death signal.
const helperEnv = "RAWCLONE_TEST_HELPER=1"

func TestMain(m *testing.M) {
	if len(os.Environ()) > 0 && os.Environ()[0] == helperEnv {
		helper()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper() {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for fd := 0; fd < 64; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		fmt.Fprintf(w, "fd %d %d:%d cloexec=%v\n", fd, st.Dev, st.Ino, flags&unix.FD_CLOEXEC != 0)
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		for _, k := range []string{"SigBlk:", "SigIgn:", "CapAmb:", "CapInh:"} {
			if strings.HasPrefix(line, k) {
				fmt.Fprintln(w, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	sid, _ := unix.Getsid(0)
	fmt.Fprintf(w, "leader %v\n", sid == os.Getpid())
	var sig int32
	unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0)
	fmt.Fprintf(w, "pdeathsig %d\n", sig)
}

// spawnHelper spawns the helper with a, files[1] replaced by a pipe, and
// returns its report.
func spawnHelper(t *testing.T, a *Attr) map[string]string {
	t.Helper()
	a.Path, a.Argv, a.Env = "/proc/self/exe", []string{"helper"}, []string{helperEnv}
	if a.Files == nil {
		a.Files = []int{0, -1, 2}
	}
	out := spawnOutput(t, a)
	report := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k == "fd" {
			n, rest, _ := strings.Cut(v, " ")
			k, v = "fd"+n, rest
		}
		report[k] = v
	}
	return report
}

// spawnOutput spawns a with a pipe as a.Files[1], and returns what the
// child wrote to it once the child has exited 0.
func spawnOutput(t *testing.T, a *Attr) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a.Files[1] = int(w.Fd())
	syscall.ForkLock.Lock()
	pid, errno := Spawn(a)
	syscall.ForkLock.Unlock()
	w.Close()
	if errno != 0 {
		t.Fatalf("Spawn: %v", syscall.Errno(errno))
	}
	out, _ := io.ReadAll(r)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("%s: %v, status %v\n%s", a.Path, err, ws, out)
	}
	return strings.TrimSpace(string(out))
}

func fileID(t *testing.T, fd int) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// TestSpawnFiles: each Files[i] becomes descriptor i, open across the
// exec, including where the mapping crosses itself (a low descriptor
// wanted at a high number and the other way round); the copies made on
// the way do not survive the exec.
func TestSpawnFiles(t *testing.T) {
	var opened []int
	open := func(name string) int {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		opened = append(opened, int(f.Fd()))
		return int(f.Fd())
	}
	a, b, c := open("/dev/null"), open("/proc/self/exe"), open("/")
	// c at 0, the pipe at 1, stdin at 2 (below its index: it moves), b at
	// 3, a at 4, and b again at 5.
	files := []int{c, -1, 0, b, a, b}
	report := spawnHelper(t, &Attr{Files: files})
	for i, f := range files {
		if i == 1 {
			continue
		}
		want := fileID(t, f) + " cloexec=false"
		if got := report["fd"+strconv.Itoa(i)]; got != want {
			t.Errorf("fd %d in the child = %q, want %q (the caller's %d)", i, got, want, f)
		}
	}
	// Above them: only what the caller itself passes on to every exec
	// (what is close-on-exec in the child, the child opened itself).
	for fd := len(files); fd < 64; fd++ {
		got, ok := report["fd"+strconv.Itoa(fd)]
		if !ok || strings.HasSuffix(got, "cloexec=true") {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			t.Errorf("fd %d leaked into the child: %s", fd, got)
		}
	}
}

// TestSpawnSignals: the child starts as after a plain exec of the caller:
// the Go runtime's handlers are gone, an ignored signal stays ignored, the
// caller's mask is back, and the child leads a session with its
// parent-death signal set.
func TestSpawnSignals(t *testing.T) {
	// The mask is a thread's: compare on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	signal.Ignore(syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGUSR1)
	defer signal.Stop(caught)
	report := spawnHelper(t, &Attr{Pdeathsig: SIGKILL})
	ign, err := strconv.ParseUint(report["SigIgn:"], 16, 64)
	if err != nil {
		t.Fatalf("SigIgn: %q", report["SigIgn:"])
	}
	if ign&(1<<(syscall.SIGHUP-1)) == 0 {
		t.Errorf("SIGHUP, ignored by the caller, is not ignored in the child (SigIgn %x)", ign)
	}
	if ign&(1<<(syscall.SIGUSR1-1)) != 0 {
		t.Errorf("SIGUSR1, caught by the caller, is ignored in the child (SigIgn %x)", ign)
	}
	var mask unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, nil, &mask); err != nil {
		t.Fatal(err)
	}
	if got, want := report["SigBlk:"], fmt.Sprintf("%016x", mask.Val[0]); got != want {
		t.Errorf("the child's mask = %s, want the caller's, %s", got, want)
	}
	if report["leader"] != "true" {
		t.Error("the child does not lead a session")
	}
	if report["pdeathsig"] != "9" {
		t.Errorf("the child's parent-death signal = %s, want 9", report["pdeathsig"])
	}
	// The caller's own mask is back too.
	var after unix.Sigset_t
	unix.PthreadSigmask(unix.SIG_SETMASK, nil, &after)
	if after != mask {
		t.Errorf("the caller's mask changed: %x, was %x", after.Val[0], mask.Val[0])
	}
}

// TestSpawnUserNS: in a new user namespace, the child holds InitCaps as
// ambient capabilities across the exec, as the init needs them.
func TestSpawnUserNS(t *testing.T) {
	a := &Attr{Flags: CloneNewUser, Caps: InitCaps}
	syscall.ForkLock.Lock()
	pid, errno := Spawn(&Attr{Path: "/bin/true", Argv: []string{"true"}, Flags: CloneNewUser, Files: []int{0, 1, 2}})
	syscall.ForkLock.Unlock()
	if errno != 0 {
		if os.Getenv("HPCRUN_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("HPCRUN_TEST_REQUIRE_USERNS=1 but a clone of a user namespace failed: %v", syscall.Errno(errno))
		}
		t.Skipf("no user namespaces here (set HPCRUN_TEST_REQUIRE_USERNS=1 to fail instead): %v", syscall.Errno(errno))
	}
	unix.Wait4(pid, nil, 0, nil)
	report := spawnHelper(t, a)
	var want uint64
	for _, c := range InitCaps {
		want |= 1 << c
	}
	if got, want := report["CapAmb:"], fmt.Sprintf("%016x", want); got != want {
		t.Errorf("the child's ambient capabilities = %s, want %s", got, want)
	}
}

// TestSpawnFails: a child that cannot exec reports why, and is reaped.
func TestSpawnFails(t *testing.T) {
	syscall.ForkLock.Lock()
	_, errno := Spawn(&Attr{Path: "/no/such/file", Argv: []string{"x"}, Files: []int{0, 1, 2}})
	syscall.ForkLock.Unlock()
	if syscall.Errno(errno) != syscall.ENOENT {
		t.Fatalf("Spawn of a missing file: %v, want ENOENT", syscall.Errno(errno))
	}
	if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
		t.Errorf("a child is left unreaped (wait4: %v)", err)
	}
	for _, a := range []*Attr{
		{Path: "/bin/\x00true"},
		{Path: "/bin/true", Argv: []string{"a\x00b"}},
		{Path: "/bin/true", Files: []int{0, -1, 2}},
		{Path: "/bin/true", Caps: []uintptr{64}},
	} {
		if _, errno := Spawn(a); syscall.Errno(errno) != syscall.EINVAL {
			t.Errorf("Spawn(%+v): %v, want EINVAL", a, syscall.Errno(errno))
		}
	}
}

// TestHelpers covers what package first uses before the rest of Go's
// library is initialized.
func TestHelpers(t *testing.T) {
	b, ok := ReadFile("/proc/self/cmdline", 1<<20)
	if want := strings.Join(os.Args, "\x00") + "\x00"; !ok || string(b) != want {
		t.Errorf("ReadFile(/proc/self/cmdline) = %q, %v; want %q", b, ok, want)
	}
	if _, ok := ReadFile("/proc/self/cmdline", 4); ok {
		t.Error("ReadFile past its limit succeeded")
	}
	if _, ok := ReadFile("/no/such/file", 1<<20); ok {
		t.Error("ReadFile of a missing file succeeded")
	}
	r, w, errno := Pipe()
	if errno != 0 {
		t.Fatal(syscall.Errno(errno))
	}
	for _, fd := range []int{r, w} {
		if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("pipe end %d is not close-on-exec", fd)
		}
	}
	if IsTerminal(r) {
		t.Error("a pipe is a terminal")
	}
	Close(r)
	Close(w)
	if _, err := unix.FcntlInt(uintptr(r), unix.F_GETFD, 0); err == nil {
		t.Error("Close left the descriptor open")
	}
	now := Now()
	var ref unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ref)
	if d := ref.Nano() - now; now <= 0 || d < 0 || d > 1e9 {
		t.Errorf("Now() = %d, %dns off the monotonic clock", now, d)
	}
}

// shOutput spawns sh -c script with a, and returns what it printed.
func shOutput(t *testing.T, a *Attr, script string) string {
	t.Helper()
	a.Path, a.Argv = "/bin/sh", []string{"sh", "-c", script}
	return spawnOutput(t, a)
}

// TestSpawnNofile: the child gets the soft limit on open files that the
// process started with, not the one Go's package syscall raised it to.
// (In this test binary the package's own tests make package syscall
// initialize first, so the limit it started with is set here.)
func TestSpawnNofile(t *testing.T) {
	soft, hard := nofile()
	if hard < 64 {
		t.Skipf("hard RLIMIT_NOFILE %d", hard)
	}
	defer func(o [2]uint64) { origNofile = o }(origNofile)
	origNofile = [2]uint64{soft / 2, hard}
	if got := shOutput(t, &Attr{Files: []int{0, -1, 2}}, "ulimit -Sn"); got != strconv.FormatUint(soft/2, 10) {
		t.Errorf("the child's soft RLIMIT_NOFILE = %s, want %d (the process's is %d)", got, soft/2, soft)
	}
	// Where the limits are as they started, they pass as they are.
	origNofile = [2]uint64{soft, hard}
	if got := shOutput(t, &Attr{Files: []int{0, -1, 2}}, "ulimit -Sn"); got != strconv.FormatUint(soft, 10) {
		t.Errorf("the child's soft RLIMIT_NOFILE = %s, want %d", got, soft)
	}
}

// TestSpawnFewFiles: standard streams not given are closed, as
// syscall.ForkExec does.
func TestSpawnFewFiles(t *testing.T) {
	if got := shOutput(t, &Attr{Files: []int{0, -1}}, "if [ -e /proc/self/fd/2 ]; then echo open; else echo closed; fi"); got != "closed" {
		t.Errorf("fd 2 of a child given two files: %s", got)
	}
}

// TestNumbers keeps the kernel's numbers, which this package spells out
// itself, equal to x/sys/unix's.
func TestNumbers(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"read", sysRead, unix.SYS_READ}, {"write", sysWrite, unix.SYS_WRITE}, {"open", sysOpen, unix.SYS_OPEN},
		{"close", sysClose, unix.SYS_CLOSE}, {"ioctl", sysIoctl, unix.SYS_IOCTL}, {"fcntl", sysFcntl, unix.SYS_FCNTL},
		{"execve", sysExecve, unix.SYS_EXECVE}, {"wait4", sysWait4, unix.SYS_WAIT4}, {"setsid", sysSetsid, unix.SYS_SETSID},
		{"capset", sysCapset, unix.SYS_CAPSET}, {"prctl", sysPrctl, unix.SYS_PRCTL},
		{"clock_gettime", sysClockGettime, unix.SYS_CLOCK_GETTIME}, {"exit_group", sysExitGroup, unix.SYS_EXIT_GROUP},
		{"dup3", sysDup3, unix.SYS_DUP3}, {"pipe2", sysPipe2, unix.SYS_PIPE2}, {"rt_sigprocmask", sysRtSigprocmsk, unix.SYS_RT_SIGPROCMASK},
		{"prlimit64", sysPrlimit64, unix.SYS_PRLIMIT64}, {"getrlimit", sysGetrlimit, unix.SYS_GETRLIMIT},
		{"RLIMIT_NOFILE", rlimitNofile, unix.RLIMIT_NOFILE}, {"CLOCK_MONOTONIC", clockMonotonic, unix.CLOCK_MONOTONIC},
		{"O_CLOEXEC", oCloexec, unix.O_CLOEXEC}, {"F_SETFD", fSetfd, unix.F_SETFD}, {"TCGETS", tcgets, unix.TCGETS},
		{"EINTR", eintr, uintptr(unix.EINTR)}, {"EINVAL", einval, uintptr(unix.EINVAL)}, {"SIGCHLD", sigchld, uintptr(unix.SIGCHLD)},
		{"CLONE_VM", cloneVM, unix.CLONE_VM}, {"CLONE_VFORK", cloneVfork, unix.CLONE_VFORK},
		{"CLONE_NEWNS", CloneNewNS, unix.CLONE_NEWNS}, {"CLONE_NEWUSER", CloneNewUser, unix.CLONE_NEWUSER},
		{"CLONE_NEWPID", CloneNewPID, unix.CLONE_NEWPID}, {"SIGKILL", SIGKILL, uintptr(unix.SIGKILL)},
		{"PR_SET_PDEATHSIG", prSetPdeathsig, unix.PR_SET_PDEATHSIG}, {"PR_CAP_AMBIENT", prCapAmbient, unix.PR_CAP_AMBIENT},
		{"PR_CAP_AMBIENT_RAISE", prCapAmbientRaise, unix.PR_CAP_AMBIENT_RAISE}, {"PR_CAPBSET_READ", prCapbsetRead, unix.PR_CAPBSET_READ},
		{"CAP_SYS_PTRACE", capSysPtrace, unix.CAP_SYS_PTRACE}, {"CAP_CHECKPOINT_RESTORE", capCheckpointRestore, unix.CAP_CHECKPOINT_RESTORE},
		{"_LINUX_CAPABILITY_VERSION_3", capV3, unix.LINUX_CAPABILITY_VERSION_3}, {"SIG_SETMASK", sigSetmask, unix.SIG_SETMASK},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	want := []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP, unix.CAP_NET_ADMIN, unix.CAP_DAC_OVERRIDE,
		unix.CAP_FOWNER, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_CHOWN, unix.CAP_FSETID, unix.CAP_MKNOD,
		unix.CAP_NET_RAW, unix.CAP_SETFCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
		unix.CAP_SYS_PTRACE}
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err != nil {
		t.Fatal(err)
	} else if last, _ := strconv.Atoi(strings.TrimSpace(string(b))); last >= unix.CAP_CHECKPOINT_RESTORE {
		want = append(want, unix.CAP_CHECKPOINT_RESTORE)
	}
	if fmt.Sprint(InitCaps) != fmt.Sprint(want) {
		t.Errorf("InitCaps = %v, want %v", InitCaps, want)
	}
}
