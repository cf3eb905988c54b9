package squashfs

import (
	"encoding/binary"
	"io/fs"
	"strings"
	"time"
)

// Inode types, basic and extended.
const (
	typeDir = 1 + iota
	typeFile
	typeSymlink
	typeBlock
	typeChar
	typeFifo
	typeSocket
	typeExtDir
	typeExtFile
	typeExtSymlink
	typeExtBlock
	typeExtChar
	typeExtFifo
	typeExtSocket
)

// maxSymlink caps a symlink's target, as PATH_MAX does.
const maxSymlink = 4096

// Inode is one file's metadata.
type Inode struct {
	Ref    uint64      // where it lies in the inode table
	Number uint32      // its inode number, the same for each hard link
	Mode   fs.FileMode // type and permission bits, as io/fs has them
	UID    uint32
	GID    uint32
	Mtime  time.Time
	Size   int64  // a regular file's length
	Target string // a symlink's target
	Major  uint32 // a device's numbers
	Minor  uint32

	xattr uint32 // the xattr id, or noIndex

	// A directory's listing.
	dirStart  uint32 // its block, from the directory table's start
	dirOffset uint16 // where in that block
	dirSize   uint32 // its bytes, with the 3 that "." and ".." count

	// A regular file's data.
	blocksStart uint64 // the first block's place
	fragIndex   uint32 // its tail's fragment, or noIndex
	fragOffset  uint32 // where in the fragment its tail lies
	sizesAt     uint64 // the metadata block where its block sizes start
	sizesPos    int    // and where in that block
}

// Root returns the root directory's inode.
func (sq *Reader) Root() (*Inode, error) {
	ino, err := sq.Inode(sq.sb.RootInode)
	if err != nil {
		return nil, err
	}
	if !ino.Mode.IsDir() {
		return nil, damaged("its root is not a directory")
	}
	return ino, nil
}

