package safedir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// MkdirAll makes what is missing only below a directory that passes
// CheckParents, and makes nothing in one that fails it.
func TestMkdirAll(t *testing.T) {
	uid := os.Getuid()
	base := t.TempDir()
	sticky := filepath.Join(base, "sticky")
	open := filepath.Join(base, "open")
	for _, d := range []string{sticky, open} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(open, filepath.Join(base, "to-open")); err != nil {
		t.Fatal(err)
	}

	// Made, 0700, in a sticky dir like /tmp; made again is no error.
	for range 2 {
		d := filepath.Join(sticky, "a/b")
		if err := MkdirAll(d, uid); err != nil {
			t.Fatalf("in a sticky dir: %v", err)
		}
		for _, p := range []string{filepath.Join(sticky, "a"), d} {
			if fi, err := os.Lstat(p); err != nil || !fi.IsDir() || fi.Mode().Perm()&^0o700 != 0 {
				t.Errorf("%s: %v, %v; want a dir with no group or other bits", p, fi, err)
			}
		}
	}

	// Refused, and nothing made, in a dir others can write, directly or
	// through a symlink.
	for _, d := range []string{filepath.Join(open, "a/b"), filepath.Join(base, "to-open/a")} {
		var pe *ParentError
		if err := MkdirAll(d, uid); !errors.As(err, &pe) || pe.Path != open {
			t.Errorf("MkdirAll(%s) = %v, want a ParentError for %s", d, err, open)
		}
	}
	if ents, _ := os.ReadDir(open); len(ents) != 0 {
		t.Errorf("MkdirAll made %v in a dir others can write", ents)
	}

	// A dangling symlink where a dir is to be made (planted meanwhile in a
	// sticky dir) is not followed.
	target := filepath.Join(open, "planted")
	if err := os.Symlink(target, filepath.Join(sticky, "link")); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(sticky, "link/c"), uid); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("through a dangling symlink: err = %v", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("MkdirAll followed a dangling symlink to %s", target)
	}

	// A dir of someone else's, made before ours could be.
	if uid == 0 {
		theirs := filepath.Join(sticky, "theirs")
		if err := os.Mkdir(theirs, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(theirs, 0o777)
		if err := os.Chown(theirs, 65533, 65533); err != nil {
			t.Fatal(err)
		}
		var pe *ParentError
		if err := MkdirAll(filepath.Join(theirs, "run"), 65532); !errors.As(err, &pe) || pe.Owner != 65533 {
			t.Errorf("in another user's dir: err = %v, want a ParentError naming uid 65533", err)
		}
		if ents, _ := os.ReadDir(theirs); len(ents) != 0 {
			t.Errorf("MkdirAll made %v in another user's dir", ents)
		}
	}
}

// OpenDir walks from / without following what it should not: the caller's
// and root's symlinks above the directory are followed (relative ones with
// .. too), another user's is refused, the directory itself must not be a
// symlink, and a missing one is fs.ErrNotExist.
func TestOpenDir(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "b/c"} {
		os.MkdirAll(filepath.Join(base, d), 0o700)
	}
	os.Symlink("../b", filepath.Join(base, "a", "up"))
	os.Symlink(filepath.Join(base, "b"), filepath.Join(base, "abs"))
	os.Symlink(filepath.Join(base, "b", "c"), filepath.Join(base, "last"))
	os.Symlink("loop", filepath.Join(base, "loop"))
	for _, tc := range []struct {
		path, want string
		err        error
	}{
		{filepath.Join(base, "b", "c"), filepath.Join(base, "b", "c"), nil},
		{filepath.Join(base, "a", "up", "c"), filepath.Join(base, "b", "c"), nil},
		{filepath.Join(base, "abs", "c"), filepath.Join(base, "b", "c"), nil},
		{filepath.Join(base, "last"), "", syscall.ELOOP},
		{filepath.Join(base, "loop", "x"), "", syscall.ELOOP},
		{filepath.Join(base, "missing", "x"), "", fs.ErrNotExist},
		{filepath.Join(base, "b", "missing"), "", fs.ErrNotExist},
	} {
		fd, path, parents, err := OpenDir(tc.path)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("OpenDir(%s): %v, want %v", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil || path != tc.want {
			t.Errorf("OpenDir(%s) = %s, %v; want %s", tc.path, path, err, tc.want)
			continue
		}
		var st, want syscall.Stat_t
		syscall.Fstat(fd, &st)
		syscall.Stat(tc.want, &want)
		if st.Ino != want.Ino || st.Dev != want.Dev {
			t.Errorf("OpenDir(%s) opened another directory", tc.path)
		}
		if len(parents) == 0 || parents[0].Path != "/" || parents[len(parents)-1].Path != filepath.Dir(tc.want) {
			t.Errorf("OpenDir(%s): parents %v", tc.path, parents)
		}
		syscall.Close(fd)
	}
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("another user's symlink needs root to make, and CI runs as root")
		}
		t.Skip("another user's symlink needs root to make")
	}
	// Root follows no user's symlink: it could lead to another user's dir.
	if err := os.Lchown(filepath.Join(base, "abs"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	var pe *ParentError
	if _, _, _, err := OpenDir(filepath.Join(base, "abs", "c")); !errors.As(err, &pe) || pe.Owner != 65534 {
		t.Errorf("through another user's symlink: %v", err)
	}
}
