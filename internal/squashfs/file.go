package squashfs

import (
	"errors"
	"io"
	"sync"
)

// Open returns a reader of ino's content, a regular file's. Several may
// be read at once.
func (sq *Reader) Open(ino *Inode) (io.Reader, error) {
	if !ino.Mode.IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f := &fileReader{sq: sq, ino: ino, left: ino.Size, at: ino.blocksStart}
	bs := int64(sq.sb.BlockSize)
	f.blocks = ino.Size / bs
	if ino.fragIndex == noIndex && ino.Size%bs != 0 {
		f.blocks++
	}
	if f.blocks > 0 {
		m, err := sq.metaResume(ino.sizesAt, ino.sizesPos, sq.sb.DirTable)
		if err != nil {
			return nil, err
		}
		f.sizes = m
	}
	return f, nil
}

// blockBufs are data blocks' buffers, reused.
var blockBufs = sync.Pool{New: func() any { return make([]byte, 1<<20) }}

// fileReader reads a file block by block, then its tail from its
// fragment.
type fileReader struct {
	sq     *Reader
	ino    *Inode
	sizes  *metaReader // its block sizes, read as its blocks are
	blocks int64       // blocks left to read
	at     uint64      // where the next block lies
	left   int64       // bytes left to give
	cur    []byte      // what is left of the block read last
	buf    []byte      // from blockBufs, while the file is read
	done   bool
}

func (f *fileReader) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		if f.left == 0 {
			f.release()
			return 0, io.EOF
		}
		if err := f.fill(); err != nil {
			f.release()
			return 0, err
		}
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}

func (f *fileReader) release() {
	if f.buf != nil {
		blockBufs.Put(f.buf)
		f.buf = nil
	}
}

// fill reads the next block, or the tail.
func (f *fileReader) fill() error {
	sq, bs := f.sq, int64(f.sq.sb.BlockSize)
	want := min(bs, f.left)
	if f.blocks == 0 {
		// The tail, in a fragment.
		if f.ino.fragIndex == noIndex {
			return damaged("inode %#x: its blocks end %d bytes early", f.ino.Ref, f.left)
		}
		frag, err := sq.fragment(f.ino.fragIndex)
		if err != nil {
			return err
		}
		start := int64(f.ino.fragOffset)
		if start+want > int64(len(frag)) {
			return damaged("inode %#x: its tail lies past its fragment", f.ino.Ref)
		}
		f.cur = frag[start : start+want]
		f.left -= want
		return nil
	}
	size, err := f.sizes.u32()
	if err != nil {
		return err
	}
	f.blocks--
	if f.buf == nil {
		f.buf = blockBufs.Get().([]byte)
	}
	out := f.buf[:want]
	n := size &^ uncompressedBit
	switch {
	case n == 0:
		// A hole: zeros, stored as nothing.
		clear(out)
	case n > uint32(bs):
		return damaged("inode %#x: a block of %d bytes", f.ino.Ref, n)
	case size&uncompressedBit != 0:
		if int64(n) != want {
			return damaged("inode %#x: a stored block of %d bytes, not %d", f.ino.Ref, n, want)
		}
		if err := sq.readAt(out, f.at); err != nil {
			return err
		}
	default:
		raw := make([]byte, n)
		if err := sq.readAt(raw, f.at); err != nil {
			return err
		}
		got, err := sq.dec(raw, f.buf[:bs])
		if err != nil {
			return damaged("inode %#x: a block at %d: %v", f.ino.Ref, f.at, err)
		}
		if int64(got) != want {
			return damaged("inode %#x: a block at %d holds %d bytes, not %d", f.ino.Ref, f.at, got, want)
		}
	}
	f.at += uint64(n)
	f.cur = out
	f.left -= want
	return nil
}

// fragment returns fragment i decompressed, from the cache when it is
// there: the small files that share one are read one after another.
func (sq *Reader) fragment(i uint32) ([]byte, error) {
	fr := sq.frags[i]
	key := cacheKey{off: fr.start}
	if b, _, ok := sq.cache.get(key); ok {
		return b, nil
	}
	n := fr.size &^ uncompressedBit
	if n == 0 || n > sq.sb.BlockSize {
		return nil, damaged("fragment %d of %d bytes", i, n)
	}
	raw := make([]byte, n)
	if err := sq.readAt(raw, fr.start); err != nil {
		return nil, err
	}
	out := raw
	if fr.size&uncompressedBit == 0 {
		out = make([]byte, sq.sb.BlockSize)
		got, err := sq.dec(raw, out)
		if err != nil {
			return nil, damaged("fragment %d: %v", i, err)
		}
		out = out[:got]
	}
	sq.cache.put(key, out, 0)
	return out, nil
}

// xattrPrefixes are the namespaces an xattr's type names.
var xattrPrefixes = map[uint16]string{0: "user.", 1: "trusted.", 2: "security."}

// maxXattrs caps how many bytes of xattrs one inode's may take, as the
// kernel caps them (XATTR_SIZE_MAX is 64 KiB a value).
const maxXattrs = 1 << 20

// Xattrs returns ino's extended attributes; nil when it has none.
func (sq *Reader) Xattrs(ino *Inode) (map[string]string, error) {
	if ino.xattr == noIndex || sq.xattrBase == noTable {
		return nil, nil
	}
	id := sq.xattrIDs[ino.xattr]
	if id.count > 65536 {
		return nil, damaged("inode %#x has %d xattrs", ino.Ref, id.count)
	}
	m, err := sq.metaAt(sq.xattrBase, id.ref, sq.sb.XattrIDTable)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, id.count)
	total := 0
	for range id.count {
		typ, err := m.u16()
		if err != nil {
			return nil, err
		}
		n, err := m.u16()
		if err != nil {
			return nil, err
		}
		name := make([]byte, n)
		if err := m.full(name); err != nil {
			return nil, err
		}
		vsize, err := m.u32()
		if err != nil {
			return nil, err
		}
		vm := m
		if typ&0x100 != 0 {
			// The value lies elsewhere: a reference to it follows.
			if vsize != 8 {
				return nil, damaged("inode %#x: an out-of-line xattr reference of %d bytes", ino.Ref, vsize)
			}
			ref, err := m.u64()
			if err != nil {
				return nil, err
			}
			if vm, err = sq.metaAt(sq.xattrBase, ref, sq.sb.XattrIDTable); err != nil {
				return nil, err
			}
			if vsize, err = vm.u32(); err != nil {
				return nil, err
			}
		}
		total += int(n) + int(vsize)
		if vsize > 1<<16 || total > maxXattrs {
			return nil, damaged("inode %#x: xattrs of more than %d bytes", ino.Ref, maxXattrs)
		}
		value := make([]byte, vsize)
		if err := vm.full(value); err != nil {
			return nil, err
		}
		prefix, ok := xattrPrefixes[typ&0xff]
		if !ok {
			return nil, damaged("inode %#x: an xattr of type %d", ino.Ref, typ)
		}
		out[prefix+string(name)] = string(value)
	}
	return out, nil
}
