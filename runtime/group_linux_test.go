package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestGroupVerdict(t *testing.T) {
	const d1, d2 = "sha256:aaa", "sha256:bbb"
	live := func(image string) memberState { return memberState{pid: 7, alive: true, image: image} }
	dead := func(image string) memberState { return memberState{pid: 9, image: image} }
	tests := []struct {
		name    string
		v       groupView
		waited  time.Duration
		start   bool
		message string // part of the reason; "" to wait
	}{
		{"all ready", groupView{want: 2, members: []memberState{live(d1), live(d1)}}, 0, true, ""},
		{"one alone", groupView{want: 1, members: []memberState{live(d1)}}, 0, true, ""},
		{"one getting ready", groupView{want: 2, members: []memberState{live(d1), live("")}}, time.Hour, false, ""},
		{"one not come", groupView{want: 2, members: []memberState{live(d1)}}, time.Second, false, ""},
		{"one not come in time", groupView{want: 2, members: []memberState{live(d1)}}, time.Minute, false, "only 1 of the 2 tasks"},
		{"different images", groupView{want: 3, members: []memberState{live(d1), live(""), live(d2)}}, 0, false, "(sha256:aaa on one, sha256:bbb on another)"},
		{"one ended while getting ready", groupView{want: 2, members: []memberState{live(d1), dead("")}}, 0, false, "(pid 9) ended before the group started"},
		{"one ended while waiting", groupView{want: 2, members: []memberState{live(""), dead(d1)}}, 0, false, "ended before the group started"},
		{"too many", groupView{want: 1, members: []memberState{live(d1), live(d1)}}, 0, false, "2 tasks came to group g, which is for 1"},
		{"recorded go, one since ended", groupView{want: 2, members: []memberState{live(d1), dead(d1)}, outcome: "go"}, 0, true, ""},
		{"recorded failure", groupView{want: 2, members: []memberState{live(d1), live(d1)}, outcome: "fail no space"}, 0, false, "no space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.v.id = "g"
			start, reason := tc.v.verdict(tc.waited, time.Minute)
			if start != tc.start || (tc.message == "") != (reason == "") || !strings.Contains(reason, tc.message) {
				t.Fatalf("verdict = %v, %q; want %v, %q", start, reason, tc.start, tc.message)
			}
		})
	}
}

