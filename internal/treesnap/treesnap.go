// Package treesnap describes a directory tree entry by entry, so that two
// trees can be compared: the tests check with it that the unpacker's fast
// path builds the same tree as umoci.
package treesnap

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Take describes every entry under root (root itself as "."): type and
// mode, size, content hash, symlink target, xattrs, which earlier path it
// is a hardlink of, and mtime. An mtime after since is written as "new":
// entries made without a time of their own get the time of the unpack,
// which differs between two unpacks.
func Take(root string, since time.Time) (map[string]string, error) {
	snap := map[string]string{}
	inodes := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%v size=%d", fi.Mode(), fi.Size())
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			id := [2]uint64{st.Dev, st.Ino}
			if first, ok := inodes[id]; ok {
				fmt.Fprintf(&b, " link-of=%q", first)
			} else {
				inodes[id] = rel
			}
		}
		switch {
		case fi.Mode().IsRegular():
			sum, err := hashFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " sha256=%x", sum)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %q", target)
		}
		x, err := xattrs(p)
		if err != nil {
			return err
		}
		if x != "" {
			b.WriteString(" xattrs=" + x)
		}
		if mt := time.Unix(st.Mtim.Unix()); mt.Before(since) {
			fmt.Fprintf(&b, " mtime=%d", mt.UnixNano())
		} else {
			b.WriteString(" mtime=new")
		}
		snap[rel] = b.String()
		return nil
	})
	return snap, err
}

// Diff lists how b differs from a; empty when they are the same.
func Diff(a, b map[string]string) []string {
	var d []string
	for p, sa := range a {
		sb, ok := b[p]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("only in the first: %s %s", p, sa))
		case sa != sb:
			d = append(d, fmt.Sprintf("%s: %s != %s", p, sa, sb))
		}
	}
	for p, sb := range b {
		if _, ok := a[p]; !ok {
			d = append(d, fmt.Sprintf("only in the second: %s %s", p, sb))
		}
	}
	sort.Strings(d)
	return d
}

func hashFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// xattrs lists p's extended attributes, sorted, as name=value pairs.
func xattrs(p string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return "", nil
		}
		return "", fmt.Errorf("llistxattr %s: %w", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		v := make([]byte, 65536)
		k, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return "", fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, v[:k]))
	}
	return strings.Join(out, ","), nil
}
