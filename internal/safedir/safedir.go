// Package safedir checks that a directory of private state (the image
// cache, container state) cannot be swapped by another user: whoever can
// rename or replace it, or a directory above it, can plant what hpcrun
// then trusts. It imports only the standard library: hpcrun links it into
// every start.
package safedir

import (
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
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case !ok:
		case st.Uid != 0 && int(st.Uid) != uid:
			return &ParentError{Path: p, Owner: int(st.Uid)}
		case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
			return &ParentError{Path: p, Owner: -1, Mode: fi.Mode()}
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}