// enter is a member of group g of n under root, as a task would be; each
// test is a launch of its own.
func enter(t *testing.T, c *Containers, n int) *Member {
	t.Helper()
	m, err := c.Enter("g", n, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitAll runs every member's Wait at once and returns their errors.
func waitAll(ms ...*Member) []error {
	errs := make(chan error, len(ms))
	for _, m := range ms {
		go func() { errs <- m.Wait(5 * time.Second) }()
	}
	var out []error
	for range ms {
		out = append(out, <-errs)
	}
	return out
}

func TestGroupMeeting(t *testing.T) {
	c := openTestContainers(t)
	sameForAll := func(t *testing.T, errs []error, want string) {
		t.Helper()
		for _, err := range errs {
			var ge *GroupError
			if !errors.As(err, &ge) || !errors.Is(err, ErrGroup) || err.Error() != errs[0].Error() || !strings.Contains(err.Error(), want) {
				t.Fatalf("errors %v: want the same %q for all", errs, want)
			}
		}
	}
	t.Run("same image from two caches", func(t *testing.T) {
		a, b := enter(t, c, 2), enter(t, c, 2)
		defer a.Close()
		defer b.Close()
		a.Ready("sha256:aaa")
		go func() { time.Sleep(50 * time.Millisecond); b.Ready("sha256:aaa") }()
		for _, err := range waitAll(a, b) {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("an earlier group's leftovers", func(t *testing.T) {
		// The group above ended (its members closed): a new one of the
		// same name starts afresh, not with its outcome or members.
		a, b := enter(t, c, 2), enter(t, c, 2)
		defer a.Close()
		defer b.Close()
		a.Ready("sha256:bbb")
		b.Ready("sha256:bbb")
		for _, err := range waitAll(a, b) {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("different images", func(t *testing.T) {
		a, b := enter(t, c, 2), enter(t, c, 2)
		defer a.Close()
		defer b.Close()
		a.Ready("sha256:aaa")
		b.Ready("sha256:bbb")
		sameForAll(t, waitAll(a, b), "ask for different images")
	})
	t.Run("a member fails", func(t *testing.T) {
		a, b, d := enter(t, c, 3), enter(t, c, 3), enter(t, c, 3)
		defer a.Close()
		defer b.Close()
		defer d.Close()
		a.Ready("sha256:aaa")
		errs := []error{b.Fail("unpack: no space left on device")}
		errs = append(errs, waitAll(a, d)...)
		sameForAll(t, errs, "no space left")
	})
	t.Run("a member ends before it is ready", func(t *testing.T) {
		a, b := enter(t, c, 2), enter(t, c, 2)
		defer a.Close()
		a.Ready("sha256:aaa")
		go func() { time.Sleep(50 * time.Millisecond); b.Close() }()
		sameForAll(t, waitAll(a), "ended before the group started")
	})
	t.Run("a task that comes late", func(t *testing.T) {
		// The others failed and ended before this one came: it hears
		// their reason at once, rather than waiting for them.
		a, b := enter(t, c, 3), enter(t, c, 3)
		errs := []error{a.Fail("unpack: no space left on device")}
		errs = append(errs, waitAll(b)...)
		a.Close()
		b.Close()
		// Another hpcrun of the user's sweeps meanwhile: a failed group
		// stays for its late tasks.
		c.Sweep()
		late, err := c.Enter("g", 3, t.Name())
		if late != nil {
			late.Close()
		}
		sameForAll(t, append(errs, err), "no space left")
		// Another launch with the same tag starts afresh.
		next, err := c.Enter("g", 1, t.Name()+" again")
		if err != nil {
			t.Fatalf("a new launch after a failed one: %v", err)
		}
		defer next.Close()
		next.Ready("sha256:aaa")
		if err := next.Wait(time.Second); err != nil {
			t.Fatalf("a new launch after a failed one: %v", err)
		}
	})
	t.Run("a new run from the same parent", func(t *testing.T) {
		// A shell that runs the group again (same parent, so the same
		// launch) after it failed, or after it went: the new run started
		// after the old one ended, so it starts afresh, neither with the
		// old failure nor the old "go" and members.
		if age := time.Since(started()); age <= 0 || age > time.Hour {
			t.Fatalf("this test process started %v ago, by started()", age)
		}
		gen := t.Name()
		a, err := c.Enter("g", 1, gen)
		if err != nil {
			t.Fatal(err)
		}
		a.Fail("the first run's reason")
		a.Close()
		b, err := c.enterAt("g", 1, gen, time.Now(), false)
		if err != nil {
			t.Fatalf("a rerun after a failed run: %v", err)
		}
		b.Ready("sha256:aaa")
		if err := b.Wait(time.Second); err != nil {
			t.Fatalf("a rerun after a failed run: %v", err)
		}
		b.Close()
		d, err := c.enterAt("g", 2, gen, time.Now(), false)
		if err != nil {
			t.Fatalf("a rerun after a run that went: %v", err)
		}
		defer d.Close()
		d.Ready("sha256:aaa")
		if err := d.Wait(300 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "only 1 of the 2 tasks") {
			t.Fatalf("a rerun after a run that went, alone: %v; want it to wait for its other task", err)
		}
	})
	t.Run("a step's task that starts after the others ended", func(t *testing.T) {
		// A Slurm step's slurmstepd runs its group once: a task of it
		// that a loaded node starts only after the others failed and
		// ended takes their reason at once, whenever it started (a
		// shell's rerun, above, starts afresh).
		gen := t.Name()
		a, err := c.enterAt("g", 3, gen, started(), true)
		if err != nil {
			t.Fatal(err)
		}
		a.Fail("task 1's image differs")
		a.Close()
		late, err := c.enterAt("g", 3, gen, time.Now().Add(time.Second), true)
		if late != nil {
			late.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "task 1's image differs") {
			t.Fatalf("a late task of the step: %v; want the group's reason at once", err)
		}
	})
	t.Run("a rootfs path as long as a path may be", func(t *testing.T) {
		// A plain directory is compared by its path, up to PATH_MAX.
		long := "/" + strings.Repeat("d/", 2046) + "rr"
		a := enter(t, c, 1)
		defer a.Close()
		a.Ready(long)
		done := make(chan error, 1)
		go func() { done <- a.Wait(time.Second) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("a member ready with a %d-byte path is never seen ready", len(long))
		}
	})
	t.Run("a fifo where the outcome is written", func(t *testing.T) {
		// Whatever lies in the meeting's dir, no open of it blocks.
		a := enter(t, c, 1)
		defer a.Close()
		if err := unix.Mkfifoat(a.dir, ".o"+strconv.Itoa(os.Getpid()), 0o600); err != nil {
			t.Fatal(err)
		}
		defer unix.Unlinkat(a.dir, ".o"+strconv.Itoa(os.Getpid()), 0)
		done := make(chan error, 1)
		go func() { done <- a.Fail("its reason") }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "its reason") {
				t.Fatalf("Fail = %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Fail blocks on a fifo in the meeting's dir")
		}
	})
	t.Run("swept once no member lives", func(t *testing.T) {
		// A failed group is kept for failedKeep after its failure.
		a := enter(t, c, 1)
		a.Fail("its reason")
		a.Close()
		c.Sweep()
		if ents, _ := os.ReadDir(c.Root); len(ents) != 1 {
			t.Fatalf("a group failed just now: want it kept, got %v", ents)
		}
		old := time.Now().Add(-failedKeep - time.Minute)
		if err := os.Chtimes(filepath.Join(c.Root, groupPrefix+"g"), old, old); err != nil {
			t.Fatal(err)
		}
		c.Sweep()
		if ents, _ := os.ReadDir(c.Root); len(ents) != 0 {
			t.Fatalf("left %v", ents)
		}
	})
}

// What the meeting adds to a task's start, for a group of four whose
// members are all there: enter, say ready, wait, leave.
func BenchmarkGroupMeeting(b *testing.B) {
	c := openTestContainers(b)
	for b.Loop() {
		ms := make([]*Member, 4)
		for i := range ms {
			m, err := c.Enter("g", len(ms), "bench")
			if err != nil {
				b.Fatal(err)
			}
			m.Ready("sha256:aaa")
			ms[i] = m
		}
		for _, m := range ms {
			if err := m.Wait(time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		for _, m := range ms {
			m.Close()
		}
	}
}
