package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with only the standard library:
// /dev/ptmx, unlock, then the numbered slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	s, err := os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	if asOther {
		// The job, as the test user, opens nothing itself, but the tty
		// must be usable by it like a login's.
		os.Chown(name, testUID, testGID)
	}
	return m, s
}

// terminal runs a command in a new session whose controlling terminal is a
// pty, as a login shell's is, and reads what the pty shows.
type terminal struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File
	out    strings.Builder
	got    chan string
}

func startOnTerminal(t *testing.T, cmd *exec.Cmd) *terminal {
	t.Helper()
	master, slave := openPTY(t)
	return startOnPTY(t, cmd, master, slave)
}

// startOnPTY is startOnTerminal on a pty the caller opened (and set up).
func startOnPTY(t *testing.T, cmd *exec.Cmd, master, slave *os.File) *terminal {
	t.Helper()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	term := &terminal{t: t, cmd: cmd, master: master, got: make(chan string, 64)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		master.Close()
	})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				term.got <- string(buf[:n])
			}
			if err != nil { // EIO once every slave fd is closed
				close(term.got)
				return
			}
		}
	}()
	return term
}

// waitFor reads the terminal until it has shown s.
func (term *terminal) waitFor(s string) {
	term.t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(term.out.String(), s) {
		select {
		case chunk, ok := <-term.got:
			if !ok {
				term.t.Fatalf("terminal closed before %q; output %q", s, term.out.String())
			}
			term.out.WriteString(chunk)
		case <-deadline:
			term.t.Fatalf("no %q on the terminal; output %q", s, term.out.String())
		}
	}
}

// say types s.
func (term *terminal) say(s string) {
	if _, err := term.master.Write([]byte(s)); err != nil {
		term.t.Fatal(err)
	}
}

// wait waits for the command and reads what the terminal still shows.
func (term *terminal) wait() (code int, err error) {
	err = term.cmd.Wait()
	for chunk := range term.got {
		term.out.WriteString(chunk)
	}
	return exitCode(term.cmd.ProcessState), err
}

// At an interactive terminal, Ctrl-C interrupts the job once: the job's
// process group holds the terminal, so neither hpcrun nor the init passes
// on a second copy.
func TestCtrlCAtTerminal(t *testing.T) {
	t.Parallel()
	needUserns(t)
	// Busy loops without external commands: the shell runs its trap
	// within microseconds of each INT, so a second copy (forwarded by
	// hpcrun or the init a little later) is counted, not merged.
	script := `n=0; trap 'n=$((n+1)); echo got-int-$n' INT; echo ready
while [ $n -lt 1 ]; do :; done
i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo final-$n; exit $n`
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	term := startOnTerminal(t, command(ctx, opts{}, binPath, "--rootfs", rootfsDir, "sh", "-c", script))
	term.waitFor("ready")
	term.say("\x03") // ^C, as typed
	term.waitFor("final-")
	code, err := term.wait()
	if out := term.out.String(); strings.Count(out, "got-int-") != 1 || !strings.Contains(out, "final-1") || code != 1 {
		t.Fatalf("want the job's INT trap to run exactly once and exit 1; got exit %d (%v), terminal %q", code, err, out)
	}
}

// Job control at an interactive shell: Ctrl-Z stops the job and hpcrun, the
// shell gets the terminal back and says so, and fg continues the job in the
// foreground to its end.
func TestCtrlZAndFg(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash for an interactive shell")
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	term := startOnTerminal(t, command(ctx, opts{env: []string{"PS1=$ ", "TERM=dumb"}}, bash, "--norc", "--noprofile", "-i"))
	term.say(binPath + " --rootfs " + rootfsDir + ` sh -c 'echo job-ready; i=0; while [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done; echo job-done'` + "\n")
	term.waitFor("job-ready\r\n") // printed, not just echoed as typed
	term.say("\x1a")              // ^Z
	term.waitFor("Stopped")
	term.say("echo shell-has-terminal\n")
	term.waitFor("shell-has-terminal\r\n")
	term.say("fg\n")
	term.waitFor("job-done\r\n$ ") // at the prompt again: typed keys go to the shell
	term.say("echo rc=$?\n")
	term.waitFor("rc=0\r\n") // the job's status, after fg
	term.say("exit\n")
	term.wait()
}

