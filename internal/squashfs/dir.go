package squashfs

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"strings"
)

// DirEntry is one name in a directory.
type DirEntry struct {
	Name   string
	Ref    uint64 // its inode's reference
	Number uint32 // its inode number
	IsDir  bool
}

// maxDirSize caps one directory's listing: 64 MiB lists some two million
// names, more than any real directory holds, and bounds what listing a
// forged one allocates.
const maxDirSize = 64 << 20

// ErrNotExist is what Lookup gives for a path that is not there.
var ErrNotExist = fs.ErrNotExist

// ReadDir lists dir, a directory's inode, in the order the image holds
// its names (mksquashfs sorts them). The names are as the image has them;
// callers check them.
func (sq *Reader) ReadDir(dir *Inode) ([]DirEntry, error) {
	if !dir.Mode.IsDir() {
		return nil, errors.New("not a directory")
	}
	if dir.dirSize <= 3 {
		return nil, nil
	}
	if dir.dirSize > maxDirSize {
		return nil, damaged("a directory listing of %d bytes", dir.dirSize)
	}
	left := int64(dir.dirSize) - 3
	// A directory's listing lies in the directory table; its end is the
	// next table, which for an image without fragments may be any.
	m, err := sq.metaAt(sq.sb.DirTable, uint64(dir.dirStart)<<16|uint64(dir.dirOffset), sq.sb.BytesUsed)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	le := binary.LittleEndian
	for left > 0 {
		var h [12]byte
		if err := m.full(h[:]); err != nil {
			return nil, err
		}
		left -= 12
		count, start, base := le.Uint32(h[0:])+1, le.Uint32(h[4:]), le.Uint32(h[8:])
		if count > 256 {
			return nil, damaged("a directory header of %d entries", count)
		}
		for range count {
			var e [8]byte
			if err := m.full(e[:]); err != nil {
				return nil, err
			}
			off, delta, typ, n := le.Uint16(e[0:]), int16(le.Uint16(e[2:])), le.Uint16(e[4:]), int(le.Uint16(e[6:]))+1
			if n > 256 {
				return nil, damaged("a directory entry name of %d bytes", n)
			}
			name := make([]byte, n)
			if err := m.full(name); err != nil {
				return nil, err
			}
			left -= 8 + int64(n)
			if typ < typeDir || typ > typeSocket {
				return nil, damaged("directory entry %q has type %d", name, typ)
			}
			out = append(out, DirEntry{
				Name:   string(name),
				Ref:    uint64(start)<<16 | uint64(off),
				Number: uint32(int64(base) + int64(delta)),
				IsDir:  typ == typeDir,
			})
		}
	}
	if left < 0 {
		return nil, damaged("a directory listing runs past its size")
	}
	return out, nil
}

// Lookup returns the inode at name, a slash-separated path from the
// root, without following symlinks on the way.
func (sq *Reader) Lookup(name string) (*Inode, error) {
	ino, err := sq.Root()
	if err != nil {
		return nil, err
	}
	for part := range strings.SplitSeq(strings.Trim(name, "/"), "/") {
		if part == "" || part == "." {
			continue
		}
		if !ino.Mode.IsDir() {
			return nil, ErrNotExist
		}
		des, err := sq.ReadDir(ino)
		if err != nil {
			return nil, err
		}
		found := false
		for _, de := range des {
			if de.Name == part {
				if ino, err = sq.Inode(de.Ref); err != nil {
					return nil, err
				}
				found = true
				break
			}
		}
		if !found {
			return nil, ErrNotExist
		}
	}
	return ino, nil
}
