package gpu

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeLdCache writes entries as glibc's ldconfig would: the new format
// alone, as glibc 2.32 and later write it, or with compat the old-format
// header and table in front, as older ones did by default. The byte order
// is the machine's, and the header says which, as glibc 2.34 writes it.
func writeLdCache(entries []Entry, compat bool) []byte {
	order := binary.NativeEndian
	endian := byte(endianBig)
	if order.Uint16([]byte{1, 0}) == 1 {
		endian = endianLittle
	}
	// The strings follow the new table; offsets count from the new header.
	var strs []byte
	off := func(s string) uint32 {
		o := uint32(newHeaderSize + len(entries)*newEntrySize + len(strs))
		strs = append(append(strs, s...), 0)
		return o
	}
	keys, values := make([]uint32, len(entries)), make([]uint32, len(entries))
	for i, e := range entries {
		keys[i], values[i] = off(e.Name), off(e.Path)
	}

	var out []byte
	u32 := func(v uint32) { out = order.AppendUint32(out, v) }
	pad := 0
	if compat {
		var old []int // the old table has no hwcap variants
		for i, e := range entries {
			if e.Hwcap == 0 {
				old = append(old, i)
			}
		}
		end := oldHeaderSize + len(old)*oldEntrySize
		pad = (end+newAlign-1)&^(newAlign-1) - end
		out = append(out, magicOld+"\x00"...)
		u32(uint32(len(old)))
		for _, i := range old {
			// Old offsets count from the end of the old table.
			u32(uint32(entries[i].Flags))
			u32(keys[i] + uint32(pad))
			u32(values[i] + uint32(pad))
		}
		out = append(out, make([]byte, pad)...)
	}
	out = append(out, magicNew...)
	u32(uint32(len(entries)))
	u32(uint32(len(strs)))
	out = append(out, endian, 0, 0, 0)
	out = append(out, make([]byte, 16)...) // extension_offset (none) and unused
	for i, e := range entries {
		u32(uint32(e.Flags))
		u32(keys[i])
		u32(values[i])
		u32(0) // osversion
		out = order.AppendUint64(out, e.Hwcap)
	}
	return append(out, strs...)
}

const (
	x8664 Flags = 0x0303 // libc6,x86-64
	i386  Flags = 0x0003 // libc6
	arm64 Flags = 0x0a03 // libc6,AArch64
)

var sampleEntries = []Entry{
	{"libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", x8664, 0},
	{"libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", x8664, 0},
	{"libcuda.so.1", "/usr/lib/i386-linux-gnu/libcuda.so.1", i386, 0},
	{"libcuda.so", "/usr/lib/x86_64-linux-gnu/libcuda.so", x8664, 0},
	{"libm.so.6", "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libm.so.6", x8664, 1<<62 | 1},
	{"libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", x8664, 0},
}

func TestParseLdCacheRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"empty", nil},
		{"one", sampleEntries[:1]},
		{"two", sampleEntries[:2]}, // an old table of 2 entries needs no padding
		{"three", sampleEntries[:3]},
		{"all, with a hwcaps variant", sampleEntries},
	} {
		for _, compat := range []bool{false, true} {
			got, err := ParseLdCache(writeLdCache(tc.entries, compat))
			if err != nil {
				t.Errorf("%s (compat %v): %v", tc.name, compat, err)
				continue
			}
			if len(got) != 0 || len(tc.entries) != 0 {
				if !reflect.DeepEqual(got, tc.entries) {
					t.Errorf("%s (compat %v):\n got %v\nwant %v", tc.name, compat, got, tc.entries)
				}
			}
		}
	}
}

func TestParseLdCacheCorrupt(t *testing.T) {
	good := writeLdCache(sampleEntries, false)
	compat := writeLdCache(sampleEntries, true)
	with := func(b []byte, at int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[at:], v)
		return c
	}
	u32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	firstKey := newHeaderSize + 4
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "starts with neither"},
		{"an ELF file", []byte("\x7fELF\x02\x01\x01"), "starts with neither"},
		{"magic only", []byte(magicNew), "truncated in the header"},
		{"old magic only", []byte(magicOld), "truncated in the old-format header"},
		{"old format alone", append([]byte(magicOld+"\x00"), u32(0)...), "no \"glibc-ld.so.cache1.1\" part"},
		{"old table count past the end", with(compat, 12, u32(1<<30)...), "no \"glibc-ld.so.cache1.1\" part"},
		{"cut in the table", good[:newHeaderSize+30], "truncated: 6 entries"},
		{"cut in the strings", good[:len(good)-1], "truncated"},
		{"compat, cut in the strings", compat[:len(compat)-1], "truncated"},
		{"huge entry count", with(good, 20, u32(0xffffffff)...), "truncated: 4294967295 entries"},
		{"huge string table", with(good, 24, u32(0xffffffff)...), "truncated"},
		{"key before the strings", with(good, firstKey, u32(3)...), "entry 0 names no NUL-terminated string"},
		{"key past the end", with(good, firstKey, u32(uint32(len(good)))...), "entry 0 names no NUL-terminated string"},
		{"value past the end", with(good, firstKey+4, u32(0x7fffffff)...), "entry 0 names no NUL-terminated string"},
		{"no final NUL", with(good, len(good)-1, 'x'), "names no NUL-terminated string"},
		{"marked invalid", with(good, 28, 1), "marks it invalid"},
	} {
		got, err := ParseLdCache(tc.data)
		if err == nil || !errors.Is(err, ErrNotLdCache) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, %v; want an error with %q", tc.name, got, err, tc.want)
		}
	}
}

