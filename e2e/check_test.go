package e2e

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkLine is the line of `hpcrun check`'s output for a check, or "".
func checkLine(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 6 && strings.HasPrefix(l[6:], name+"  ") {
			return l
		}
	}
	return ""
}

// TestCheck: on this machine, as the unprivileged user, every check that a
// container needs passes, and check creates nothing.
func TestCheck(t *testing.T) {
	t.Parallel()
	needUserns(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	r := mustRun(t, opts{env: []string{"HPCRUN_CACHE=" + cache}}, "check")
	for _, name := range []string{"user namespaces", "image cache", "container state"} {
		if l := checkLine(r.stdout, name); !strings.HasPrefix(l, "ok    ") {
			t.Errorf("%s: want an ok line, got %q\n%s", name, l, r)
		}
	}
	if l := checkLine(r.stdout, "image cache"); !strings.Contains(l, cache+" (HPCRUN_CACHE)") || !strings.Contains(l, "made on first use") {
		t.Errorf("image cache line %q does not name %s as not made yet", l, cache)
	}
	for _, name := range []string{"config", "kernel", "overlayfs", "scheduler"} {
		if checkLine(r.stdout, name) == "" {
			t.Errorf("no %s line\n%s", name, r)
		}
	}
	if !strings.HasSuffix(r.stdout, "hpcrun can run containers on this node\n") &&
		!strings.Contains(r.stdout, "hpcrun can run containers on this node; ") {
		t.Errorf("no summary\n%s", r)
	}
	if _, err := os.Lstat(cache); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("check made the cache %s: %v", cache, err)
	}
	if r.stderr != "" {
		t.Errorf("stderr: %q", r.stderr)
	}

	// A warning is not a failure: under su or sudo XDG_RUNTIME_DIR may
	// still name another user's dir.
	if asOther {
		r = mustRun(t, opts{env: []string{"HPCRUN_CACHE=" + cache, "XDG_RUNTIME_DIR=" + baseDir}}, "check")
		if l := checkLine(r.stdout, "container state"); !strings.HasPrefix(l, "warn  ") || !strings.Contains(l, "belongs to uid 0") {
			t.Errorf("XDG_RUNTIME_DIR of root's: want a warning, got %q\n%s", l, r)
		}
		if !strings.Contains(r.stdout, "      fix: unset XDG_RUNTIME_DIR") {
			t.Errorf("no fix for XDG_RUNTIME_DIR\n%s", r)
		}
	}

	// The JSON form says the same.
	r = mustRun(t, opts{env: []string{"HPCRUN_CACHE=" + cache}}, "check", "--json")
	var doc struct {
		Failed  bool `json:"failed"`
		Results []struct{ Name, Status, Detail, Fix string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("check --json: %v\n%s", err, r)
	}
	if doc.Failed || len(doc.Results) < 8 {
		t.Errorf("check --json: %+v", doc)
	}
}

// TestCheckFails: a cache that cannot work makes check exit 1 and say
// what to do; a bad flag is hpcrun's own error, 125.
func TestCheckFails(t *testing.T) {
	t.Parallel()
	needUserns(t)
	file := filepath.Join(tempDirOwned(t), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		env    []string
		args   []string
		detail string
	}{
		{"HPCRUN_CACHE is a file", []string{"HPCRUN_CACHE=" + file}, nil, file + " (HPCRUN_CACHE): not a directory"},
		{"--cache is a file", nil, []string{"--cache", file}, file + " (--cache): not a directory"},
	}
	if asOther {
		// baseDir is root's, 0755: the test user cannot make a dir in it.
		cases = append(cases, struct {
			name   string
			env    []string
			args   []string
			detail string
		}{"HPCRUN_CACHE cannot be made", []string{"HPCRUN_CACHE=" + baseDir + "/no/cache"}, nil, "cannot create it in " + baseDir})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, opts{env: tc.env}, append([]string{"check"}, tc.args...)...)
			if r.code != 1 {
				t.Fatalf("want exit 1, got %s", r)
			}
			l := checkLine(r.stdout, "image cache")
			if !strings.HasPrefix(l, "fail  ") || !strings.Contains(l, tc.detail) {
				t.Errorf("image cache line %q, want a failure with %q\n%s", l, tc.detail, r)
			}
			if !strings.Contains(r.stdout, "\n      fix: point --cache or HPCRUN_CACHE (or cache: in your config; scratch: in the site's) at a node-local directory of yours on a filesystem that allows exec") {
				t.Errorf("no fix for the cache\n%s", r)
			}
			if !strings.Contains(r.stdout, "hpcrun cannot run containers on this node: fix image cache\n") {
				t.Errorf("no summary naming the cache\n%s", r)
			}
			if l := checkLine(r.stdout, "user namespaces"); !strings.HasPrefix(l, "ok    ") {
				t.Errorf("user namespaces: %q", l)
			}
		})
	}

	r := run(t, opts{}, "check", "--frobnicate")
	if r.code != 125 || !strings.Contains(r.stderr, "unknown flag") {
		t.Errorf("a bad flag: want exit 125, got %s", r)
	}
}

// TestCheckNoUserns: where user.max_user_namespaces is 0, check names
// that sysctl and its fix, gives the errno, and exits 1. The sysctl is
// set to 0 in a user namespace of the test's own, where it stops only the
// namespaces made inside; there the caller is root, who passes the other
// switches anyway.
func TestCheckNoUserns(t *testing.T) {
	t.Parallel()
	needUserns(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	r := runRaw(opts{}, unshare, "--user", "--map-root-user", "sh", "-c",
		`echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" check`, binPath)
	if r.err != nil || r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
	}
	l := checkLine(r.stdout, "user namespaces")
	for _, s := range []string{"fail  ", "user.max_user_namespaces is 0", "ENOSPC"} {
		if !strings.Contains(l, s) {
			t.Errorf("user namespaces line %q lacks %q", l, s)
		}
	}
	if !strings.Contains(r.stdout, l+"\n      fix: sysctl -w user.max_user_namespaces=15000") {
		t.Errorf("no fix under the user namespaces line\n%s", r)
	}
	if l := checkLine(r.stdout, "overlayfs"); !strings.HasPrefix(l, "warn  ") {
		t.Errorf("overlayfs line %q: want a warning", l)
	}
}
