package runtime

import (
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/unixsock"
)

func TestCtlStateMayStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members int
		job     int
		ended   bool
		want    string // "" for nil
	}{
		{"created", 0, 0, false, ""},
		{"running", 0, 42, false, "started already"},
		{"group container", 2, 0, false, "started already"},
		{"ended", 0, 0, true, errEnded.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCtlState(tc.members)
			s.job, s.ended = tc.job, tc.ended
			checkErr(t, s.mayStart(), tc.want)
		})
	}
}

func TestCtlStateMayExec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members int
		member  bool
		ended   bool
		want    string
	}{
		{"plain exec", 0, false, false, ""},
		{"plain exec into a group container", 3, false, false, ""},
		{"member", 3, true, false, ""},
		{"member of no group", 0, true, false, "not a group container"},
		{"ended", 3, true, true, errEnded.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCtlState(tc.members)
			s.ended = tc.ended
			checkErr(t, s.mayExec(tc.member), tc.want)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("err = %v, want none", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("err = %v, want one with %q", err, want)
	}
}

func TestCtlStateKillTargets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		members  int
		job      int
		execs    map[int]bool // pid: member
		all      bool
		wantPids []int
		wantEnds bool
	}{
		{"job", 0, 10, map[int]bool{11: false}, false, []int{10}, false},
		{"all", 0, 10, map[int]bool{11: false}, true, []int{-1}, false},
		{"created container ends", 0, 0, nil, false, nil, true},
		{"created container ends with all", 0, 0, nil, true, nil, true},
		{"group: its members, not other execs", 2, 0, map[int]bool{21: true, 22: false, 20: true}, false, []int{20, 21}, false},
		{"group with no member yet", 2, 0, map[int]bool{22: false}, false, nil, false},
		{"group with all ends", 2, 0, map[int]bool{21: true}, true, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCtlState(tc.members)
			s.job = tc.job
			for pid, member := range tc.execs {
				s.forked(pid, &execd{member: member})
			}
			pids, ends := s.killTargets(tc.all)
			if !reflect.DeepEqual(pids, tc.wantPids) || ends != tc.wantEnds {
				t.Errorf("killTargets(%v) = %v, %v; want %v, %v", tc.all, pids, ends, tc.wantPids, tc.wantEnds)
			}
		})
	}
}

// TestCtlStateEnds plays the events that a container's init sees, in
// the orders they can come in, and checks when the container ends.
func TestCtlStateEnds(t *testing.T) {
	// An event: "start P", "fork P" (exec'd), "member P" (a member's
	// process), "join" (a member came), "exit P C", "end C".
	type step struct {
		ev       string
		pid, arg int
		ends     bool // the step ends the container
	}
	for _, tc := range []struct {
		name     string
		members  int
		steps    []step
		wantCode int // -1: not ended
	}{
		{"job ends", 0, []step{{"start", 10, 0, false}, {"exit", 10, 3, true}}, 3},
		{"exec'd ends, job runs", 0, []step{{"start", 10, 0, false}, {"fork", 11, 0, false}, {"exit", 11, 1, false}}, -1},
		{"orphan ends", 0, []step{{"start", 10, 0, false}, {"exit", 99, 0, false}}, -1},
		{"job ends, then the killed rest", 0, []step{{"start", 10, 0, false}, {"fork", 11, 0, false},
			{"exit", 10, 0, true}, {"exit", 11, 137, false}}, 0},
		{"created container killed", 0, []step{{"end", 0, 143, true}}, 143},
		{"ended once only", 0, []step{{"end", 0, 143, true}, {"end", 0, 1, false}}, 143},
		{"group: members come and go", 2, []step{
			{"member", 20, 0, false}, {"join", 0, 0, false},
			{"member", 21, 0, false}, {"join", 0, 0, false},
			{"exit", 20, 0, false}, {"exit", 21, 5, true},
		}, 0},
		{"group: a member ends before the next comes", 2, []step{
			{"member", 20, 0, false}, {"join", 0, 0, false}, {"exit", 20, 0, false},
			{"member", 21, 0, false}, {"join", 0, 0, false}, {"exit", 21, 0, true},
		}, 0},
		{"group: a member ends before it is counted", 2, []step{
			{"member", 20, 0, false}, {"join", 0, 0, false},
			{"member", 21, 0, false}, {"exit", 21, 0, false}, {"join", 0, 0, false},
			{"exit", 20, 0, true},
		}, 0},
		{"group: the last member ends before it is counted", 2, []step{
			{"member", 20, 0, false}, {"join", 0, 0, false}, {"exit", 20, 0, false},
			{"member", 21, 0, false}, {"exit", 21, 0, false}, {"join", 0, 0, true},
		}, 0},
		{"group: the last member's process never started", 2, []step{
			{"member", 20, 0, false}, {"join", 0, 0, false}, {"exit", 20, 0, false},
			{"join", 0, 0, true},
		}, 0},
		{"group: a plain exec keeps no group alive", 1, []step{
			{"fork", 30, 0, false}, {"member", 20, 0, false}, {"join", 0, 0, false},
			{"exit", 20, 0, true}, {"exit", 30, 137, false},
		}, 0},
		{"group: members still to come", 3, []step{
			{"member", 20, 0, false}, {"join", 0, 0, false}, {"exit", 20, 0, false},
		}, -1},
		{"group: kill --all", 2, []step{{"member", 20, 0, false}, {"join", 0, 0, false}, {"end", 0, 137, true}}, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCtlState(tc.members)
			for i, st := range tc.steps {
				ends := false
				switch st.ev {
				case "start":
					s.started(st.pid)
				case "fork", "member":
					s.forked(st.pid, &execd{member: st.ev == "member"})
				case "join":
					ends = s.join()
				case "exit":
					_, ends = s.exited(st.pid, st.arg)
				case "end":
					ends = s.end(st.arg)
				}
				if ends != st.ends {
					t.Fatalf("step %d (%s %d %d): ends = %v, want %v", i, st.ev, st.pid, st.arg, ends, st.ends)
				}
			}
			code := -1
			if s.ended {
				code = s.code
			}
			if code != tc.wantCode {
				t.Errorf("ended with %d, want %d (-1: running)", code, tc.wantCode)
			}
		})
	}
}

