package procs

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// Fields 4 to 52 of a real line; utime 7, stime 3, starttime 8901.
	const tail = " 1 1234 1234 0 -1 4194560 1000 0 0 0 7 3 0 0 20 0 1 0 8901 2383872 236 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	for _, tc := range []struct {
		line string
		want stat
		bad  bool
	}{
		{line: "1234 (sleep) S" + tail, want: stat{comm: "sleep", state: 'S', ppid: 1, ticks: 10, start: 8901}},
		{line: "1234 (a b) c)) R" + tail, want: stat{comm: "a b) c)", state: 'R', ppid: 1, ticks: 10, start: 8901}},
		{line: "1234 (x) S 1 (y) Z" + tail, want: stat{comm: "x) S 1 (y", state: 'Z', ppid: 1, ticks: 10, start: 8901}},
		{line: "1234 ()) T" + tail, want: stat{comm: ")", state: 'T', ppid: 1, ticks: 10, start: 8901}},
		{line: "1234 (new\nline) t" + tail, want: stat{comm: "new\nline", state: 't', ppid: 1, ticks: 10, start: 8901}},
		{line: "1234 sleep S" + tail, bad: true},
		{line: "1234 (sleep) S 1 2 3\n", bad: true},
		{line: "1234 (sleep) SS" + tail, bad: true},
		{line: "1234 (sleep) S x" + tail[2:], bad: true},
		{line: "", bad: true},
	} {
		got, err := parseStat(tc.line)
		switch {
		case tc.bad && err == nil:
			t.Errorf("parseStat(%q) = %+v, want an error", tc.line, got)
		case !tc.bad && err != nil:
			t.Errorf("parseStat(%q): %v", tc.line, err)
		case got != tc.want && !tc.bad:
			t.Errorf("parseStat(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		nspid      []int
		uid        int
		bad        bool
	}{
		{name: "host", text: "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nNSpid:\t42\n", nspid: []int{42}, uid: 1000},
		{name: "nested", text: "Name:\tsh\nUid:\t65534\t0\t0\t0\nNSpid:\t4711\t3\t1\n", nspid: []int{4711, 3, 1}, uid: 65534},
		{name: "no NSpid", text: "Name:\tsh\nUid:\t0\t0\t0\t0\n", bad: true},
		{name: "no Uid", text: "Name:\tsh\nNSpid:\t1\n", bad: true},
		{name: "bad NSpid", text: "Uid:\t0\t0\t0\t0\nNSpid:\t1 x\n", bad: true},
	} {
		nspid, uid, err := parseStatus(tc.text)
		switch {
		case tc.bad && err == nil:
			t.Errorf("%s: got %v, %d, want an error", tc.name, nspid, uid)
		case !tc.bad && (err != nil || !slices.Equal(nspid, tc.nspid) || uid != tc.uid):
			t.Errorf("%s: got %v, %d, %v, want %v, %d", tc.name, nspid, uid, err, tc.nspid, tc.uid)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	for in, want := range map[string][]string{
		"":                 nil,
		"sleep\x00100\x00": {"sleep", "100"},
		"a b\x00\x00c\x00": {"a b", "", "c"},
		"retitled":         {"retitled"},
	} {
		if got := parseCmdline([]byte(in)); !reflect.DeepEqual(got, want) {
			t.Errorf("parseCmdline(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestList runs a container with a busy loop, a sleep that leaves a zombie
// child, and a sleep in a pid namespace of its own, nested in the
// container's.
func TestList(t *testing.T) {
	c := startContainer(t, `
		"$B/sh" -c 'while :; do :; done' & echo spin $!
		"$B/sh" -c '"$B/true" & exec "$B/sleep" 100' & echo sleep $!
		"$B/unshare" -p -f "$B/sleep" 101 & echo unshare $!
		wait`)
	nspids := c.readPids(3)
	B := c.bin
	procs := c.waitFor("six processes, one of them a zombie, all but init past exec", func(procs []Proc) bool {
		n := 0
		for _, p := range procs {
			switch {
			case p.NSPid != 1 && slices.Equal(p.Cmdline, c.cmd.Args):
				return false
			case p.State == 'Z' || p.Comm == "sleep":
				n++
			}
		}
		return len(procs) == 6 && n == 3
	})

	got := make(map[string]Proc)
	for _, w := range []struct {
		name    string
		nspid   int    // as the shell reported it; 0 if it did not
		parent  string // the name of the parent, "" for init
		comm    string
		cmdline []string
		zombie  bool
	}{
		{name: "init", nspid: 1, comm: "sh", cmdline: c.cmd.Args},
		{name: "spin", nspid: nspids["spin"], parent: "init", comm: "sh", cmdline: []string{B + "/sh", "-c", "while :; do :; done"}},
		{name: "sleep", nspid: nspids["sleep"], parent: "init", comm: "sleep", cmdline: []string{B + "/sleep", "100"}},
		{name: "zombie", parent: "sleep", comm: "true", zombie: true},
		{name: "unshare", nspid: nspids["unshare"], parent: "init", comm: "unshare", cmdline: []string{B + "/unshare", "-p", "-f", B + "/sleep", "101"}},
		{name: "nested", parent: "unshare", comm: "sleep", cmdline: []string{B + "/sleep", "101"}},
	} {
		i := slices.IndexFunc(procs, func(p Proc) bool {
			if w.nspid != 0 {
				return p.NSPid == w.nspid
			}
			return p.PPid == got[w.parent].Pid && p.Comm == w.comm
		})
		if i < 0 {
			t.Errorf("%s: not listed", w.name)
			continue
		}
		p := procs[i]
		got[w.name] = p
		if w.parent == "" && p.Pid != c.init || w.parent != "" && p.PPid != got[w.parent].Pid {
			t.Errorf("%s: pid %d, ppid %d; want the child of %s", w.name, p.Pid, p.PPid, w.parent)
		}
		if p.Comm != w.comm || !slices.Equal(p.Cmdline, w.cmdline) || (p.State == 'Z') != w.zombie {
			t.Errorf("%s: %+v, want comm %q, cmdline %q, zombie %v", w.name, p, w.comm, w.cmdline, w.zombie)
		}
		if start, err := StartTime(p.Pid); err != nil || start != p.Start || start == 0 {
			t.Errorf("%s: Start %d, StartTime %d, %v", w.name, p.Start, start, err)
		}
		if p.UID != os.Getuid() {
			t.Errorf("%s: UID %d, want %d", w.name, p.UID, os.Getuid())
		}
		if !w.zombie && p.RSS <= 0 {
			t.Errorf("%s: RSS %d", w.name, p.RSS)
		}
	}
	if n := got["nested"].NSPid; n <= 1 || slices.Contains(slices.Collect(maps.Values(nspids)), n) {
		t.Errorf("the nested sleep has pid %d in the container's namespace, want one no other process has", n)
	}
	if !slices.IsSortedFunc(procs, func(a, b Proc) int { return a.NSPid - b.NSPid }) {
		t.Errorf("not sorted by NSPid: %+v", procs)
	}
	if t.Failed() {
		t.Logf("List: %+v", procs)
	}

	s, err := Collect(c.init)
	if err != nil || s.Procs != 6 || s.CPU < got["spin"].CPU || s.RSS < got["spin"].RSS+got["sleep"].RSS {
		t.Errorf("Collect = %+v, %v; want 6 processes, at least the CPU time of spin and the RSS of spin and sleep", s, err)
	}
}

// TestAlive: a process is alive while it runs, not once it has exited,
// even unreaped, and never under a start time not its own.
func TestAlive(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(pid, start) || Alive(pid, start+1) {
		t.Errorf("a running sleep: Alive = %v, and under another start time %v", Alive(pid, start), Alive(pid, start+1))
	}
	// Killed and not reaped: a zombie, whose start time is still there.
	cmd.Process.Signal(syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if st, err := parseStat(string(b)); err == nil && st.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed sleep never became a zombie")
		}
	}
	if s, err := StartTime(pid); err != nil || s != start {
		t.Fatalf("the zombie's start time: %d, %v", s, err)
	}
	if Alive(pid, start) {
		t.Error("a zombie is alive")
	}
	cmd.Wait()
	if Alive(pid, start) {
		t.Error("a reaped process is alive")
	}
}

// TestNotInit refuses pids that are not the init of a pid namespace: else a
// stale pid reused by the caller's shell would list the whole host.
func TestNotInit(t *testing.T) {
	c := startContainer(t, `"$B/sleep" 100 & echo sleep $!; wait`)
	nspid := c.readPids(1)["sleep"]
	sleep := c.waitFor("the sleep", func(procs []Proc) bool { return len(procs) == 2 })[1]
	if sleep.NSPid != nspid {
		t.Fatalf("sleep has pid %d inside, the shell says %d", sleep.NSPid, nspid)
	}
	for _, pid := range []int{os.Getpid(), 1, sleep.Pid, 1 << 30} {
		if procs, err := List(pid); err == nil {
			t.Errorf("List(%d) = %+v, want an error", pid, procs)
		}
		if err := Freeze(pid); err == nil {
			t.Errorf("Freeze(%d) succeeded", pid)
		}
	}
	if _, err := StartTime(1 << 30); err == nil {
		t.Errorf("StartTime(1<<30) succeeded")
	}
}

// TestFreezeThaw stops and continues a busy loop, a sleep and a busy loop
// in a nested pid namespace.
func TestFreezeThaw(t *testing.T) {
	c := startContainer(t, `
		"$B/sh" -c 'while :; do :; done' &
		"$B/sleep" 100 &
		"$B/unshare" -p -f "$B/sh" -c 'while :; do :; done' &
		wait`)
	spins := func(procs []Proc) (cpu []time.Duration) {
		for _, p := range procs {
			if p.Comm == "sh" && p.NSPid != 1 {
				cpu = append(cpu, p.CPU)
			}
		}
		return cpu
	}
	before := spins(c.waitFor("two spinning loops", func(procs []Proc) bool {
		cpu := spins(procs)
		return len(procs) == 5 && len(cpu) == 2 && cpu[0] > 0 && cpu[1] > 0
	}))

	for range 2 { // the second time, all are stopped already
		if err := Freeze(c.init); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		frozen := c.checkFrozen()
		time.Sleep(200 * time.Millisecond)
		later := c.checkFrozen()
		if !slices.Equal(spins(frozen), spins(later)) {
			t.Errorf("CPU time of the loops went from %v to %v while frozen", spins(frozen), spins(later))
		}
		if s, err := Collect(c.init); err != nil || s.CPU != sum(later) {
			t.Errorf("Collect = %+v, %v; want CPU %v", s, err, sum(later))
		}
		before = spins(later)
	}

	if err := Thaw(c.init); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	c.waitFor("both loops running again", func(procs []Proc) bool {
		cpu := spins(procs)
		for _, p := range procs {
			if p.State == 'T' {
				return false
			}
		}
		return len(cpu) == 2 && cpu[0] > before[0] && cpu[1] > before[1]
	})
}

// TestFreezeForking freezes shells that fork all the time: a child forked
// while a sweep runs must be stopped too.
func TestFreezeForking(t *testing.T) {
	c := startContainer(t, `
		"$B/sh" -c 'while :; do "$B/sleep" 0.01; done' &
		"$B/sh" -c 'while :; do "$B/true"; done' &
		"$B/sh" -c 'while :; do "$B/true" & "$B/true" & wait; done' &
		wait`)
	c.waitFor("the loops", func(procs []Proc) bool { return len(procs) >= 4 })
	seen := make(map[[2]uint64]bool)
	for range 20 {
		if err := Freeze(c.init); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		frozen := c.checkFrozen()
		time.Sleep(50 * time.Millisecond)
		if later := c.checkFrozen(); !slices.EqualFunc(frozen, later, sameState) {
			t.Fatalf("processes changed while frozen:\n%+v\n%+v", frozen, later)
		}
		for _, p := range frozen {
			seen[[2]uint64{uint64(p.Pid), p.Start}] = true
		}
		if err := Thaw(c.init); err != nil {
			t.Fatalf("Thaw: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Else the loops did not fork, and the test proves nothing.
	if len(seen) < 40 {
		t.Errorf("only %d processes in 20 rounds", len(seen))
	}
}

const busybox = "/bin/busybox"

// container is a pid namespace with a busybox shell as its init, in a user
// namespace of its own so that the tests need no root. B names a directory
// of links to busybox, so that each applet has a name (comm) of its own.
type container struct {
	t    *testing.T
	cmd  *exec.Cmd
	init int // host pid
	bin  string
	out  *bufio.Scanner
	seen []Proc
}

func startContainer(t *testing.T, script string) *container {
	t.Helper()
	if err := userNSErr(); err != nil {
		if os.Getenv("HPCRUN_TEST_REQUIRE_USERNS") != "1" {
			t.Skipf("user namespaces unusable (set HPCRUN_TEST_REQUIRE_USERNS=1 to fail instead): %v", err)
		}
		t.Fatalf("HPCRUN_TEST_REQUIRE_USERNS=1 but user namespaces are unusable: %v", err)
	}
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%v: install busybox-static", err)
	}
	c := &container{t: t, bin: t.TempDir()}
	for _, applet := range []string{"sh", "sleep", "true", "unshare"} {
		if err := os.Symlink(busybox, filepath.Join(c.bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	c.cmd = exec.Command(c.bin+"/sh", "-c", script)
	c.cmd.Env = []string{"B=" + c.bin}
	c.cmd.Stderr = os.Stderr
	c.cmd.SysProcAttr = nsAttr()
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewScanner(out)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.init = c.cmd.Process.Pid
	t.Cleanup(c.kill)
	return c
}

// kill ends the container, and checks that none of its processes are
// left.
func (c *container) kill() {
	// The kernel kills the rest of a pid namespace with its init, stopped
	// processes too, and reaps them before the init's parent can.
	c.cmd.Process.Kill()
	c.cmd.Wait()
	for _, p := range c.seen {
		if start, err := StartTime(p.Pid); err == nil && start == p.Start {
			c.t.Errorf("process %d (%s) outlived the container", p.Pid, p.Comm)
		}
	}
	if procs, err := List(c.init); err == nil {
		c.t.Errorf("List after the end = %+v", procs)
	}
}

// nsAttr is a variable so that a test can put its containers in a cgroup.
var nsAttr = func() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
}

// userNSErr tells whether this user may make user and pid namespaces, by
// starting this test binary in them (to run no test).
var userNSErr = sync.OnceValue(func() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.SysProcAttr = nsAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
})

// readPids reads n lines "name pid" that the init's script printed.
func (c *container) readPids(n int) map[string]int {
	c.t.Helper()
	pids := make(map[string]int)
	for range n {
		if !c.out.Scan() {
			c.t.Fatalf("the script ended its output early: %v", c.out.Err())
		}
		name, pid, _ := strings.Cut(c.out.Text(), " ")
		var err error
		if pids[name], err = strconv.Atoi(pid); err != nil {
			c.t.Fatalf("script printed %q", c.out.Text())
		}
	}
	return pids
}

// list lists the container, and remembers its processes for kill to check.
func (c *container) list() []Proc {
	c.t.Helper()
	procs, err := List(c.init)
	if err != nil {
		c.t.Fatalf("List: %v", err)
	}
	c.seen = append(c.seen, procs...)
	return procs
}

// waitFor lists the container until ok says it is as wanted.
func (c *container) waitFor(what string, ok func([]Proc) bool) []Proc {
	c.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		procs := c.list()
		if ok(procs) {
			return procs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: %+v", what, procs)
		}
	}
}

// checkFrozen lists the container and checks that all but the init are
// stopped, or zombies.
func (c *container) checkFrozen() []Proc {
	c.t.Helper()
	procs := c.list()
	for _, p := range procs {
		if stopped(p.State) == (p.Pid == c.init) {
			c.t.Errorf("process %d (%s, NSPid %d) is in state %c", p.Pid, p.Comm, p.NSPid, p.State)
		}
	}
	return procs
}

// sameState reports whether a and b are the same process in the same state.
func sameState(a, b Proc) bool {
	return a.Pid == b.Pid && a.Start == b.Start && a.State == b.State && a.CPU == b.CPU
}

func sum(procs []Proc) (cpu time.Duration) {
	for _, p := range procs {
		cpu += p.CPU
	}
	return cpu
}

func TestStatParent(t *testing.T) {
	for _, tc := range []struct {
		line  string
		ppid  int
		state byte
		ok    bool
	}{
		{"12 (sleep) S 7 12 1 0", 7, 'S', true},
		{"13 (a) b) (c) Z 1 13", 1, 'Z', true},
		{"14 (x", 0, 0, false},
		{"15 (x) S", 0, 0, false},
	} {
		ppid, state, ok := StatParent([]byte(tc.line))
		if ppid != tc.ppid || state != tc.state || ok != tc.ok {
			t.Errorf("StatParent(%q) = %d %c %v", tc.line, ppid, state, ok)
		}
	}
}
