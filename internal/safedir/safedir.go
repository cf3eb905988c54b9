// Package safedir checks that a directory of private state (the image
// cache, container state) cannot be swapped by another user: whoever can
// rename or replace it, or a directory above it, can plant what hpcrun
// then trusts. It imports only the standard library: hpcrun links it into
// every start.
package safedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ParentError names a parent directory that someone else could change.
type ParentError struct {
	Path  string
	Owner int         // its owner, when that is the problem; else -1
	Mode  fs.FileMode // its permissions, when they are the problem
}

func (e *ParentError) Error() string {
	if e.Owner >= 0 {
		return fmt.Sprintf("%s belongs to uid %d", e.Path, e.Owner)
	}
	return fmt.Sprintf("%s can be written by others (mode %04o)", e.Path, e.Mode.Perm())
}

// CheckParents checks dir and every directory above it: each must belong
// to root or to uid, and be writable by nobody else unless it is sticky
// (as /tmp and /var/tmp are). dir's symlinks must be resolved already.
func CheckParents(dir string, uid int) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := checkDir(p, fi, uid); err != nil {
			return err
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

// MkdirAll makes dir (absolute) and the directories missing above it,
// mode 0700, as os.MkdirAll does, but first checks with CheckParents the
// deepest one that exists: nothing is created in a directory that someone
// else could write to or swap, or that a symlink of someone else's leads
// to. A directory that appears meanwhile (another user's, in a sticky
// /tmp) must pass the same check before anything is made in it. The
// caller still checks dir itself, whoever made it. When dir exists this
// costs one stat, as os.MkdirAll does.
func MkdirAll(dir string, uid int) error {
	var missing []string // deepest first
	p := filepath.Clean(dir)
	for {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || p == "/" || p == "." {
			return err
		}
		missing = append(missing, filepath.Base(p))
		p = filepath.Dir(p)
	}
	if len(missing) == 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	if err := CheckParents(real, uid); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		real = filepath.Join(real, missing[i])
		err := os.Mkdir(real, 0o700)
		if err == nil {
			continue // ours and 0700: nobody else can put anything in it
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		if i == 0 {
			return nil // dir itself, which the caller checks
		}
		// Made by someone else since the stat: a symlink is refused
		// rather than followed, a directory is checked like the rest.
		fi, err := os.Lstat(real)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink", real)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", real)
		}
		if err := checkDir(real, fi, uid); err != nil {
			return err
		}
	}
	return nil
}

// checkDir checks one directory of CheckParents.
func checkDir(p string, fi fs.FileInfo, uid int) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
	case st.Uid != 0 && int(st.Uid) != uid:
		return &ParentError{Path: p, Owner: int(st.Uid)}
	case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return &ParentError{Path: p, Owner: -1, Mode: fi.Mode()}
	}
	return nil
}