func TestCtlStateExitedReturnsExecd(t *testing.T) {
	s := newCtlState(0)
	e := &execd{}
	s.forked(7, e)
	if got, _ := s.exited(7, 0); got != e {
		t.Errorf("exited(7) = %v, want the exec'd process", got)
	}
	if got, _ := s.exited(7, 0); got != nil {
		t.Errorf("exited(7) again = %v, want none", got)
	}
}

// testCtl is a control server with no socket, whose main thread is a
// goroutine of the test.
func testCtl(t *testing.T, members int) *ctl {
	c := &ctl{cfg: &initConfig{Members: members}, logf: func(string, ...any) {}, dir: -1,
		st: newCtlState(members), forks: make(chan func()), wake: make(chan struct{}, 1), done: make(chan struct{})}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case fork := <-c.forks:
				fork()
			case <-stop:
				return
			}
		}
	}()
	return c
}

// connPair is a connected pair of unix stream sockets.
func connPair(t *testing.T) (client, server *unixsock.Conn) {
	client, server, err := unixsock.Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestCtlHandle sends requests through the server's dispatcher, those
// that neither fork nor signal anything but the test itself, and checks
// the replies and that the connection ends after them.
func TestCtlHandle(t *testing.T) {
	self := os.Getpid()
	for _, tc := range []struct {
		name    string
		members int
		job     int
		ended   bool
		raw     []byte // sent instead of req
		req     request
		fds     int // stdio descriptors sent with req
		want    string
		status  int
		hangUp  bool // no reply
	}{
		{name: "garbled request", raw: frame([]byte{0xff}), want: "garbled request"},
		{name: "unknown operation", req: request{op: 'x'}, want: "unknown control operation"},
		{name: "start a running container", job: self, req: request{op: opStart}, want: "started already"},
		{name: "start a group container", members: 2, req: request{op: opStart}, want: "started already"},
		{name: "kill the job", job: self, req: request{op: opKill, sig: 0}},
		{name: "kill a group's members", members: 2, req: request{op: opKill, sig: 0}},
		{name: "member of no group", req: request{op: opExec, member: true, args: []string{"true"}}, fds: 3,
			want: "not a group container", status: StatusFailed},
		{name: "exec without stdio", job: self, req: request{op: opExec, args: []string{"true"}},
			want: "not three stdio descriptors", status: StatusFailed},
		{name: "exec without a command", job: self, req: request{op: opExec}, fds: 3,
			want: "no command", status: StatusFailed},
		{name: "start when ended", ended: true, req: request{op: opStart}, hangUp: true},
		{name: "kill when ended", job: self, ended: true, req: request{op: opKill, sig: 0}, hangUp: true},
		{name: "exec when ended", job: self, ended: true, req: request{op: opExec, args: []string{"true"}}, fds: 3, hangUp: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCtl(t, tc.members)
			c.st.job, c.st.ended = tc.job, tc.ended
			if tc.members > 0 {
				c.st.forked(self, &execd{member: true})
			}
			client, server := connPair(t)
			done := make(chan struct{})
			go func() {
				c.handle(server)
				close(done)
			}()
			msg := tc.raw
			if msg == nil {
				msg = tc.req.encode()
			}
			var oob []byte
			if tc.fds > 0 {
				fds := make([]int, tc.fds)
				for i := range fds {
					fds[i] = int(os.Stdin.Fd())
				}
				oob = unix.UnixRights(fds...)
			}
			if _, err := client.WriteMsg(msg, oob); err != nil {
				t.Fatal(err)
			}
			b, err := readFrame(client)
			if tc.hangUp {
				if !errors.Is(err, io.EOF) {
					t.Errorf("got %q, %v; want a hang-up", b, err)
				}
				<-done
				return
			}
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			resp, err := decodeResponse(b)
			if err != nil {
				t.Fatal(err)
			}
			if (tc.want == "") != (resp.err == "") || !strings.Contains(resp.err, tc.want) || resp.status != tc.status {
				t.Errorf("reply %+v, want error %q with status %d", resp, tc.want, tc.status)
			}
			if b, err := readFrame(client); !errors.Is(err, io.EOF) {
				t.Errorf("after the reply: %q, %v; want the connection closed", b, err)
			}
			<-done
		})
	}
}
