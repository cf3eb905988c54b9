package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWaitStatusCode(t *testing.T) {
	tests := []struct {
		name string
		ws   syscall.WaitStatus
		want int
	}{
		{"exit 0", 0, 0},
		{"exit 7", 7 << 8, 7},
		{"exit 255", 255 << 8, 255},
		{"SIGKILL", syscall.WaitStatus(syscall.SIGKILL), 137},
		{"SIGTERM", syscall.WaitStatus(syscall.SIGTERM), 143},
		{"SIGSEGV with core", syscall.WaitStatus(syscall.SIGSEGV) | 0x80, 139},
	}
	for _, tc := range tests {
		if got := WaitStatusCode(tc.ws); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("boom"), 125},
		{execError("x", syscall.ENOENT), 127},
		{execError("x", syscall.EACCES), 126},
		{execError("x", syscall.ENOEXEC), 126},
		{execError("x", syscall.E2BIG), 125},
		{fmt.Errorf("wrapped: %w", ErrCommandNotFound), 127},
		{&reportedError{msg: "python: not found", sentinel: ErrCommandNotFound}, 127},
		{&reportedError{msg: "mount failed"}, 125},
		{diagnoseUserNS(syscall.EPERM, func(string) (string, bool) { return "", false }), 125},
	}
	for _, tc := range tests {
		if got := ExitStatus(tc.err); got != tc.want {
			t.Errorf("ExitStatus(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin, noexec := filepath.Join(dir, "bin"), filepath.Join(dir, "noexec")
	for _, d := range []string{bin, noexec, filepath.Join(bin, "adir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(noexec, "tool"), []byte("data"), 0o644)
	os.WriteFile(filepath.Join(noexec, "data"), []byte("data"), 0o644)
	tests := []struct {
		file, path string
		want       string
		wantErr    error
	}{
		{"tool", noexec + ":" + bin, filepath.Join(bin, "tool"), nil},
		{"tool", bin, filepath.Join(bin, "tool"), nil},
		// A name with a slash is used as is, and checked as well.
		{"./rel/x", "", "./rel/x", ErrCommandNotFound},
		{"/abs/x", "", "/abs/x", ErrCommandNotFound},
		{filepath.Join(bin, "tool"), "", filepath.Join(bin, "tool"), nil},
		{filepath.Join(noexec, "data"), "", filepath.Join(noexec, "data"), ErrNotExecutable},
		{"missing", bin, "", ErrCommandNotFound},
		{"adir", bin, "", ErrCommandNotFound},
		{"data", noexec, "", ErrNotExecutable},
	}
	for _, tc := range tests {
		got, err := lookPath(tc.file, tc.path, "")
		if !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q, %v", tc.file, tc.path, got, err, tc.want, tc.wantErr)
		}
	}
	// Relative entries are taken in the directory the command starts in
	// (exec --cwd), not in the caller's.
	for _, path := range []string{"bin", "./bin", "/nonexistent:bin"} {
		if got, err := lookPath("tool", path, dir); err != nil || got != filepath.Join(bin, "tool") {
			t.Errorf("lookPath(tool, %q) in %s = %q, %v; want %s", path, dir, got, err, filepath.Join(bin, "tool"))
		}
	}
	if got, err := lookPath("tool", ":.", bin); err != nil || got != filepath.Join(bin, "tool") {
		t.Errorf("lookPath(tool, \":.\") in %s = %q, %v", bin, got, err)
	}
}

func TestDiagnoseUserNS(t *testing.T) {
	tests := []struct {
		name    string
		sysctls map[string]string
		err     error
		want    string
	}{
		{"max_user_namespaces is 0", map[string]string{"user.max_user_namespaces": "0"}, syscall.ENOSPC,
			"user.max_user_namespaces is 0"},
		{"debian's switch", map[string]string{"user.max_user_namespaces": "1000", "kernel.unprivileged_userns_clone": "0"},
			syscall.EPERM, "kernel.unprivileged_userns_clone"},
		{"apparmor", map[string]string{"kernel.apparmor_restrict_unprivileged_userns": "1"}, syscall.EPERM,
			"kernel.apparmor_restrict_unprivileged_userns"},
		{"limit used up", map[string]string{"user.max_user_namespaces": "5"}, syscall.ENOSPC, "used up"},
		{"something else", map[string]string{}, syscall.EPERM, "seccomp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := diagnoseUserNS(tc.err, func(n string) (string, bool) { v, ok := tc.sysctls[n]; return v, ok })
			if !errors.Is(err, ErrUserNSDisabled) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrUserNSDisabled naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("not one line: %q", err)
			}
		})
	}
}
