package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A create killed before it recorded its init leaves state with no pid:
// creating for a moment, then stopped, and swept when it asked for that.
func TestStateWithoutInit(t *testing.T) {
	c := openTestContainers(t)
	write := func(id string, created time.Time, autoremove bool) {
		t.Helper()
		os.Mkdir(c.Dir(id), 0o700)
		b, _ := json.Marshal(State{ID: id, Created: created, Autoremove: autoremove})
		if err := os.WriteFile(filepath.Join(c.Dir(id), "state.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("new", time.Now(), true)
	write("old", time.Now().Add(-time.Minute), true)
	write("old-oci", time.Now().Add(-time.Minute), false)
	for id, want := range map[string]string{"new": StatusCreating, "old": StatusStopped, "old-oci": StatusStopped} {
		if s, err := c.Load(id); err != nil || s.Status != want {
			t.Errorf("%s: %+v, %v; want %s", id, s, err, want)
		}
	}
	c.Sweep()
	for id, kept := range map[string]bool{"new": true, "old": false, "old-oci": true} {
		if _, err := os.Stat(c.Dir(id)); (err == nil) != kept {
			t.Errorf("after Sweep, %s is there: %v, want %v", id, err == nil, kept)
		}
	}
	if err := c.Delete("old-oci", false); err != nil {
		t.Errorf("delete of a stopped container: %v", err)
	}
}

// openTestContainers opens a new state root of the test's.
func openTestContainers(tb testing.TB) *Containers {
	tb.Helper()
	c, err := OpenContainers(tb.TempDir(), false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.fd.Close() })
	return c
}

// A named run (--name, --detach) that stopped stays, with its exit status
// and log, until delete; its name is taken meanwhile, and the error says
// how to free it. A batch system's name is swept.
func TestStoppedNamedRunKept(t *testing.T) {
	c := openTestContainers(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid
	dir, err := c.Register("crash", pid, "/rootfs", false)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{exitFile: "3", logFile: "important\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Register("slurm-1.0.0", pid, "/rootfs", true); err != nil {
		t.Fatal(err)
	}
	all, err := c.List()
	if err != nil || len(all) != 1 || all[0].ID != "crash" {
		t.Fatalf("List: %v, %v; want crash alone, kept, and the batch name swept", all, err)
	}
	s := all[0]
	b, _ := json.Marshal(s.OCI())
	var got map[string]any
	json.Unmarshal(b, &got)
	if got["status"] != "stopped" || got["exitStatus"] != 3.0 || got["log"] != filepath.Join(c.Dir("crash"), "log") {
		t.Errorf("state: %s; want stopped, exit status 3 and the log's path", b)
	}
	for _, err := range []error{
		func() error { _, err := c.Register("crash", pid, "/rootfs", false); return err }(),
		func() error { _, err := c.Create("crash", &Config{}, CreateOptions{}); return err }(),
	} {
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "stopped (exit status 3)") || !strings.Contains(err.Error(), "hpcrun delete crash") {
			t.Errorf("a new container named crash: %v; want that a stopped one holds the name, and how to delete it", err)
		}
	}
	if err := c.Delete("crash", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register("crash", pid, "/rootfs", false); err != nil {
		t.Errorf("the name after delete: %v", err)
	}
}
