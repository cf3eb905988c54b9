package cache

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// layerSnapshot records every path under dir (but skip) with its type,
// mode, size, mtime and content hash.
func layerSnapshot(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			s += " -> " + l
		}
		snap[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestApplyLayerHostile applies layers that try to create, change or
// delete things beside the target, in a canary directory the unpacking
// user may write to (so that an escape would succeed), and checks that the
// canary and everything beside the target are untouched.
func TestApplyLayerHostile(t *testing.T) {
	type hostile struct {
		name    string
		layers  func(canary string) []layerBlobData
		wantErr string // "" when the entry may be neutralised instead
	}
	cases := []hostile{
		{"dotdot and absolute names", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lFile("../canary/pwn", 0o644, "x"),
				lFile("../../../../../"+c+"/pwn", 0o644, "x"),
				lFile(c+"/pwn", 0o644, "x"),
				lFile("../canary/keep", 0o644, "overwritten"),
				lDir("../canary", 0o777),
				lDir("..", 0o777),
				lSymlink("../canary/link", "/"),
			)}
		}, ""},
		{"symlink out then write through it, same layer", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lSymlink("rel", "../canary"),
				lSymlink("abs", c),
				lSymlink("keep", c+"/keep"),
				lFile("rel/pwn", 0o644, "x"),
				lFile("abs/pwn", 0o644, "x"),
				lFile("rel/keep", 0o644, "overwritten"),
				lFile("abs/sub/file", 0o644, "overwritten"),
				lDir("abs/sub", 0o777),
				lFile("keep", 0o644, "overwritten through a file symlink"),
			)}
		}, ""},
		{"symlink out then write through it, next layer", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lSymlink("rel", "../canary"), lSymlink("abs", c), lSymlink("deep", "../../../../../../"+c),
					lSymlink("keep", "../canary/keep"), lSymlink("subdir", c+"/sub")),
				layerGz(t,
					lFile("rel/pwn", 0o644, "x"),
					lFile("abs/pwn", 0o644, "x"),
					lFile("deep/pwn", 0o644, "x"),
					lFile("abs/keep", 0o644, "overwritten"),
					lDir("subdir", 0o777),
					lFile("subdir/file", 0o644, "overwritten"),
					lFile("keep", 0o600, "overwritten"),
					lHardlink("rel/hl", "etc"),
				),
				layerPlain(t,
					lWhiteout("rel/.wh.keep"),
					lWhiteout("abs/.wh.sub"),
					lWhiteout("deep/.wh..wh..opq"),
					lDir("abs", 0o777),
				),
			}
		}, ""},
		{"hardlink to a file outside", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lHardlink("hl", "../canary/keep")),
				layerPlain(t, lHardlink("hl2", c+"/keep")),
				layerPlain(t, lSymlink("s", c+"/keep"), lHardlink("hl3", "s"), lFile("hl3", 0o644, "through a hardlinked symlink")),
				layerPlain(t, lSymlink("d", "../canary"), lHardlink("hl4", "d/keep")),
			}
		}, ""},
		{"whiteout of dot", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lWhiteout(".wh.."))}
		}, "malicious whiteout"},
		{"whiteout of dotdot", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lWhiteout(".wh..."))}
		}, "malicious whiteout"},
		{"whiteout of dotdot in a subdir", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lDir("a", 0o755), lWhiteout("a/.wh..."))}
		}, "malicious whiteout"},
		{"whiteout of empty name", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lWhiteout(".wh."))}
		}, "malicious whiteout"},
		{"climbing whiteout names", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lWhiteout("../.wh.canary"),
				lWhiteout("../canary/.wh.keep"),
				lWhiteout("../../../../.wh."+filepath.Base(filepath.Dir(c))),
				lWhiteout(c+"/.wh.keep"),
				lWhiteout("../canary/.wh..wh..opq"),
			)}
		}, ""},
		{"whiteout through a symlink that climbs", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lSymlink("up", "../../../.."), lSymlink("c", c), lSymlink("r", "../canary")),
				layerPlain(t,
					lWhiteout("up/.wh."+strings.TrimPrefix(c, "/")),
					lWhiteout("c/.wh.keep"),
					lWhiteout("c/.wh..wh..opq"),
					lWhiteout("r/.wh.sub"),
					lWhiteout(".wh.r"),
				),
			}
		}, ""},
		{"a directory replaced by a symlink in a later layer", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lDir("d", 0o755), lFile("d/f", 0o644, "f"), lDir("e", 0o755)),
				layerPlain(t, lSymlink("d", c), lSymlink("e", "../canary")),
				layerGz(t, lFile("d/pwn", 0o644, "x"), lDir("d/sub", 0o777), lFile("e/keep", 0o644, "overwritten"),
					lHardlink("d/hl", "e/keep"), lWhiteout("e/.wh.keep"), lWhiteout("d/.wh..wh..opq")),
			}
		}, ""},
		{"device nodes and a fifo aimed at the canary", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lSymlink("dev", c),
				layerEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
				layerEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "../canary/sda", Mode: 0o666, Devmajor: 8}},
				layerEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o666}},
				layerEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "mem", Mode: 0o666, Devmajor: 1, Devminor: 1}},
			)}
		}, ""},
		{"a setuid-root binary and a setgid one", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lDir("bin", 0o755), lFile("bin/su", 0o4755, "#!/bin/sh\n"), lFile("bin/wall", 0o2755, "x"),
				lSymlink("bin/up", "../../canary"), lFile("bin/up/su", 0o4755, "through a link"),
			)}
		}, ""},
		{"names with newlines", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lFile("a\n../../canary/pwn", 0o644, "x"),
				lDir("x\n", 0o755), lFile("x\n/f\n", 0o644, "f"),
				lSymlink("l\n", "../canary"), lFile("l\n/pwn", 0o644, "x"),
				lWhiteout(".wh.\n..\n"),
			)}
		}, ""},
		{"root replaced by a symlink", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lSymlink(".", c)), layerPlain(t, lFile("pwn", 0o644, "x"))}
		}, "refusing to change type of root"},
	}
	for _, tc := range cases {
		// With the fast path (what the cache does) and with umoci alone:
		// both must hold.
		for _, umoci := range []bool{false, true} {
			name := tc.name
			if umoci {
				name += ", umoci alone"
			}
			t.Run(name, func(t *testing.T) { hostileCase(t, umoci, tc.layers, tc.wantErr) })
		}
	}
}

