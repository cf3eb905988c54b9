package runtime

import (
	"strings"
	"testing"
	"time"
)

// list's table: the image the run named (else a group's, else the rootfs),
// human times, owners by name.
func TestWriteStates(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	all := []*State{
		{ID: "train", Pid: 42, Status: StatusRunning, Rootfs: "/c/images/sha256-ab/rootfs", Created: now.Add(-3 * time.Minute),
			Owner: "1000", Annotations: map[string]string{ImageAnnotation: "/scratch/py3.tar"}},
		{ID: "grp", Status: StatusStopped, Rootfs: "/c/images/sha256-cd/rootfs", Image: "sha256:cd", Created: now.Add(-50 * time.Hour), Owner: "1001"},
		{ID: "oci", Status: StatusCreated, Rootfs: "/bundle/rootfs", Created: now.Add(-2 * time.Second), Owner: "1002"},
	}
	var b strings.Builder
	names := map[string]string{"1000": "alice", "1001": "bob"}
	err := writeStates(&b, all, now, func(uid string) string {
		if n, ok := names[uid]; ok {
			return n
		}
		return uid
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"ID", "PID", "STATUS", "IMAGE", "CREATED", "OWNER"},
		{"train", "42", "running", "/scratch/py3.tar", "3", "minutes", "ago", "alice"},
		{"grp", "0", "stopped", "sha256:cd", "2", "days", "ago", "bob"},
		{"oci", "0", "created", "/bundle/rootfs", "just", "now", "1002"},
	}
	for i, w := range want {
		if i >= len(lines) || strings.Join(strings.Fields(lines[i]), " ") != strings.Join(w, " ") {
			t.Errorf("line %d: want %q\n%s", i, w, b.String())
		}
	}
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "just now", 9 * time.Second: "just now", 10 * time.Second: "10 seconds ago", time.Minute: "1 minute ago",
		119 * time.Minute: "1 hour ago", 36 * time.Hour: "1 day ago", 15 * 24 * time.Hour: "2 weeks ago",
		800 * 24 * time.Hour: "2 years ago", -time.Hour: "just now",
	} {
		if got := Ago(d); got != want {
			t.Errorf("Ago(%v) = %q, want %q", d, got, want)
		}
	}
}