func TestParseLdCacheByteOrder(t *testing.T) {
	// A cache of the other byte order, marked as such, reads the same.
	e := []Entry{{"libcuda.so.1", "/usr/lib64/libcuda.so.1", x8664, 0}}
	native := writeLdCache(e, false)
	var other binary.ByteOrder = binary.BigEndian
	mark := byte(endianBig)
	if native[28] == endianBig {
		other, mark = binary.LittleEndian, endianLittle
	}
	c := append([]byte(nil), native...)
	c[28] = mark
	for _, at := range []int{20, 24, 48, 52, 56, 60} {
		other.PutUint32(c[at:], binary.NativeEndian.Uint32(native[at:]))
	}
	other.PutUint64(c[64:], 0)
	if got, err := ParseLdCache(c); err != nil || !reflect.DeepEqual(got, e) {
		t.Errorf("got %v, %v; want %v", got, err, e)
	}
}

func TestFlagsString(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{x8664, "libc6,x86-64"},
		{i386, "libc6"},
		{arm64, "libc6,AArch64"},
		{0x0803, "libc6,x32"},
		{0x0503, "libc6,64bit"},
		{0x1003, "libc6,double-float"},
		{0x0001, "ELF"},
		{0x0007, "unknown"},
		{-1, "unknown,65280"},
		{0x7f03, "libc6,32512"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#x: got %q, want %q", int32(tc.f), got, tc.want)
		}
	}
}

// ldconfigList runs `ldconfig -p -C cache` and returns what it lists, one
// "NAME (FLAGS) => PATH" a line, without the hwcaps or OS ABI notes.
func ldconfigList(t *testing.T, cache string) []string {
	t.Helper()
	bin, err := exec.LookPath("ldconfig") // in /sbin, which a user's PATH may lack
	for _, p := range []string{"/sbin/ldconfig", "/usr/sbin/ldconfig"} {
		if _, serr := os.Stat(p); err != nil && serr == nil {
			bin, err = p, nil
		}
	}
	if err != nil {
		t.Skip("no ldconfig here (not a glibc system?)")
	}
	out, err := exec.Command(bin, "-p", "-C", cache).Output()
	if err != nil {
		t.Fatalf("%s -p -C %s: %v", bin, cache, err)
	}
	var list []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		left, path, _ := strings.Cut(strings.TrimPrefix(line, "\t"), ") => ")
		name, flags, _ := strings.Cut(left, " (")
		flags, _, _ = strings.Cut(flags, ", ")
		list = append(list, name+" ("+flags+") => "+path)
	}
	return list
}

func listed(entries []Entry) []string {
	var list []string
	for _, e := range entries {
		list = append(list, e.Name+" ("+e.Flags.String()+") => "+e.Path)
	}
	return list
}

// TestParseLdCacheOfThisMachine reads this machine's cache and compares
// it with what ldconfig lists from the same bytes.
func TestParseLdCacheOfThisMachine(t *testing.T) {
	data, err := os.ReadFile("/etc/ld.so.cache")
	if err != nil {
		t.Skipf("no cache to compare with: %v", err)
	}
	cache := filepath.Join(t.TempDir(), "ld.so.cache")
	if err := os.WriteFile(cache, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := ldconfigList(t, cache)
	entries, err := ParseLdCache(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := listed(entries); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseLdCache and ldconfig -p differ:\n got %d: %.20q...\nwant %d: %.20q...", len(got), got, len(want), want)
	}
	t.Logf("%d entries, as ldconfig -p lists them", len(entries))
}

// TestWrittenCacheMatchesLdconfig checks the test's writer against glibc's
// reader, so the fake driver trees below hold caches that glibc accepts.
func TestWrittenCacheMatchesLdconfig(t *testing.T) {
	for _, compat := range []bool{false, true} {
		cache := filepath.Join(t.TempDir(), "ld.so.cache")
		if err := os.WriteFile(cache, writeLdCache(sampleEntries, compat), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, want := ldconfigList(t, cache), listed(sampleEntries); !reflect.DeepEqual(got, want) {
			t.Errorf("compat %v: ldconfig -p lists\n%q\nwant\n%q", compat, got, want)
		}
	}
}

func FuzzParseLdCache(f *testing.F) {
	for _, compat := range []bool{false, true} {
		c := writeLdCache(sampleEntries, compat)
		f.Add(c)
		f.Add(c[:len(c)/2])
		f.Add(writeLdCache(sampleEntries[:1], compat))
		f.Add(writeLdCache(nil, compat))
	}
	f.Add([]byte(magicNew))
	f.Add([]byte(magicOld + "\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseLdCache(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			_ = e.Flags.String()
		}
		// What parses writes back to a cache that parses the same.
		again, err := ParseLdCache(writeLdCache(entries, false))
		if err != nil || len(again) != len(entries) || len(entries) > 0 && !reflect.DeepEqual(again, entries) {
			t.Fatalf("%d entries written back read as %d, %v", len(entries), len(again), err)
		}
	})
}