// setWinsize sets a terminal's window size, as a terminal emulator does
// when its window is resized.
func setWinsize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	ws := [4]uint16{rows, cols, 0, 0}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); e != 0 {
		t.Fatalf("set the window size: %v", e)
	}
}

// termios reads the modes of the terminal at path.
func termios(t *testing.T, path string) syscall.Termios {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tio syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
		t.Fatalf("TCGETS %s: %v", path, e)
	}
	return tio
}

// interactiveShell starts bash at a terminal, as a user's login shell,
// with no rc files and no line editing: what is typed is read as is.
func interactiveShell(t *testing.T, ctx context.Context) *terminal {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("no bash for an interactive shell")
	}
	return startOnTerminal(t, command(ctx, opts{env: []string{"PS1=$ ", "TERM=dumb"}}, bash, "--norc", "--noprofile", "--noediting", "-i"))
}

// legacyTIOCSTI makes sure the kernel lets a process push input into its
// controlling terminal with TIOCSTI (dev.tty.legacy_tiocsti, Linux 6.2 on),
// as many distributions' kernels do: the attack the test proves hpcrun
// proof against.
func legacyTIOCSTI(t *testing.T) {
	t.Helper()
	const knob = "/proc/sys/dev/tty/legacy_tiocsti"
	b, err := os.ReadFile(knob)
	if err != nil || strings.TrimSpace(string(b)) == "1" {
		return // older kernels always allow it
	}
	if os.Geteuid() != 0 {
		if requireUserns {
			t.Fatalf("%s is 0 and only root can set it: TIOCSTI cannot be tried", knob)
		}
		t.Skipf("%s is 0: TIOCSTI cannot be tried without root", knob)
	}
	if err := os.WriteFile(knob, []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(knob, b, 0) })
}

// A job at a terminal cannot type into the caller's shell: it runs in a
// session of its own with a terminal of its own, so TIOCSTI on the
// caller's terminal (by its inherited descriptors, /dev/tty or its path)
// is refused, and what it pushes into its own terminal goes nowhere once
// it has ended.
func TestTerminalNoInjection(t *testing.T) {
	needUserns(t)
	legacyTIOCSTI(t)
	img := pythonImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
	defer cancel()
	term := interactiveShell(t, ctx)
	callerTTY := "/dev/pts/" + ptsNumber(t, term.master)
	// The payload, split so that its echo as typed is not its output.
	attack := `import fcntl, os, termios
cmd = b"echo INJ''ECTED-$((6*7))\n"
fds = [0, 1, 2]
for p in ("/dev/tty", "` + callerTTY + `"):
    try:
        fds.append(os.open(p, os.O_RDWR | os.O_NOCTTY))
    except OSError as e:
        print("open", p, e)
for fd in fds:
    try:
        for c in cmd:
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        print("pushed into", os.ttyname(fd))
    except OSError as e:
        print("refused", os.ttyname(fd), e.errno)
print("job-tty", os.ttyname(0), flush=True)
`
	term.waitFor("$ ")
	term.say(binPath + " --image " + img + " python3 -c '" + strings.ReplaceAll(attack, "'", `'\''`) + "'; echo hpcrun-rc=$?\n")
	term.waitFor("hpcrun-rc=0")
	term.say("echo shell-after-$((1+1))\n")
	term.waitFor("shell-after-2\r\n")
	term.say("exit\n")
	term.wait()
	out := term.out.String()
	if !strings.Contains(out, "hpcrun-rc=0") || !strings.Contains(out, "job-tty ") {
		t.Fatalf("the job did not run: %q", out)
	}
	if strings.Contains(out, "INJECTED-42") {
		t.Fatalf("the job's TIOCSTI reached the caller's shell, which ran it: %q", out)
	}
	if !strings.Contains(out, "refused "+callerTTY+" 1\r\n") {
		t.Errorf("TIOCSTI into the caller's %s by its path was not refused with EPERM: %q", callerTTY, out)
	}
	if strings.Contains(out, "job-tty "+callerTTY+"\r\n") {
		t.Errorf("the job's terminal is the caller's %s: %q", callerTTY, out)
	}
}

// ptsNumber is the number of the pty whose master is m.
func ptsNumber(t *testing.T, m *os.File) string {
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	return fmt.Sprint(n)
}

