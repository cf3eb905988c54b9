package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRlimitShimNofile: the shim's RLIMIT_NOFILE is the job's even when
// the shim starts with a soft limit well under its hard one (a login
// shell's 1024 under 524288), which Go raises at its start and puts back
// at exec unless the program set it itself.
func TestRlimitShimNofile(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Max < 1000 {
		t.Fatalf("RLIMIT_NOFILE %+v, %v: the test needs a hard limit of 1000 or more", lim, err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(t.TempDir(), RlimitArg0)
	if err := os.Symlink(self, shim); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatalf("prlimit (util-linux) is missing: %v", err)
	}
	// The hard limit as it is: Go's putting back the old soft one would
	// then succeed.
	_, argv := withShim(&initConfig{Rlimits: []rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 300, Hard: lim.Max}}}, "/bin/sh", []string{"sh", "-c", "ulimit -Sn; ulimit -Hn"})
	out, err := exec.Command("prlimit", append([]string{"--nofile=100:", "--", shim}, argv[1:]...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("the shim: %v\n%s", err, out)
	}
	if got, want := strings.Fields(string(out)), []string{"300", strconv.FormatUint(lim.Max, 10)}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("soft and hard RLIMIT_NOFILE %q, want %q", got, want)
	}
}
