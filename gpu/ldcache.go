package gpu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Entry is one library in glibc's ld.so.cache, as `ldconfig -p` lists it.
type Entry struct {
	Name  string // the soname, or the file name of an unversioned link: libcuda.so.1, libcuda.so
	Path  string // where ldconfig found it, symlinks not resolved
	Flags Flags  // the library's kind and ABI
	Hwcap uint64 // non-zero for a variant in a glibc-hwcaps subdirectory
}

// Flags are a cache entry's kind (the low byte: 3 for glibc's libc6) and ABI
// (the next byte: 3 for x86-64, 10 for AArch64; 0 for the 32-bit ABI of the
// base architecture), as glibc's ldconfig writes them.
type Flags int32

const (
	flagTypeMask     = 0x00ff
	flagRequiredMask = 0xff00
	flagELFLibc6     = 0x0003
)

// libc6 flags of the 64-bit ABI of each architecture Go and glibc share
// (glibc's sysdeps/generic/ldconfig.h). Find takes only these libraries, so
// a node's 32-bit driver copies (libc6, or libc6,x32) stay out.
var archFlags = map[string]Flags{
	"amd64":   flagELFLibc6 | 0x0300,
	"arm64":   flagELFLibc6 | 0x0a00,
	"ppc64le": flagELFLibc6 | 0x0500,
	"ppc64":   flagELFLibc6 | 0x0500,
	"s390x":   flagELFLibc6 | 0x0400,
	"riscv64": flagELFLibc6 | 0x1000, // the double-float ABI
	"loong64": flagELFLibc6 | 0x1200, // the double-float ABI
}

// String writes the flags as `ldconfig -p` does: "libc6,x86-64".
func (f Flags) String() string {
	kinds := [...]string{"libc4", "ELF", "libc5", "libc6"}
	s := "unknown"
	if t := f & flagTypeMask; int(t) < len(kinds) {
		s = kinds[t]
	}
	abis := map[Flags]string{
		0x0100: ",64bit", 0x0200: ",IA-64", 0x0300: ",x86-64", 0x0400: ",64bit", 0x0500: ",64bit",
		0x0600: ",N32", 0x0700: ",64bit", 0x0800: ",x32", 0x0900: ",hard-float", 0x0a00: ",AArch64",
		0x0b00: ",soft-float", 0x0c00: ",nan2008", 0x0d00: ",N32,nan2008", 0x0e00: ",64bit,nan2008",
		0x0f00: ",soft-float", 0x1000: ",double-float", 0x1100: ",soft-float", 0x1200: ",double-float",
	}
	switch abi := f & flagRequiredMask; {
	case abi == 0:
	case abis[abi] != "":
		s += abis[abi]
	default:
		s += fmt.Sprintf(",%d", abi)
	}
	return s
}

// The two layouts of glibc's elf/dl-cache.h. ldconfig has written the new
// one alone since glibc 2.32; older ones wrote it behind an old-format
// header and table ("compat"), which old loaders read and new ones skip.
const (
	magicOld      = "ld.so-1.7.0"
	magicNew      = "glibc-ld.so.cache1.1"
	oldHeaderSize = 16 // magic, padding, nlibs
	oldEntrySize  = 12 // flags, key, value
	newHeaderSize = 48 // magic+version, nlibs, len_strings, flags, padding, extension_offset, unused
	newEntrySize  = 24 // flags, key, value, osversion, hwcap
	newAlign      = 8  // alignof(struct cache_file_new): the new part starts at a multiple of it
	endianMask    = 3  // the new header's flags byte: 0 unknown, 1 invalid, 2 little, 3 big
	endianLittle  = 2
	endianBig     = 3
)

// ErrNotLdCache says the data is not an ld.so.cache this package reads.
var ErrNotLdCache = errors.New("not a glibc ld.so.cache")

// ParseLdCache reads glibc's ld.so.cache (/etc/ld.so.cache): the
// "glibc-ld.so.cache1.1" format, alone or behind the old "ld.so-1.7.0"
// header. It returns the entries in the file's order, which is the order in
// which the dynamic loader prefers them. It reads only data: a corrupt or
// truncated cache is an error, never a panic. The cache is in the byte
// order of the machine that wrote it; the new header says which, and when
// it does not (glibc before 2.34) the native order is assumed, as glibc does.
func ParseLdCache(data []byte) ([]Entry, error) {
	base := 0
	if bytes.HasPrefix(data, []byte(magicOld)) {
		// The old table's entry count is in native order: the old format
		// has no byte-order mark.
		if len(data) < oldHeaderSize {
			return nil, fmt.Errorf("%w: truncated in the old-format header (%d bytes)", ErrNotLdCache, len(data))
		}
		n := uint64(binary.NativeEndian.Uint32(data[12:]))
		end := oldHeaderSize + n*oldEntrySize
		start := (end + newAlign - 1) &^ (newAlign - 1)
		if start+newHeaderSize > uint64(len(data)) || !bytes.HasPrefix(data[start:], []byte(magicNew)) {
			return nil, fmt.Errorf("%w: an old-format cache (%q) with no %q part; glibc 2.32 and later do not read it either: regenerate it with ldconfig", ErrNotLdCache, magicOld, magicNew)
		}
		base = int(start)
	} else if !bytes.HasPrefix(data, []byte(magicNew)) {
		return nil, fmt.Errorf("%w: it starts with neither %q nor %q", ErrNotLdCache, magicNew, magicOld)
	}
	c := data[base:]
	if len(c) < newHeaderSize {
		return nil, fmt.Errorf("%w: truncated in the header (%d bytes)", ErrNotLdCache, len(c))
	}
	var order binary.ByteOrder
	switch c[28] & endianMask {
	case 0:
		order = binary.NativeEndian
	case endianLittle:
		order = binary.LittleEndian
	case endianBig:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: its header marks it invalid", ErrNotLdCache)
	}
	n := uint64(order.Uint32(c[20:]))
	strStart := newHeaderSize + n*newEntrySize
	strEnd := strStart + uint64(order.Uint32(c[24:]))
	if strEnd > uint64(len(c)) {
		return nil, fmt.Errorf("%w: truncated: %d entries and their strings need %d bytes, it has %d", ErrNotLdCache, n, uint64(base)+strEnd, len(data))
	}
	// Keys and values index the string table from the start of the new
	// header; each must lie in the table and end there with a NUL.
	str := func(off uint32) (string, bool) {
		if uint64(off) < strStart || uint64(off) >= strEnd {
			return "", false
		}
		s := c[off:strEnd]
		i := bytes.IndexByte(s, 0)
		if i < 0 {
			return "", false
		}
		return string(s[:i]), true
	}
	entries := make([]Entry, 0, n)
	for i := uint64(0); i < n; i++ {
		e := c[newHeaderSize+i*newEntrySize:]
		name, ok1 := str(order.Uint32(e[4:]))
		path, ok2 := str(order.Uint32(e[8:]))
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: entry %d names no NUL-terminated string in the string table", ErrNotLdCache, i)
		}
		entries = append(entries, Entry{
			Name:  name,
			Path:  path,
			Flags: Flags(order.Uint32(e[0:])),
			Hwcap: order.Uint64(e[16:]),
		})
	}
	return entries, nil
}
