// Package squashfs reads a squashfs (version 4, what mksquashfs has
// written since 2009) in place, in pure Go, as hpcrun unpacks SIF and
// squashfs images.
//
// It reads every compression mksquashfs writes: gzip, lzma, lzo, xz, lz4
// and zstd, with lz4 and lzo as the bare blocks that squashfs-tools
// writes. It reads what unpacking needs: the tree, each inode's metadata
// and extended attributes, and file contents; not the export or the
// directory index tables, which only speed up lookups by a kernel.
//
// The image is input from users, so everything in it is checked before
// it is used: every table and block must lie inside the image, every
// block inflates to at most its fixed size, a directory is listed at most
// once, and an index (uid, gid, fragment, xattr) must name an entry of its
// table. A forged image gives an error, never a panic or a read past the
// image, nor an allocation its size does not bound.
//
// A Reader is safe for use by several goroutines at once.
package squashfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
)

// ErrDamaged wraps every error a forged, damaged or truncated image
// gives.
var ErrDamaged = errors.New("damaged squashfs")

func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprintf(format, args...))
}

const (
	superSize = 96
	magic     = "hsqs"
	// metaSize is the most a metadata block holds.
	metaSize = 8192
	// noTable marks an absent table in the superblock.
	noTable = ^uint64(0)
	// noIndex marks an absent fragment or xattr in an inode.
	noIndex = ^uint32(0)
	// uncompressedBit marks a data block or fragment stored as is.
	uncompressedBit = 1 << 24
	// uncompressedMeta marks a metadata block stored as is.
	uncompressedMeta = 0x8000
	// maxTable caps a lookup table (fragments, xattr ids) at 4 Mi
	// entries: an image of a few TiB of small files has fewer.
	maxTable = 64 << 20
)

// Superblock is what a squashfs's first 96 bytes say.
type Superblock struct {
	Inodes        uint32
	BlockSize     uint32
	Fragments     uint32
	Compression   uint16
	BlockLog      uint16
	Flags         uint16
	IDs           uint16
	Major, Minor  uint16
	RootInode     uint64
	BytesUsed     uint64
	IDTable       uint64
	XattrIDTable  uint64
	InodeTable    uint64
	DirTable      uint64
	FragmentTable uint64
	ExportTable   uint64
}

// ParseSuperblock reads a superblock from b, its first 96 bytes, and
// checks what the rest of the reader relies on. Errors that are not
// ErrDamaged name what the reader does not read (another version, an
// unknown compression). The superblock comes back with any error but a
// short b or a missing magic, for a caller's own messages.
func ParseSuperblock(b []byte) (*Superblock, error) {
	if len(b) < superSize {
		return nil, damaged("%d bytes, less than a superblock", len(b))
	}
	if string(b[:4]) != magic {
		return nil, damaged("no squashfs magic")
	}
	le := binary.LittleEndian
	sb := &Superblock{
		Inodes:        le.Uint32(b[4:]),
		BlockSize:     le.Uint32(b[12:]),
		Fragments:     le.Uint32(b[16:]),
		Compression:   le.Uint16(b[20:]),
		BlockLog:      le.Uint16(b[22:]),
		Flags:         le.Uint16(b[24:]),
		IDs:           le.Uint16(b[26:]),
		Major:         le.Uint16(b[28:]),
		Minor:         le.Uint16(b[30:]),
		RootInode:     le.Uint64(b[32:]),
		BytesUsed:     le.Uint64(b[40:]),
		IDTable:       le.Uint64(b[48:]),
		XattrIDTable:  le.Uint64(b[56:]),
		InodeTable:    le.Uint64(b[64:]),
		DirTable:      le.Uint64(b[72:]),
		FragmentTable: le.Uint64(b[80:]),
		ExportTable:   le.Uint64(b[88:]),
	}
	switch {
	case sb.Major != 4:
		return sb, fmt.Errorf("squashfs version %d.%d; version 4 is read", sb.Major, sb.Minor)
	case Compressions[sb.Compression] == "":
		return sb, fmt.Errorf("unknown squashfs compression %d", sb.Compression)
	case sb.BlockSize < 4096 || sb.BlockSize > 1<<20 || bits.OnesCount32(sb.BlockSize) != 1 ||
		uint32(1)<<sb.BlockLog != sb.BlockSize:
		return sb, damaged("block size %d (log %d)", sb.BlockSize, sb.BlockLog)
	case sb.InodeTable >= sb.DirTable || sb.DirTable > sb.BytesUsed || sb.InodeTable < superSize:
		return sb, damaged("inode table at %d, directory table at %d, %d bytes used", sb.InodeTable, sb.DirTable, sb.BytesUsed)
	case sb.IDs == 0:
		return sb, damaged("no uid/gid table")
	}
	return sb, nil
}

// Reader reads one squashfs.
type Reader struct {
	r    io.ReaderAt
	base int64 // where the squashfs starts in r
	sb   Superblock
	dec  decompressor

	ids       []uint32 // the uid/gid table
	frags     []fragment
	xattrBase uint64 // the xattr key/value table's start; noTable for none
	xattrIDs  []xattrID

	mu    sync.Mutex
	cache blockCache // decompressed metadata blocks and fragments
}