func hostileCase(t *testing.T, umoci bool, layers func(canary string) []layerBlobData, wantErr string) {
	base := layerUserDir(t)
	work := filepath.Join(base, "work")
	arena := filepath.Join(base, "arena")
	root := filepath.Join(arena, "target")
	canary := filepath.Join(arena, "canary")
	old := time.Unix(1600000000, 0)
	for _, d := range []string{work, arena, root, canary, filepath.Join(canary, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"keep", "sub/file"} {
		if err := os.WriteFile(filepath.Join(canary, f), []byte("canary "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{work, arena, root, canary, filepath.Join(canary, "sub"), filepath.Join(canary, "keep"), filepath.Join(canary, "sub/file")} {
		layerChown(t, p) // writable by the unpacking user: an escape would work
		if p != work && p != arena && p != root {
			os.Chtimes(p, old, old)
		}
	}
	os.Chtimes(arena, old, old)
	before := layerSnapshot(t, base, root)
	delete(before, work)

	res := layerApplyAsUserWith(t, umoci, work, root, layers(canary)...)
	errs := strings.Join(res.Errs, "\n")
	t.Logf("layer errors:\n%s", errs)
	if wantErr != "" && !strings.Contains(errs, wantErr) {
		t.Errorf("want an error containing %q, got %q", wantErr, res.Errs)
	}

	after := layerSnapshot(t, base, root)
	delete(after, work)
	for p, s := range after {
		if strings.HasPrefix(p, work+"/") {
			delete(after, p)
			continue
		}
		if before[p] != s {
			t.Errorf("changed outside the target: %s: %q, was %q", p, s, before[p])
		}
	}
	for p, s := range before {
		if strings.HasPrefix(p, work+"/") {
			continue
		}
		if _, ok := after[p]; !ok {
			t.Errorf("deleted outside the target: %s (%s)", p, s)
		}
	}
	if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
		t.Errorf("the target itself is gone or replaced: %v %v", fi, err)
	}
}

// sparseTar is a tar holding one PAX 1.0 sparse file of logical size
// size, with a single 4 KiB block of data at its start: a few KiB that
// unpack to as much as size. archive/tar's writer does not write sparse
// files, so the blocks are made here.
func sparseTar(t testing.TB, name string, size int64) []byte {
	t.Helper()
	data := bytes.Repeat([]byte("S"), 4096)
	// The sparse map comes first in the data: entry count, then offset
	// and length per entry, newline-separated, padded to 512 bytes.
	sm := []byte(fmt.Sprintf("1\n0\n%d\n", len(data)))
	sm = append(sm, make([]byte, 512-len(sm))...)
	var recs []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		recs = append(recs, fmt.Sprintf("%d%s", n, rec)...)
	}
	var buf bytes.Buffer
	block := func(b []byte) {
		buf.Write(b)
		if r := len(b) % 512; r != 0 {
			buf.Write(make([]byte, 512-r))
		}
	}
	block(rawTarHeader("PaxHeaders/"+name, 'x', int64(len(recs))))
	block(recs)
	block(rawTarHeader("GNUSparseFile.0/"+name, '0', int64(len(sm)+len(data))))
	block(append(sm, data...))
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

// rawTarHeader is a ustar header block.
func rawTarHeader(name string, typeflag byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], fmt.Sprintf("%011o\x00", 1700000000))
	h[156] = typeflag
	copy(h[257:265], "ustar\x0000")
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// A decompression bomb and a huge sparse file stop at the size limit
// (max_image_size), before they fill the disk; within the limit, a sparse
// file unpacks whole.
func TestApplyLayerSizeLimit(t *testing.T) {
	bomb := lGzip(t, lTar(t, lFile("zeros", 0o644, string(make([]byte, 64<<20)))))
	t.Logf("bomb: %d bytes of gzip, 64 MiB unpacked", len(bomb))
	for _, tc := range []struct {
		name  string
		blob  []byte
		comp  compression
		limit int64
		ok    bool
	}{
		{"decompression bomb", bomb, compGzip, 16 << 20, false},
		{"decompression bomb within the limit", bomb, compGzip, 128 << 20, true},
		{"1 TiB sparse file", sparseTar(t, "big", 1<<40), uncompressed, 1 << 30, false},
		{"sparse file within the limit", sparseTar(t, "small", 1<<20), uncompressed, 1 << 30, true},
	} {
		for _, fast := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s fast=%v", tc.name, fast), func(t *testing.T) {
				root := filepath.Join(t.TempDir(), "root")
				if err := os.Mkdir(root, 0o700); err != nil {
					t.Fatal(err)
				}
				st := &layerStats{limit: tc.limit}
				err := applyLayer(root, bytes.NewReader(tc.blob), tc.comp, "", fast, st)
				var used int64
				filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
					var s unix.Stat_t
					if err == nil && unix.Lstat(p, &s) == nil {
						used += s.Blocks * 512
					}
					return nil
				})
				if tc.ok {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "max_image_size") {
					t.Errorf("err = %v, want ErrTooBig naming max_image_size", err)
				}
				if used > 1<<20 {
					t.Errorf("%d bytes written before the limit stopped it", used)
				}
			})
		}
	}
}