// Inode reads the inode at ref, a reference into the inode table.
func (sq *Reader) Inode(ref uint64) (*Inode, error) {
	m, err := sq.metaAt(sq.sb.InodeTable, ref, sq.sb.DirTable)
	if err != nil {
		return nil, err
	}
	var h [16]byte
	if err := m.full(h[:]); err != nil {
		return nil, err
	}
	le16, le32 := binary.LittleEndian.Uint16, binary.LittleEndian.Uint32
	typ, perm, uidIdx, gidIdx := le16(h[0:]), le16(h[2:]), le16(h[4:]), le16(h[6:])
	if int(uidIdx) >= len(sq.ids) || int(gidIdx) >= len(sq.ids) {
		return nil, damaged("inode %#x names uid/gid entry %d or %d of %d", ref, uidIdx, gidIdx, len(sq.ids))
	}
	ino := &Inode{
		Ref:    ref,
		Number: le32(h[12:]),
		Mode:   fs.FileMode(perm & 0o777),
		UID:    sq.ids[uidIdx],
		GID:    sq.ids[gidIdx],
		Mtime:  time.Unix(int64(le32(h[8:])), 0),
		xattr:  noIndex,
	}
	if perm&0o4000 != 0 {
		ino.Mode |= fs.ModeSetuid
	}
	if perm&0o2000 != 0 {
		ino.Mode |= fs.ModeSetgid
	}
	if perm&0o1000 != 0 {
		ino.Mode |= fs.ModeSticky
	}
	switch typ {
	case typeDir:
		ino.Mode |= fs.ModeDir
		var b [16]byte
		if err := m.full(b[:]); err != nil {
			return nil, err
		}
		ino.dirStart, ino.dirSize, ino.dirOffset = le32(b[0:]), uint32(le16(b[8:])), le16(b[10:])
	case typeExtDir:
		ino.Mode |= fs.ModeDir
		var b [24]byte
		if err := m.full(b[:]); err != nil {
			return nil, err
		}
		ino.dirSize, ino.dirStart, ino.dirOffset, ino.xattr = le32(b[4:]), le32(b[8:]), le16(b[18:]), le32(b[20:])
	case typeFile, typeExtFile:
		if err := sq.fileInode(m, ino, typ == typeExtFile); err != nil {
			return nil, err
		}
	case typeSymlink, typeExtSymlink:
		ino.Mode |= fs.ModeSymlink
		var b [8]byte
		if err := m.full(b[:]); err != nil {
			return nil, err
		}
		n := le32(b[4:])
		if n == 0 || n > maxSymlink {
			return nil, damaged("inode %#x: a symlink target of %d bytes", ref, n)
		}
		t := make([]byte, n)
		if err := m.full(t); err != nil {
			return nil, err
		}
		ino.Target = string(t)
		if strings.IndexByte(ino.Target, 0) >= 0 {
			return nil, damaged("inode %#x: a symlink target with a NUL in it", ref)
		}
		if typ == typeExtSymlink {
			if ino.xattr, err = m.u32(); err != nil {
				return nil, err
			}
		}
	case typeBlock, typeChar, typeExtBlock, typeExtChar:
		if typ == typeBlock || typ == typeExtBlock {
			ino.Mode |= fs.ModeDevice
		} else {
			ino.Mode |= fs.ModeDevice | fs.ModeCharDevice
		}
		var b [8]byte
		if err := m.full(b[:]); err != nil {
			return nil, err
		}
		dev := le32(b[4:])
		ino.Major, ino.Minor = (dev&0xfff00)>>8, (dev&0xff)|((dev>>12)&0xfff00)
		if typ >= typeExtDir {
			if ino.xattr, err = m.u32(); err != nil {
				return nil, err
			}
		}
	case typeFifo, typeSocket, typeExtFifo, typeExtSocket:
		if typ == typeFifo || typ == typeExtFifo {
			ino.Mode |= fs.ModeNamedPipe
		} else {
			ino.Mode |= fs.ModeSocket
		}
		if _, err := m.u32(); err != nil { // the link count
			return nil, err
		}
		if typ >= typeExtDir {
			if ino.xattr, err = m.u32(); err != nil {
				return nil, err
			}
		}
	default:
		return nil, damaged("inode %#x has type %d", ref, typ)
	}
	if ino.xattr != noIndex && int64(ino.xattr) >= int64(len(sq.xattrIDs)) {
		return nil, damaged("inode %#x names xattr entry %d of %d", ref, ino.xattr, len(sq.xattrIDs))
	}
	return ino, nil
}

// fileInode reads the rest of a regular file's inode, up to its block
// sizes, whose place it records: they are read as the file is.
func (sq *Reader) fileInode(m *metaReader, ino *Inode, ext bool) error {
	var size uint64
	if ext {
		var b [40]byte
		if err := m.full(b[:]); err != nil {
			return err
		}
		le := binary.LittleEndian
		ino.blocksStart, size = le.Uint64(b[0:]), le.Uint64(b[8:])
		ino.fragIndex, ino.fragOffset, ino.xattr = le.Uint32(b[28:]), le.Uint32(b[32:]), le.Uint32(b[36:])
	} else {
		var b [16]byte
		if err := m.full(b[:]); err != nil {
			return err
		}
		le := binary.LittleEndian
		ino.blocksStart, size = uint64(le.Uint32(b[0:])), uint64(le.Uint32(b[12:]))
		ino.fragIndex, ino.fragOffset = le.Uint32(b[4:]), le.Uint32(b[8:])
	}
	if size > 1<<62 {
		return damaged("inode %#x: a file of %d bytes", ino.Ref, size)
	}
	ino.Size = int64(size)
	if ino.fragIndex != noIndex {
		if int64(ino.fragIndex) >= int64(len(sq.frags)) {
			return damaged("inode %#x names fragment %d of %d", ino.Ref, ino.fragIndex, len(sq.frags))
		}
		if uint64(ino.fragOffset)+size%uint64(sq.sb.BlockSize) > uint64(sq.sb.BlockSize) {
			return damaged("inode %#x: its tail lies past its fragment", ino.Ref)
		}
	}
	// The block sizes follow: the file's reader takes them up there.
	ino.sizesAt, ino.sizesPos = m.place()
	return nil
}