type fragment struct {
	start uint64
	size  uint32 // with uncompressedBit
}

type xattrID struct {
	ref   uint64
	count uint32
}

// Open reads the squashfs at [base, base+size) of r: its superblock and
// its uid/gid, fragment and xattr id tables. cacheSize caps how many
// bytes of decompressed metadata and fragment blocks it keeps.
func Open(r io.ReaderAt, base, size int64, cacheSize int) (*Reader, error) {
	var b [superSize]byte
	if size < superSize {
		return nil, damaged("%d bytes, less than a superblock", size)
	}
	if _, err := r.ReadAt(b[:], base); err != nil {
		return nil, fmt.Errorf("read the superblock: %w", err)
	}
	sb, err := ParseSuperblock(b[:])
	if err != nil {
		return nil, err
	}
	if sb.BytesUsed > uint64(size) {
		return nil, damaged("it takes %d bytes, and %d are there (truncated)", sb.BytesUsed, size)
	}
	dec, err := newDecompressor(sb.Compression)
	if err != nil {
		return nil, err
	}
	sq := &Reader{r: r, base: base, sb: *sb, dec: dec, xattrBase: noTable}
	sq.cache.max = cacheSize
	if err := sq.readTables(); err != nil {
		return nil, err
	}
	return sq, nil
}

// Superblock returns the superblock.
func (sq *Reader) Superblock() Superblock { return sq.sb }

// readTables reads the uid/gid, fragment and xattr id tables.
func (sq *Reader) readTables() error {
	le := binary.LittleEndian
	b, err := sq.lookupTable(sq.sb.IDTable, int(sq.sb.IDs), 4, "uid/gid")
	if err != nil {
		return err
	}
	sq.ids = make([]uint32, sq.sb.IDs)
	for i := range sq.ids {
		sq.ids[i] = le.Uint32(b[4*i:])
	}
	if sq.sb.Fragments > 0 {
		b, err := sq.lookupTable(sq.sb.FragmentTable, int(sq.sb.Fragments), 16, "fragment")
		if err != nil {
			return err
		}
		sq.frags = make([]fragment, sq.sb.Fragments)
		for i := range sq.frags {
			sq.frags[i] = fragment{start: le.Uint64(b[16*i:]), size: le.Uint32(b[16*i+8:])}
		}
	}
	if sq.sb.XattrIDTable != noTable {
		var h [16]byte
		if err := sq.readAt(h[:], sq.sb.XattrIDTable); err != nil {
			return fmt.Errorf("its xattr table: %w", err)
		}
		base, n := le.Uint64(h[:]), le.Uint32(h[8:])
		if base >= sq.sb.XattrIDTable {
			return damaged("xattr table at %d, past its id table at %d", base, sq.sb.XattrIDTable)
		}
		b, err := sq.lookupTable(sq.sb.XattrIDTable+16, int(n), 16, "xattr id")
		if err != nil {
			return err
		}
		sq.xattrBase = base
		sq.xattrIDs = make([]xattrID, n)
		for i := range sq.xattrIDs {
			sq.xattrIDs[i] = xattrID{ref: le.Uint64(b[16*i:]), count: le.Uint32(b[16*i+8:])}
		}
	}
	return nil
}

// lookupTable reads a table of n entries of size bytes each, held in
// metadata blocks whose places are listed at start.
func (sq *Reader) lookupTable(start uint64, n, size int, what string) ([]byte, error) {
	if uint64(n) > sq.sb.BytesUsed || n*size > maxTable {
		return nil, damaged("its %s table has %d entries, more than an image of %d bytes holds", what, n, sq.sb.BytesUsed)
	}
	total := n * size
	blocks := (total + metaSize - 1) / metaSize
	if start >= sq.sb.BytesUsed || uint64(blocks)*8 > sq.sb.BytesUsed-start {
		return nil, damaged("its %s table (%d entries at %d) lies outside the image", what, n, start)
	}
	ptrs := make([]byte, 8*blocks)
	if err := sq.readAt(ptrs, start); err != nil {
		return nil, fmt.Errorf("its %s table: %w", what, err)
	}
	out := make([]byte, 0, total)
	for i := range blocks {
		at := binary.LittleEndian.Uint64(ptrs[8*i:])
		blk, _, err := sq.metaBlock(at)
		if err != nil {
			return nil, fmt.Errorf("its %s table: %w", what, err)
		}
		want := min(metaSize, total-len(out))
		if len(blk) < want {
			return nil, damaged("its %s table's block %d holds %d bytes, not %d", what, i, len(blk), want)
		}
		out = append(out, blk[:want]...)
	}
	return out, nil
}

// readAt reads len(p) bytes at off, which must lie inside the image.
func (sq *Reader) readAt(p []byte, off uint64) error {
	if off > sq.sb.BytesUsed || uint64(len(p)) > sq.sb.BytesUsed-off {
		return damaged("%d bytes at %d lie past its end (%d)", len(p), off, sq.sb.BytesUsed)
	}
	n, err := sq.r.ReadAt(p, sq.base+int64(off))
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		return damaged("truncated at %d", off+uint64(n))
	}
	return err
}