// 100,000 tiny files in 1,000 directories (10^6 with HPCRUN_TEST_LONG=1)
// unpack, all readable, in bounded memory.
func TestApplyLayerManyFiles(t *testing.T) {
	dirs, per := 1000, 100
	if os.Getenv("HPCRUN_TEST_LONG") == "1" {
		per = 1000
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	for d := range dirs {
		dn := fmt.Sprintf("d%04d/", d)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dn, Mode: 0o755, ModTime: mt})
		for f := range per {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sf%d", dn, f), Mode: 0o644, Size: 1, ModTime: mt})
			tw.Write([]byte{'x'})
		}
	}
	tw.Close()
	b := buf.Bytes()
	layer := layerBlobData{lGzip(t, b), mtGzip, digest.FromBytes(b)}
	base := layerUserDir(t)
	root := filepath.Join(base, "rootfs")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	layerChown(t, root)
	res := layerApplyAsUser(t, base, root, layer)
	if res.Errs[0] != "" {
		t.Fatal(res.Errs[0])
	}
	if len(res.Unreadable) > 0 {
		t.Errorf("unreadable: %v", res.Unreadable[:min(5, len(res.Unreadable))])
	}
	n := 0
	filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			n++
		}
		return nil
	})
	if n != dirs*per {
		t.Errorf("%d files unpacked, want %d", n, dirs*per)
	}
	t.Logf("%d files, %d on the fast path, peak RSS %d MiB", n, res.Fast, res.VmHWM>>10)
	if res.VmHWM > 256<<10 {
		t.Errorf("peak RSS %d MiB", res.VmHWM>>10)
	}
}
