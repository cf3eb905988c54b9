package squashfs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/siftest"
)

// richTree is a tree with what the reader must get right: directories of
// more than 256 names (several listing headers), a sparse file, files of
// exactly one block and of none, a file over several blocks with a tail,
// special bits, a long symlink, hardlinks, a fifo and an xattr.
func richTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	write := func(name string, b []byte, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		write(fmt.Sprintf("many/f%03d", i), fmt.Appendf(nil, "small %d\n", i), 0o644)
	}
	write("empty", nil, 0o600)
	write("block", bytes.Repeat([]byte{7}, 128<<10), 0o644)
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(i*7 + i/4096)
	}
	write("deep/a/b/c/d/big", big, 0o755)
	write("setuid", []byte("#!/bin/sh\n"), 0o4755|os.ModeSetuid)
	os.Chmod(filepath.Join(dir, "setuid"), 0o755|os.ModeSetuid|os.ModeSetgid)
	os.Mkdir(filepath.Join(dir, "sticky"), 0o777)
	os.Chmod(filepath.Join(dir, "sticky"), 0o777|os.ModeSticky)
	// Sparse: a hole of 2 MiB, then data.
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("after the hole"), 2<<20)
	f.Close()
	if err := os.Symlink(strings.Repeat("long/", 200)+"target", filepath.Join(dir, "longlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "block"), filepath.Join(dir, "many/hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "empty"), "user.hpcrun", []byte("a value"), 0); err != nil {
		t.Fatalf("setxattr (the test's temp dir must take user xattrs): %v", err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(filepath.Join(dir, "empty"), old, old)
	return dir
}

// describe is one file as the test compares it: type and mode, size, a
// hash of the content or the link target, the mtime and xattrs.
type describe map[string]string

func describeDir(t *testing.T, root string) describe {
	t.Helper()
	out := describe{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		what := ""
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			what = fmt.Sprintf("%x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			what, _ = os.Readlink(p)
		}
		x := ""
		if v, err := xattr(p, "user.hpcrun"); err == nil {
			x = "user.hpcrun=" + v
		}
		mt := ""
		if !fi.IsDir() {
			mt = fi.ModTime().UTC().Format(time.RFC3339)
		}
		out[filepath.ToSlash(rel)] = fmt.Sprintf("%v %d %s %s %s", fi.Mode(), sizeOf(fi), what, mt, x)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sizeOf(fi fs.FileInfo) int64 {
	if fi.Mode().IsRegular() {
		return fi.Size()
	}
	return 0
}

func xattr(p, name string) (string, error) {
	b := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// describeImage reads every file of the squashfs at p as describeDir
// describes a dir.
func describeImage(t *testing.T, p string) describe {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	sq, err := Open(f, 0, fi.Size(), 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	root, err := sq.Root()
	if err != nil {
		t.Fatal(err)
	}
	out := describe{}
	var walk func(dir string, ino *Inode)
	walk = func(dir string, ino *Inode) {
		des, err := sq.ReadDir(ino)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, de := range des {
			name := path.Join(dir, de.Name)
			in, err := sq.Inode(de.Ref)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			what, size := "", int64(0)
			switch {
			case in.Mode.IsRegular():
				r, err := sq.Open(in)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				b, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if int64(len(b)) != in.Size {
					t.Fatalf("%s: %d bytes, inode says %d", name, len(b), in.Size)
				}
				what, size = fmt.Sprintf("%x", sha256.Sum256(b)), in.Size
			case in.Mode&fs.ModeSymlink != 0:
				what = in.Target
			}
			x := ""
			xs, err := sq.Xattrs(in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if v, ok := xs["user.hpcrun"]; ok {
				x = "user.hpcrun=" + v
			}
			mt := ""
			if !in.Mode.IsDir() {
				mt = in.Mtime.UTC().Format(time.RFC3339)
			}
			out[name] = fmt.Sprintf("%v %d %s %s %s", in.Mode, size, what, mt, x)
			if in.Mode.IsDir() {
				walk(name, in)
			}
		}
	}
	walk("", root)
	return out
}

// TestReadsWhatMksquashfsWrites: every compression, and the layouts that
// mksquashfs's options make (stored blocks, no fragments, fragments for
// all, the smallest and largest block sizes), read back as the tree was.
func TestReadsWhatMksquashfsWrites(t *testing.T) {
	siftest.NeedMksquashfs(t)
	dir := richTree(t)
	want := describeDir(t, dir)
	cases := []struct {
		comp  string
		extra []string
	}{
		{"gzip", nil}, {"xz", nil}, {"zstd", nil}, {"lz4", nil}, {"lz4", []string{"-Xhc"}},
		{"lzo", nil}, {"lzma", nil},
		{"gzip", []string{"-noI", "-noD", "-noF", "-noX"}},
		{"zstd", []string{"-no-fragments"}},
		{"lz4", []string{"-always-use-fragments"}},
		{"xz", []string{"-b", "4K"}},
		{"zstd", []string{"-b", "1M"}},
	}
	for _, tc := range cases {
		t.Run(tc.comp+strings.Join(tc.extra, ""), func(t *testing.T) {
			sq := filepath.Join(t.TempDir(), "x.squashfs")
			siftest.Squash(t, dir, sq, tc.comp, tc.extra...)
			got := describeImage(t, sq)
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s: got %q, want %q", name, got[name], w)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("%s: in the image, not in the tree", name)
				}
			}
		})
	}
}

// TestDevices: device numbers as the kernel encodes them, small and large.
func TestDevices(t *testing.T) {
	siftest.NeedMksquashfs(t)
	dir := filepath.Join(t.TempDir(), "root")
	os.Mkdir(dir, 0o755)
	sq := filepath.Join(t.TempDir(), "x.squashfs")
	siftest.Squash(t, dir, sq, "gzip", "-p", "null c 666 0 0 1 3", "-p", "big b 600 0 0 259 300000")
	f, _ := os.Open(sq)
	defer f.Close()
	fi, _ := f.Stat()
	r, err := Open(f, 0, fi.Size(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string][3]uint32{"null": {syscall.S_IFCHR, 1, 3}, "big": {syscall.S_IFBLK, 259, 300000}} {
		ino, err := r.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		isChar := ino.Mode&fs.ModeCharDevice != 0
		if ino.Mode&fs.ModeDevice == 0 || isChar != (w[0] == syscall.S_IFCHR) || ino.Major != w[1] || ino.Minor != w[2] {
			t.Errorf("%s: %v %d:%d, want %v", name, ino.Mode, ino.Major, ino.Minor, w)
		}
	}
}

// TestForged: images whose tables or blocks are forged give ErrDamaged,
// or an error naming what is not read, never a panic.
func TestForged(t *testing.T) {
	siftest.NeedMksquashfs(t)
	dir := filepath.Join(t.TempDir(), "root")
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "f"), bytes.Repeat([]byte("x"), 200000), 0o644)
	sq := filepath.Join(t.TempDir(), "x.squashfs")
	siftest.Squash(t, dir, sq, "gzip")
	good, _ := os.ReadFile(sq)
	set := func(b []byte, off int, v uint64, n int) []byte {
		c := bytes.Clone(b)
		for i := range n {
			c[off+i] = byte(v >> (8 * i))
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		img     []byte
		damaged bool
		want    string
	}{
		{"short", good[:50], true, "less than a superblock"},
		{"no magic", set(good, 0, 0, 4), true, "no squashfs magic"},
		{"version 3", set(good, 28, 3, 2), false, "version 3"},
		{"compression 9", set(good, 20, 9, 2), false, "unknown squashfs compression 9"},
		{"block size 3000", set(good, 12, 3000, 4), true, "block size"},
		{"block log wrong", set(good, 22, 12, 2), true, "block size"},
		{"bytes used past the end", set(good, 40, uint64(len(good))+1, 8), true, "truncated"},
		{"inode table past the directory table", set(good, 64, uint64(len(good)), 8), true, "inode table"},
		{"no ids", set(good, 26, 0, 2), true, "no uid/gid table"},
		{"ids past the end", set(good, 48, uint64(len(good))-4, 8), true, "table"},
		{"many fragments", set(good, 16, 1<<31, 4), true, "fragment table"},
		{"root past the inode table", set(good, 32, 1<<40, 8), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(tc.img)
			if err == nil {
				t.Fatal("read it")
			}
			if errors.Is(err, ErrDamaged) != tc.damaged || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want damaged=%v with %q", err, tc.damaged, tc.want)
			}
		})
	}
	// Every single byte flipped in the tables: no panic, and what reads
	// reads.
	sb, _ := ParseSuperblock(good)
	for off := int(sb.InodeTable); off < len(good); off += 3 {
		img := bytes.Clone(good)
		img[off] ^= 0xa5
		readAll(img)
	}
}

// readAll opens img and reads all of it: every directory, inode, xattr
// and file.
func readAll(img []byte) (int, error) {
	sq, err := Open(bytes.NewReader(img), 0, int64(len(img)), 1<<20)
	if err != nil {
		return 0, err
	}
	root, err := sq.Root()
	if err != nil {
		return 0, err
	}
	n := 0
	seen := map[uint64]bool{}
	var walk func(ino *Inode, depth int) error
	walk = func(ino *Inode, depth int) error {
		if seen[ino.Ref] || depth > 100 {
			return errors.New("loop")
		}
		seen[ino.Ref] = true
		des, err := sq.ReadDir(ino)
		if err != nil {
			return err
		}
		for _, de := range des {
			in, err := sq.Inode(de.Ref)
			if err != nil {
				return err
			}
			n++
			if _, err := sq.Xattrs(in); err != nil {
				return err
			}
			switch {
			case in.Mode.IsDir():
				if err := walk(in, depth+1); err != nil {
					return err
				}
			case in.Mode.IsRegular():
				r, err := sq.Open(in)
				if err != nil {
					return err
				}
				if _, err := io.Copy(io.Discard, io.LimitReader(r, 64<<20)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return n, walk(root, 0)
}

// FuzzOpen: whatever the bytes, reading them ends in an error or a tree,
// never a panic or a hang.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	if _, err := os.Stat("/usr/bin/mksquashfs"); err == nil {
		os.WriteFile(filepath.Join(dir, "f"), []byte("hello\n"), 0o644)
		os.Symlink("f", filepath.Join(dir, "l"))
		for _, comp := range []string{"gzip", "lz4", "zstd"} {
			sq := filepath.Join(f.TempDir(), "x.squashfs")
			siftest.Squash(f, dir, sq, comp)
			b, _ := os.ReadFile(sq)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		readAll(img)
	})
}