// At a prompt, `hpcrun … >out 2>err` keeps the two streams apart and
// byte-exact: only stdin, the terminal, is relayed; the files stay files.
func TestTerminalRedirectedOutput(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	dir := tempDirOwned(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
	defer cancel()
	term := interactiveShell(t, ctx)
	job := `import os, sys
os.write(1, b"out\n\x00\xff\r\nno newline at the end")
os.write(2, b"err\n\r\x1b[1m")
print("stdin-tty", os.isatty(0), "stdout-tty", os.isatty(1), file=sys.stderr)`
	term.waitFor("$ ")
	// r''c: its echo as typed is not its output.
	term.say(fmt.Sprintf("%s --image %s python3 -c '%s' >%s/out 2>%s/err; echo r''c=$?\n", binPath, img, job, dir, dir))
	term.waitFor("rc=")
	term.waitFor("\r\n$ ")
	term.say("exit\n")
	term.wait()
	if !strings.Contains(term.out.String(), "rc=0\r\n") {
		t.Fatalf("hpcrun failed: %q", term.out.String())
	}
	out, _ := os.ReadFile(dir + "/out")
	errb, _ := os.ReadFile(dir + "/err")
	if want := "out\n\x00\xff\r\nno newline at the end"; string(out) != want {
		t.Errorf("stdout: got %q, want %q", out, want)
	}
	if want := "err\n\r\x1b[1mstdin-tty True stdout-tty False\n"; string(errb) != want {
		t.Errorf("stderr: got %q, want %q", errb, want)
	}
}

// A window resize reaches the job: its terminal starts with the caller's
// size and follows it.
func TestTerminalResize(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
	defer cancel()
	master, slave := openPTY(t)
	setWinsize(t, master, 30, 100)
	script := `echo size-$(stty size); while [ "$(stty size)" = "30 100" ]; do sleep 0.05; done; echo size-$(stty size)`
	term := startOnPTY(t, command(ctx, opts{}, binPath, "--image", img, "sh", "-c", script), master, slave)
	term.waitFor("size-30 100")
	setWinsize(t, term.master, 40, 120)
	term.waitFor("size-40 120")
	if code, err := term.wait(); code != 0 {
		t.Fatalf("exit %d (%v): %q", code, err, term.out.String())
	}
}

// An interactive shell in the container has job control: no warning,
// `sleep 100 &` then fg brings it to the foreground, where Ctrl-C ends it.
func TestTerminalShellJobControl(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
	defer cancel()
	term := startOnTerminal(t, command(ctx, opts{env: []string{"PS1=in$ ", "TERM=dumb"}}, binPath, "--image", img,
		"bash", "--norc", "--noprofile", "-i"))
	term.waitFor("in$ ")
	term.say("sleep 100 &\n")
	term.waitFor("in$ ")
	term.say("jobs; fg\n")
	term.waitFor("sleep 100\r\n") // what fg prints
	time.Sleep(200 * time.Millisecond)
	term.say("\x03")
	term.waitFor("in$ ")
	term.say("echo inner-rc=$?\n")
	term.waitFor("inner-rc=130\r\n")
	term.say("exit\n")
	code, err := term.wait()
	out := term.out.String()
	if strings.Contains(out, "no job control") || strings.Contains(out, "cannot set terminal process group") {
		t.Errorf("the shell in the container has no job control: %q", out)
	}
	if code != 0 {
		t.Errorf("exit %d (%v): %q", code, err, out)
	}
}

// The caller's terminal gets its modes back however the job ends: killed
// by SIGKILL from outside, or hpcrun sent SIGTERM.
func TestTerminalRestored(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	for _, c := range []struct{ name, marker string }{{"job SIGKILLed", "restore-kill"}, {"hpcrun SIGTERMed", "restore-term"}} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
			defer cancel()
			master, slave := openPTY(t)
			tty := slave.Name()
			before := termios(t, tty) // the caller's modes
			term := startOnPTY(t, command(ctx, opts{}, binPath, "--image", img, "python3", "-c",
				`import time; print("ready", flush=True); time.sleep(1000)`, c.marker), master, slave)
			term.waitFor("ready")
			if during := termios(t, tty); during.Lflag&syscall.ICANON != 0 {
				t.Fatalf("the caller's terminal is not in raw mode while relayed: lflag %#o", during.Lflag)
			}
			if c.marker == "restore-term" {
				term.cmd.Process.Signal(syscall.SIGTERM)
			} else {
				pids := pidsOf(t, "python3", c.marker)
				if len(pids) != 1 {
					t.Fatalf("want one job process with %s, got %v", c.marker, pids)
				}
				syscall.Kill(pids[0], syscall.SIGKILL)
			}
			code, _ := term.wait()
			if want := map[string]int{"restore-kill": 137, "restore-term": 143}[c.marker]; code != want {
				t.Errorf("exit %d, want %d: %q", code, want, term.out.String())
			}
			if after := termios(t, tty); after != before {
				t.Errorf("the caller's terminal modes were not restored:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

// pidsOf lists the live processes that run arg0 with arg among its
// arguments.
func pidsOf(t *testing.T, arg0, arg string) []int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid := 0
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.HasPrefix(string(b), arg0+"\x00") || !strings.Contains("\x00"+string(b), "\x00"+arg+"\x00") {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue // dead already
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// Nothing the job starts outlives hpcrun: not a process in a session of
// its own, nor one that ignores SIGHUP; whether the job ends by itself or
// hpcrun is killed.
func TestTerminalNothingOutlives(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	for _, c := range []struct {
		name, tag string
		kill      bool
	}{{"job ends", "4711", false}, {"hpcrun killed", "4712", true}} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
			defer cancel()
			script := `setsid sleep 10` + c.tag + ` & nohup sleep 20` + c.tag + ` >/dev/null 2>&1 & sleep 0.2; echo ready; read x`
			term := startOnTerminal(t, command(ctx, opts{}, binPath, "--image", img, "sh", "-c", script))
			term.waitFor("ready")
			if got := len(pidsOf(t, "sleep", "10"+c.tag)) + len(pidsOf(t, "sleep", "20"+c.tag)); got != 2 {
				t.Fatalf("want the job's two background processes running, got %d", got)
			}
			if c.kill {
				term.cmd.Process.Kill()
			} else {
				term.say("\n")
			}
			term.wait()
			deadline := time.Now().Add(2 * time.Second)
			for {
				left := append(pidsOf(t, "sleep", "10"+c.tag), pidsOf(t, "sleep", "20"+c.tag)...)
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("processes the job started outlived hpcrun: %v", left)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// exec -t at a terminal relays as a run does: only the streams that are
// terminals go through the process's pty, so `2>err` stays a file of its
// own, and the caller's terminal gets its modes back however hpcrun ends,
// also when what reads its stdout goes away (`| head -n1`).
func TestExecTerminalRelay(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	name := fmt.Sprintf("exec-tty-%d", os.Getpid())
	mustRun(t, opts{}, "--name", name, "--detach", "--image", img, "sleep", "1000")
	t.Cleanup(func() { runRaw(opts{}, binPath, "delete", "--force", name) })
	dir := tempDirOwned(t)
	for _, c := range []struct{ name, script string }{
		{"stderr to a file", fmt.Sprintf(`%s exec -t %s sh -c 'echo "out-$(tty)"; echo err-line >&2' 2>%s/err; echo r''c=$?`, binPath, name, dir)},
		{"stdout to a closed pipe", fmt.Sprintf(`%s exec -t %s sh -c 'while :; do echo y; done' | head -n1; echo r''c=$?`, binPath, name)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
			defer cancel()
			master, slave := openPTY(t)
			tty := slave.Name()
			before := termios(t, tty)
			term := startOnPTY(t, command(ctx, opts{}, "sh", "-c", c.script), master, slave)
			term.waitFor("rc=")
			code, err := term.wait()
			out := term.out.String()
			if code != 0 {
				t.Fatalf("exit %d (%v): %q", code, err, out)
			}
			if after := termios(t, tty); after != before {
				t.Errorf("the caller's terminal modes were not restored:\nbefore %+v\nafter  %+v\nterminal %q", before, after, out)
			}
			if c.name != "stderr to a file" {
				return
			}
			if !strings.Contains(out, "out-/dev/pts/") || !strings.Contains(out, "rc=0") {
				t.Errorf("the process's stdout is not its own terminal, relayed: %q", out)
			}
			if b, _ := os.ReadFile(dir + "/err"); string(b) != "err-line\n" || strings.Contains(out, "err-line") {
				t.Errorf("stderr went through the terminal, not to the file: file %q, terminal %q", b, out)
			}
		})
	}
}
