package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
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
