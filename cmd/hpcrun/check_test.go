package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hpcrun/hpcrun/check"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
)

// checkTestEnv is a node where everything works but what the test
// changes; no real probe runs.
func checkTestEnv(t *testing.T) check.Env {
	dir := t.TempDir()
	return check.Env{
		UID:   os.Getuid(),
		Cache: filepath.Join(dir, "cache"),
		Dir: func(string) jobs.Dir {
			return jobs.Dir{Exists: true, Writable: true, Free: 10 << 30, FS: "ext4", Local: true}
		},
		UserNS:  func() error { return nil },
		Overlay: func() error { return nil },
	}
}

func TestRunCheckExitStatus(t *testing.T) {
	var out bytes.Buffer
	if err := runCheck(&out, checkTestEnv(t), false); err != nil {
		t.Fatalf("a fine node: %v\n%s", err, out.String())
	}
	if !strings.HasSuffix(out.String(), "hpcrun can run containers on this node\n") {
		t.Errorf("no summary at the end:\n%s", out.String())
	}

	e := checkTestEnv(t)
	e.UserNS = func() error { return &runtime.ProbeError{Step: "clone", Errno: syscall.EPERM} }
	out.Reset()
	err := runCheck(&out, e, false)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("no user namespaces: err %v, want exit status 1\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "fail  user namespaces") || !strings.Contains(out.String(), "      fix: ") {
		t.Errorf("output:\n%s", out.String())
	}

	out.Reset()
	err = runCheck(&out, e, true)
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("--json: err %v, want exit status 1", err)
	}
	var doc struct {
		Failed  bool
		Results []check.Result
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if !doc.Failed || len(doc.Results) == 0 || doc.Results[2].Name != "user namespaces" || doc.Results[2].Status != check.Fail || doc.Results[2].Fix == "" {
		t.Errorf("--json: %+v", doc)
	}
}

func TestCheckCommandLine(t *testing.T) {
	for _, args := range [][]string{{"check", "--frobnicate"}, {"check", "extra"}} {
		var stderr bytes.Buffer
		if code := execute(args, &stderr, nil); code != 125 {
			t.Errorf("%q: exit %d, want 125; %s", args, code, stderr.String())
		}
	}
	root := newRootCommand(nil)
	c, _, err := root.Find([]string{"check"})
	if err != nil || c.Name() != "check" {
		t.Fatalf("no check command: %v", err)
	}
	if c.Example == "" || !strings.Contains(c.Long, "EXIT STATUS") || !strings.Contains(c.Long, "  1 ") {
		t.Errorf("check --help lacks its example or exit status:\n%s\n%s", c.Long, c.Example)
	}
	if c.Flags().Lookup("cache") == nil || c.Flags().Lookup("json") == nil {
		t.Error("check has no --cache or --json")
	}
}
