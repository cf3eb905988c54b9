package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestArgsAfterCmd: flag parsing stops at CMD.
func TestArgsAfterCmd(t *testing.T) {
	t.Parallel()
	needUserns(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"flags after CMD", []string{"echo", "-v", "--rootfs", "x"}, "-v --rootfs x"},
		{"double dash", []string{"--", "echo", "--quiet"}, "--quiet"},
		{"CMD named like a subcommand", []string{"spec"}, "ran-spec"},
		{"CMD named like a subcommand with args", []string{"spec", "--rootfs", "y"}, "ran-spec"},
		{"arguments kept verbatim", []string{"printf", "[%s]", "a b", "", "$HOME", "*", "x\ty"}, "[a b][][$HOME][*][x\ty]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mustRun(t, opts{}, append([]string{"--rootfs", rootfsDir}, tc.args...)...)
			if got := strings.TrimSpace(r.stdout); got != tc.want {
				t.Errorf("stdout %q, want %q\n%s", got, tc.want, r)
			}
		})
	}
}

// TestVerboseKeepsStdout: hpcrun's own logging never mixes into the job's
// stdout.
func TestVerboseKeepsStdout(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, flag := range []string{"-v", "--verbose", "-q", "--quiet"} {
		r := mustRun(t, opts{}, flag, "--rootfs", rootfsDir, "echo", "hi")
		if r.stdout != "hi\n" {
			t.Errorf("%s: stdout %q, want only the job's %q\n%s", flag, r.stdout, "hi\n", r)
		}
		if (flag == "-q" || flag == "--quiet") && r.stderr != "" {
			t.Errorf("%s: stderr %q, want nothing from a successful quiet run", flag, r.stderr)
		}
	}
}

// TestStdin: the job reads the caller's stdin.
func TestStdin(t *testing.T) {
	t.Parallel()
	needUserns(t)
	r := runRaw(opts{stdin: "line1\nline2\n"}, binPath, "--rootfs", rootfsDir, "sh", "-c", "cat; echo end")
	if r.err != nil || r.code != 0 || r.stdout != "line1\nline2\nend\n" {
		t.Errorf("want the job to read stdin to EOF, got %s", r)
	}
}

