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

// At an interactive terminal, Ctrl-C interrupts the job once: the job's
// process group holds the terminal, so neither hpcrun nor the init passes
// on a second copy.
func TestCtrlCAtTerminal(t *testing.T) {
	t.Parallel()
	needUserns(t)
	master, slave := openPTY(t)
	defer master.Close()

	// Busy loops without external commands: the shell runs its trap
	// within microseconds of each INT, so a second copy (forwarded by
	// hpcrun or the init a little later) is counted, not merged.
	script := `n=0; trap 'n=$((n+1)); echo got-int-$n' INT; echo ready
while [ $n -lt 1 ]; do :; done
i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo final-$n; exit $n`
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	cmd := command(ctx, opts{}, binPath, "--rootfs", rootfsDir, "sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A new session with the pty as its controlling terminal, as a login
	// shell has; hpcrun's process group is its foreground group.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()

	var out strings.Builder
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				got <- string(buf[:n])
			}
			if err != nil { // EIO once every slave fd is closed
				close(got)
				return
			}
		}
	}()
	waitFor := func(s string) {
		deadline := time.After(10 * time.Second)
		for !strings.Contains(out.String(), s) {
			select {
			case chunk, ok := <-got:
				if !ok {
					t.Fatalf("terminal closed before %q; output %q", s, out.String())
				}
				out.WriteString(chunk)
			case <-deadline:
				t.Fatalf("no %q on the terminal; output %q", s, out.String())
			}
		}
	}
	waitFor("ready")
	if _, err := master.Write([]byte{3}); err != nil { // ^C, as typed
		t.Fatal(err)
	}
	waitFor("final-")
	err := cmd.Wait()
	for chunk := range got {
		out.WriteString(chunk)
	}
	code := exitCode(cmd.ProcessState)
	if strings.Count(out.String(), "got-int-") != 1 || !strings.Contains(out.String(), "final-1") || code != 1 {
		t.Fatalf("want the job's INT trap to run exactly once and exit 1; got exit %d (%v), terminal %q", code, err, out.String())
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
	master, slave := openPTY(t)
	defer master.Close()
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	cmd := command(ctx, opts{env: []string{"PS1=$ ", "TERM=dumb"}}, bash, "--norc", "--noprofile", "-i")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	defer cmd.Process.Kill()

	var out strings.Builder
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				got <- string(buf[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	waitFor := func(s string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !strings.Contains(out.String(), s) {
			select {
			case chunk, ok := <-got:
				if !ok {
					t.Fatalf("terminal closed before %q; output %q", s, out.String())
				}
				out.WriteString(chunk)
			case <-deadline:
				t.Fatalf("no %q on the terminal; output %q", s, out.String())
			}
		}
	}
	say := func(s string) {
		if _, err := master.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	say(binPath + " --rootfs " + rootfsDir + ` sh -c 'echo job-ready; i=0; while [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done; echo job-done'` + "\n")
	waitFor("job-ready\r\n") // printed, not just echoed as typed
	say("\x1a")              // ^Z
	waitFor("Stopped")
	say("echo shell-has-terminal\n")
	waitFor("shell-has-terminal\r\n")
	say("fg\n")
	waitFor("job-done\r\n")
	say("echo rc=$?\n")
	waitFor("rc=0\r\n") // the job's status, after fg
	say("exit\n")
	cmd.Wait()
}
