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
	"strconv"
	"strings"
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

// Parent is a directory that OpenDir passed through, as it found it.
type Parent struct {
	Path string
	Stat syscall.Stat_t
}

// OpenDir opens directory dir (absolute) for reading one component at a
// time from /, each with O_NOFOLLOW and relative to the one before: the
// descriptor is the directory that this walk found, and no rename of a
// directory on the way, nor a symlink swapped in meanwhile, can lead it
// elsewhere (a plain open follows every symlink above the last name). A
// symlink above dir is followed only if root or the caller owns it: as
// root, a user's link could lead root to another user's directory. dir
// itself must not be a symlink. It returns the resolved path and the
// directories above it, for CheckStats once the caller knows whose dir
// must be. A missing component is fs.ErrNotExist.
func OpenDir(dir string) (fd int, path string, parents []Parent, err error) {
	fd, err = syscall.Open("/", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	fail := func(err error) (int, string, []Parent, error) {
		syscall.Close(fd)
		return -1, "", nil, err
	}
	path = "/"
	rest := strings.Split(filepath.Clean(dir), "/")
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			return fail(fmt.Errorf("%s: not a clean absolute path", dir))
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return fail(&os.PathError{Op: "fstat", Path: path, Err: err})
		}
		parents = append(parents, Parent{Path: path, Stat: st})
		next := filepath.Join(path, name)
		nfd, err := syscall.Openat(fd, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err == syscall.ELOOP || err == syscall.ENOTDIR {
			// A symlink, or not a directory: which, without following it.
			var lst syscall.Stat_t
			if lerr := fstatat(fd, name, &lst); lerr != nil {
				return fail(&os.PathError{Op: "lstat", Path: next, Err: lerr})
			}
			if lst.Mode&syscall.S_IFMT != syscall.S_IFLNK {
				return fail(&os.PathError{Op: "open", Path: next, Err: syscall.ENOTDIR})
			}
			if len(rest) == 0 {
				return fail(&os.PathError{Op: "open", Path: next, Err: syscall.ELOOP})
			}
			if lst.Uid != 0 && int(lst.Uid) != os.Getuid() {
				return fail(&ParentError{Path: next, Owner: int(lst.Uid)})
			}
			if links++; links > 40 {
				return fail(&os.PathError{Op: "open", Path: dir, Err: syscall.ELOOP})
			}
			target, err := readlinkat(fd, name)
			if err != nil {
				return fail(err)
			}
			// Walked again from /: the target joined to the path found
			// so far, .. taken textually, as filepath.EvalSymlinks does.
			if !filepath.IsAbs(target) {
				target = filepath.Join(path, target)
			}
			syscall.Close(fd)
			if fd, err = syscall.Open("/", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err != nil {
				return -1, "", nil, &os.PathError{Op: "open", Path: "/", Err: err}
			}
			path, parents = "/", nil
			rest = append(strings.Split(filepath.Clean(target), "/"), rest...)
			continue
		}
		if err != nil {
			if err == syscall.ENOENT {
				return fail(fs.ErrNotExist)
			}
			return fail(&os.PathError{Op: "open", Path: next, Err: err})
		}
		syscall.Close(fd)
		fd, path = nfd, next
	}
	return fd, path, parents, nil
}

// CheckStats checks the directories that OpenDir passed through as
// CheckParents checks paths: each root's or uid's, and writable by nobody
// else unless sticky.
func CheckStats(parents []Parent, uid int) error {
	for _, p := range parents {
		st := p.Stat
		switch {
		case st.Uid != 0 && int(st.Uid) != uid:
			return &ParentError{Path: p.Path, Owner: int(st.Uid)}
		case st.Mode&0o022 != 0 && st.Mode&syscall.S_ISVTX == 0:
			return &ParentError{Path: p.Path, Owner: -1, Mode: fs.FileMode(st.Mode & 0o777)}
		}
	}
	return nil
}

// at names entry name of directory dir, for the calls that the syscall
// package has no *at form of: /proc/self/fd/DIR leads to the directory
// itself, whatever its path now, and name is looked up in it.
func at(dir int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dir) + "/" + name
}

func fstatat(dir int, name string, st *syscall.Stat_t) error {
	return syscall.Lstat(at(dir, name), st)
}

func readlinkat(dir int, name string) (string, error) {
	return os.Readlink(at(dir, name))
}