// TestRelativeRootfs: a relative --rootfs is taken from the cwd.
func TestRelativeRootfs(t *testing.T) {
	t.Parallel()
	needUserns(t)
	dir := filepath.Dir(rootfsDir)
	rel := filepath.Base(rootfsDir)
	r := mustRun(t, opts{dir: dir}, "--rootfs", rel, "cat", "/etc/group")
	if !strings.HasPrefix(r.stdout, "root:x:0:") {
		t.Errorf("--rootfs %s from %s: unexpected /etc/group %q", rel, dir, r.stdout)
	}
	r = mustRun(t, opts{dir: dir}, "spec", "--rootfs", rel, "--", "true")
	if !strings.Contains(r.stdout, `"path": "`+rootfsDir+`"`) {
		t.Errorf("spec --rootfs %s: want root.path %q in\n%s", rel, rootfsDir, r.stdout)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := run(t, opts{}, "--version")
	if r.code != 0 || len(lines(r.stdout)) == 0 {
		t.Errorf("--version: want exit 0 and a version on stdout, got %s", r)
	}
}

// tmpHpcrunEntries lists /tmp entries named hpcrun*.
func tmpHpcrunEntries(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/tmp") // the env hpcrun gets has no TMPDIR
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	// Not the user's state roots (hpcrun-UID and hpcrun-oci-UID), which
	// every run makes where missing, so that its container hides them
	// from the job (runtime/fence_linux.go).
	own := map[string]bool{"hpcrun-" + strconv.Itoa(testUID): true, "hpcrun-oci-" + strconv.Itoa(testUID): true}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "hpcrun") && !own[e.Name()] {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// assertOneErrorLine checks the "hpcrun failed" shape: exit 125 and exactly
// one stderr line starting with "hpcrun: ".
func assertOneErrorLine(t *testing.T, r result) {
	t.Helper()
	l := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != 125 || len(l) != 1 || !strings.HasPrefix(l[0], "hpcrun: ") || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("want exit 125, one stderr line starting %q and no stdout; got %s", "hpcrun: ", r)
	}
}

// TestBadInput is deliberately not parallel: while it runs no other hpcrun
// does, so any new /tmp/hpcrun* entry is one of its own leftovers.
func TestBadInput(t *testing.T) {
	root := ownedRootfs(t)
	before := fingerprint(t, root)
	missing := filepath.Join(baseDir, "does-not-exist")
	cases := []struct {
		name string
		args []string
	}{
		{"missing rootfs dir", []string{"--rootfs", missing, "true"}},
		{"no --rootfs", []string{"true"}},
		{"missing bind source", []string{"--rootfs", root, "--bind", missing + ":/data", "true"}},
		{"bind colon only", []string{"--rootfs", root, "--bind", ":", "true"}},
		{"bind four fields", []string{"--rootfs", root, "--bind", "a:b:c:d", "true"}},
		{"bind four fields absolute", []string{"--rootfs", root, "--bind", "/etc:/mnt:ro:x", "true"}},
		{"bind relative destination", []string{"--rootfs", root, "--bind", "/etc:relative", "true"}},
		{"quiet and verbose", []string{"-q", "-v", "--rootfs", root, "true"}},
		{"unknown flag", []string{"--no-such-flag", "--rootfs", root, "true"}},
		{"bad --net", []string{"--rootfs", root, "--net", "bogus", "true"}},
		{"missing --env-file", []string{"--rootfs", root, "--env-file", missing, "true"}},
		{"no command", []string{"--rootfs", root}},
		{"missing --pwd dir", []string{"--rootfs", root, "--pwd", "/no/such/dir", "true"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpBefore := tmpHpcrunEntries(t)
			r := run(t, opts{}, tc.args...)
			assertOneErrorLine(t, r)
			if after := tmpHpcrunEntries(t); strings.Join(after, ",") != strings.Join(tmpBefore, ",") {
				t.Errorf("/tmp hpcrun* entries changed: before %q, after %q", tmpBefore, after)
			}
			assertUnchanged(t, root, before)
		})
	}
}

// TestUsernsDisabled turns user namespaces off inside a user namespace of our
// own (user.* sysctls are per user namespace) and expects hpcrun to say so.
func TestUsernsDisabled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to write user.max_user_namespaces in a child user namespace")
	}
	needUserns(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	tmpBefore := tmpHpcrunEntries(t)
	r := runRaw(opts{asRoot: true}, unshare, "--user", "--map-root-user", "sh", "-c",
		`echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" --rootfs "$1" true`, binPath, rootfsDir)
	if r.err != nil {
		t.Fatal(r)
	}
	assertOneErrorLine(t, r)
	if !strings.Contains(r.stderr, "user.max_user_namespaces") {
		t.Errorf("want the message to name the sysctl user.max_user_namespaces, got %q", r.stderr)
	}
	if after := tmpHpcrunEntries(t); strings.Join(after, ",") != strings.Join(tmpBefore, ",") {
		t.Errorf("/tmp hpcrun* entries changed: before %q, after %q", tmpBefore, after)
	}
}

// The container's init stage starts before cobra, pflag or any image
// library initializes (package early): those cost every job start time
// for nothing. GODEBUG=inittrace lists the packages that did initialize.
func TestInitStageSkipsCLIInitialization(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binPath)
	cmd.Args = []string{"hpcrun-init"} // as runtime.InitArg0; no config on fd 3, so it stops at once
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "init github.com/hpcrun/hpcrun/runtime") {
		t.Fatalf("no init trace from the init stage: %q", out)
	}
	for _, pkg := range []string{"github.com/spf13/cobra", "github.com/spf13/pflag", "text/template"} {
		if strings.Contains(string(out), "init "+pkg+" ") {
			t.Errorf("the init stage initialized %s:\n%s", pkg, out)
		}
	}
}