// metaBlock returns the decompressed metadata block at off and where the
// next one starts. The returned slice is shared: callers must not
// change it.
func (sq *Reader) metaBlock(off uint64) ([]byte, uint64, error) {
	key := cacheKey{off: off, meta: true}
	if b, next, ok := sq.cache.get(key); ok {
		return b, next, nil
	}
	var h [2]byte
	if err := sq.readAt(h[:], off); err != nil {
		return nil, 0, err
	}
	hv := binary.LittleEndian.Uint16(h[:])
	n := int(hv &^ uncompressedMeta)
	if n == 0 || n > metaSize {
		return nil, 0, damaged("metadata block at %d of %d bytes", off, n)
	}
	raw := make([]byte, n)
	if err := sq.readAt(raw, off+2); err != nil {
		return nil, 0, err
	}
	out := raw
	if hv&uncompressedMeta == 0 {
		out = make([]byte, metaSize)
		m, err := sq.dec(raw, out)
		if err != nil {
			return nil, 0, damaged("metadata block at %d: %v", off, err)
		}
		out = out[:m]
	}
	next := off + 2 + uint64(n)
	sq.cache.put(key, out, next)
	return out, next, nil
}

// metaReader reads a stream of metadata that starts at a reference: the
// block at table+ref>>16, at ref&0xffff in it, and runs on through the
// blocks that follow, up to limit (the table's end).
type metaReader struct {
	sq    *Reader
	block []byte
	at    uint64 // where block lies
	pos   int    // the place in block
	next  uint64 // where the next block lies
	limit uint64
}

func (sq *Reader) metaAt(table, ref, limit uint64) (*metaReader, error) {
	at, off := table+ref>>16, int(ref&0xffff)
	if at >= limit {
		return nil, damaged("metadata reference %#x lies past its table", ref)
	}
	b, next, err := sq.metaBlock(at)
	if err != nil {
		return nil, err
	}
	if off > len(b) {
		return nil, damaged("metadata reference %#x lies past its block", ref)
	}
	return &metaReader{sq: sq, block: b, at: at, pos: off, next: next, limit: limit}, nil
}

// metaResume takes up reading at a place that place returned.
func (sq *Reader) metaResume(at uint64, pos int, limit uint64) (*metaReader, error) {
	if at >= limit {
		return nil, damaged("metadata at %d lies past its table", at)
	}
	b, next, err := sq.metaBlock(at)
	if err != nil {
		return nil, err
	}
	if pos > len(b) {
		return nil, damaged("metadata place %d lies past its block", pos)
	}
	return &metaReader{sq: sq, block: b, at: at, pos: pos, next: next, limit: limit}, nil
}

// place returns where the reader is, for metaResume.
func (m *metaReader) place() (uint64, int) { return m.at, m.pos }

// Read implements io.Reader, crossing into the next block as needed.
func (m *metaReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if m.pos == len(m.block) {
			if m.next >= m.limit {
				if n > 0 {
					return n, nil
				}
				return 0, io.ErrUnexpectedEOF
			}
			b, next, err := m.sq.metaBlock(m.next)
			if err != nil {
				return n, err
			}
			m.block, m.at, m.pos, m.next = b, m.next, 0, next
		}
		c := copy(p[n:], m.block[m.pos:])
		m.pos += c
		n += c
	}
	return n, nil
}

// full reads exactly len(p) bytes, a short table being damage.
func (m *metaReader) full(p []byte) error {
	if _, err := io.ReadFull(m, p); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return damaged("metadata ends early")
		}
		return err
	}
	return nil
}

func (m *metaReader) u16() (uint16, error) {
	var b [2]byte
	err := m.full(b[:])
	return binary.LittleEndian.Uint16(b[:]), err
}

func (m *metaReader) u32() (uint32, error) {
	var b [4]byte
	err := m.full(b[:])
	return binary.LittleEndian.Uint32(b[:]), err
}

func (m *metaReader) u64() (uint64, error) {
	var b [8]byte
	err := m.full(b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

// cacheKey names a cached block: a metadata block or a fragment, by
// where it lies.
type cacheKey struct {
	off  uint64
	meta bool
}

type cached struct {
	b    []byte
	next uint64
}

// blockCache keeps decompressed blocks up to max bytes, dropping the
// oldest first: the tree is read in about the order it was written, so
// the blocks in use are the recent ones.
type blockCache struct {
	mu    sync.Mutex
	max   int
	size  int
	m     map[cacheKey]cached
	order []cacheKey
}

func (c *blockCache) get(k cacheKey) ([]byte, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return e.b, e.next, ok
}

func (c *blockCache) put(k cacheKey, b []byte, next uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[cacheKey]cached{}
	}
	if _, ok := c.m[k]; ok {
		return
	}
	for c.size+len(b) > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= len(c.m[old].b)
		delete(c.m, old)
	}
	c.m[k] = cached{b: b, next: next}
	c.order = append(c.order, k)
	c.size += len(b)
}
