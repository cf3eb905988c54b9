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
	term.waitFor("job-done\r\n")
	term.say("echo rc=$?\n")
	term.waitFor("rc=0\r\n") // the job's status, after fg
	term.say("exit\n")
	term.wait()
}
