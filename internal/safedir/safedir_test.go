package safedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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
