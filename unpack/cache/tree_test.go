package cache

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/internal/siftest"
)

// treeFixture is a SIF or squashfs image, a cache and an arena with a
// canary directory, all the helper user's, so that an escape would
// succeed.
type treeFixture struct {
	base, image, cache, arena, canary string
}

func newTreeFixture(t *testing.T) *treeFixture {
	siftest.NeedMksquashfs(t)
	base := layerUserDir(t)
	f := &treeFixture{base: base, cache: filepath.Join(base, "cache"), arena: filepath.Join(base, "arena")}
	f.canary = filepath.Join(f.arena, "canary")
	old := time.Unix(1600000000, 0)
	for _, d := range []string{f.arena, f.canary, filepath.Join(f.canary, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		layerChown(t, d)
	}
	for _, p := range []string{"keep", "sub/file"} {
		p = filepath.Join(f.canary, p)
		if err := os.WriteFile(p, []byte("canary"), 0o644); err != nil {
			t.Fatal(err)
		}
		layerChown(t, p)
		os.Chtimes(p, old, old)
	}
	os.Chtimes(filepath.Join(f.canary, "sub"), old, old)
	os.Chtimes(f.canary, old, old)
	return f
}

// squash makes the fixture's image from the tree make builds, with the
// mksquashfs arguments make returns; each of its patches then replaces a
// placeholder name by a hostile one of the same length. sif wraps it in
// a SIF.
func (f *treeFixture) squash(t *testing.T, make func(dir string) (extra []string, patch [][2]string), sif bool) {
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	extra, patch := make(dir)
	sq := filepath.Join(t.TempDir(), "img.squashfs")
	siftest.Squash(t, dir, sq, "gzip", append([]string{"-noI"}, extra...)...)
	for _, p := range patch {
		siftest.Patch(t, sq, p[0], p[1])
	}
	f.image = filepath.Join(f.base, "img.squashfs")
	if sif {
		f.image = filepath.Join(f.base, "img.sif")
		siftest.SIF(t, sq, f.image, siftest.Options{})
	} else if b, err := os.ReadFile(sq); err != nil || os.WriteFile(f.image, b, 0o644) != nil {
		t.Fatal(err)
	}
}

// ensure runs Cache.Ensure on the image as the helper user.
func (f *treeFixture) ensure(t *testing.T, maxSize int64) cacheHelperResult {
	a := cacheHelperArgs{Cache: f.cache, Image: f.image, Out: filepath.Join(f.base, "out.json"), Tree: true, MaxSize: maxSize}
	os.Remove(a.Out)
	var res cacheHelperResult
	layerHelper(t, f.base, "ensure", a, a.Out, &res)
	return res
}

// nothingLeft checks that a failed unpack published nothing and left no
// temporary tree.
func (f *treeFixture) nothingLeft(t *testing.T) {
	t.Helper()
	for _, d := range []string{"images", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(f.cache, d))
		for _, e := range ents {
			t.Errorf("left in the cache: %s/%s", d, e.Name())
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	for p, c := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEnsureTree unpacks a SIF as the cache does for a job: every entry
// type, as a rootless user can make it (device nodes become empty files),
// by one of several processes that start together.
func TestEnsureTree(t *testing.T) {
	f := newTreeFixture(t)
	f.squash(t, func(d string) ([]string, [][2]string) {
		writeFiles(t, d, map[string]string{"etc/hello": "hello", "bin/tool": "#!/bin/sh\n", "big": strings.Repeat("x", 1<<20)})
		os.Chmod(filepath.Join(d, "bin/tool"), 0o4711)
		os.Symlink("/etc/hello", filepath.Join(d, "etc/abs"))
		os.Symlink("../etc/hello", filepath.Join(d, "bin/rel"))
		os.Link(filepath.Join(d, "etc/hello"), filepath.Join(d, "etc/hard"))
		return []string{"-p", "dev d 755 0 0", "-p", "dev/sda b 666 0 0 8 0", "-p", "dev/null c 666 0 0 1 3",
			"-p", "dev/fifo i 666 0 0 f", "-p", "home d 755 0 0", "-p", "home/user d 700 1000 1000"}, nil
	}, true)
	const n = 4
	var cmds []*exec.Cmd
	for i := range n {
		a := cacheHelperArgs{Cache: f.cache, Image: f.image, Out: filepath.Join(f.base, fmt.Sprintf("out%d.json", i)), Tree: true}
		cmd := layerHelperCmd(t, f.base, "ensure", a)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	unpacks, rootfs := 0, ""
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
		r := cacheReadResult(t, filepath.Join(f.base, fmt.Sprintf("out%d.json", i)))
		if r.Err != "" {
			t.Fatalf("helper %d: %s", i, r.Err)
		}
		unpacks += cacheCount(r.Log, "unpacking ")
		if rootfs != "" && r.Rootfs != rootfs {
			t.Errorf("rootfs %s and %s", rootfs, r.Rootfs)
		}
		rootfs = r.Rootfs
	}
	if unpacks != 1 {
		t.Errorf("%d unpacks by %d processes, want 1", unpacks, n)
	}
	if !strings.Contains(rootfs, "/images/sha256-") {
		t.Errorf("rootfs %s", rootfs)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/hello")); string(b) != "hello" {
		t.Errorf("etc/hello = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(rootfs, "etc/abs")); l != "/etc/hello" {
		t.Errorf("etc/abs -> %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(rootfs, "bin/rel")); l != "../etc/hello" {
		t.Errorf("bin/rel -> %q", l)
	}
	a, _ := os.Stat(filepath.Join(rootfs, "etc/hello"))
	b, _ := os.Stat(filepath.Join(rootfs, "etc/hard"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("etc/hard is not a hardlink of etc/hello")
	}
	for _, dev := range []string{"dev/sda", "dev/null"} {
		fi, err := os.Lstat(filepath.Join(rootfs, dev))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			t.Errorf("%s: %v %v, want an empty placeholder file", dev, fi, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(rootfs, "dev/fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("dev/fifo: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "bin/tool")); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("bin/tool: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "home/user")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(map[bool]int{true: layerTestUID, false: os.Getuid()}[os.Getuid() == 0]) {
		t.Errorf("home/user: %v %v, want the unpacking user's", fi, err)
	}
}

// TestTreeDigest: the cache key is the squashfs's SHA-256, the same for
// a bare squashfs and for the SIF around it.
func TestTreeDigest(t *testing.T) {
	f := newTreeFixture(t)
	f.squash(t, func(d string) ([]string, [][2]string) {
		writeFiles(t, d, map[string]string{"etc/hello": "hi"})
		return nil, nil
	}, false)
	sq, _ := os.ReadFile(f.image)
	want := fmt.Sprintf("sha256-%x", sha256.Sum256(sq))
	r := f.ensure(t, 0)
	if r.Err != "" || filepath.Base(filepath.Dir(r.Rootfs)) != want {
		t.Fatalf("bare squashfs: %s in %s, want %s", r.Err, r.Rootfs, want)
	}
	sifPath := filepath.Join(f.base, "img.sif")
	siftest.SIF(t, f.image, sifPath, siftest.Options{Signed: true})
	f.image = sifPath
	r = f.ensure(t, 0)
	if r.Err != "" || filepath.Base(filepath.Dir(r.Rootfs)) != want || cacheCount(r.Log, "unpacking ") != 0 {
		t.Fatalf("signed SIF: %s in %s (log %q), want %s found in the cache", r.Err, r.Rootfs, r.Log, want)
	}
}

// TestTreeHostile is TestApplyLayerHostile's twin for squashfs images:
// what can be forged into a squashfs either is refused, with one line,
// before anything is written, or stays inside the root; the canary is
// untouched either way.
func TestTreeHostile(t *testing.T) {
	q := func(s string) string { return strings.Repeat("Q", len(s)) }
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T, f *treeFixture, dir string) (extra []string, patch [][2]string)
		wantErr string // "" when the image unpacks, its hostile entries neutralised
	}{
		{"dotdot names", func(t *testing.T, f *treeFixture, d string) ([]string, [][2]string) {
			name := strings.Repeat("../", 12) + strings.TrimPrefix(f.canary, "/") + "/pwn"
			writeFiles(t, d, map[string]string{q(name): "x", "QQ/keep": "overwritten"})
			return nil, [][2]string{{q(name), name}, {"QQ", ".."}}
		}, "which is no file name"},
		{"symlink out, then a directory of the same name", func(t *testing.T, f *treeFixture, d string) ([]string, [][2]string) {
			os.Symlink(f.canary, filepath.Join(d, "outA"))
			writeFiles(t, d, map[string]string{"outQ/pwn": "x", "outQ/keep": "overwritten"})
			return nil, [][2]string{{"outQ", "outA"}}
		}, `"outA" twice`},
		{"device nodes through a symlink's name", func(t *testing.T, f *treeFixture, d string) ([]string, [][2]string) {
			os.Symlink(f.canary, filepath.Join(d, "devA"))
			return []string{"-p", "devQ d 755 0 0", "-p", "devQ/sda b 666 0 0 8 0", "-p", "devQ/mem c 666 0 0 1 1"}, [][2]string{{"devQ", "devA"}}
		}, `"devA" twice`},
		{"whiteouts", func(t *testing.T, f *treeFixture, d string) ([]string, [][2]string) {
			writeFiles(t, d, map[string]string{"etc/.wh.keep": "", "QQQQQQQQQQQQ": ""})
			return nil, [][2]string{{"QQQQQQQQQQQQ", ".wh..wh..opq"}}
		}, "layers use for deletions"},
		{"symlinks out, device nodes, a fifo, setuid, newlines", func(t *testing.T, f *treeFixture, d string) ([]string, [][2]string) {
			os.Symlink(f.canary, filepath.Join(d, "abs"))
			os.Symlink(strings.Repeat("../", 12)+strings.TrimPrefix(f.canary, "/"), filepath.Join(d, "rel"))
			os.Symlink(f.canary+"/keep", filepath.Join(d, "keep"))
			writeFiles(t, d, map[string]string{"bin/su": "#!/bin/sh\n", "x\n/f\n": "f"})
			os.Chmod(filepath.Join(d, "bin/su"), 0o4755)
			return []string{"-p", "dev d 755 0 0", "-p", "dev/sda b 666 0 0 8 0", "-p", "mem c 666 0 0 1 1", "-p", "dev/fifo i 666 0 0 f"}, nil
		}, ""},
	} {
		for _, sif := range []bool{false, true} {
			name := tc.name
			if sif {
				name += ", in a SIF"
			}
			t.Run(name, func(t *testing.T) {
				f := newTreeFixture(t)
				f.squash(t, func(d string) ([]string, [][2]string) { return tc.make(t, f, d) }, sif)
				before := layerSnapshot(t, f.arena, "")
				r := f.ensure(t, 0)
				t.Logf("error: %s", r.Err)
				switch {
				case tc.wantErr != "" && !strings.Contains(r.Err, tc.wantErr):
					t.Errorf("error %q, want %q", r.Err, tc.wantErr)
				case tc.wantErr != "" && strings.Contains(r.Err, "\n"):
					t.Errorf("error of several lines: %q", r.Err)
				case tc.wantErr != "":
					f.nothingLeft(t)
				case r.Err != "":
					t.Errorf("unpack failed: %s", r.Err)
				default:
					filepath.Walk(r.Rootfs, func(p string, fi os.FileInfo, err error) error {
						if err == nil && fi.Mode()&(os.ModeDevice|os.ModeSetuid|os.ModeSetgid) != 0 {
							t.Errorf("%s: mode %v", p, fi.Mode())
						}
						return nil
					})
				}
				after := layerSnapshot(t, f.arena, "")
				for p, s := range after {
					if before[p] != s {
						t.Errorf("changed outside the root: %s: %q, was %q", p, s, before[p])
					}
				}
				for p := range before {
					if _, ok := after[p]; !ok {
						t.Errorf("deleted outside the root: %s", p)
					}
				}
			})
		}
	}
}

// TestTreeSizeLimit: the size limit holds for a squashfs as for layers.
func TestTreeSizeLimit(t *testing.T) {
	f := newTreeFixture(t)
	f.squash(t, func(d string) ([]string, [][2]string) {
		writeFiles(t, d, map[string]string{"a": strings.Repeat("a", 1<<20), "b": strings.Repeat("b", 1<<20)})
		return nil, nil
	}, true)
	r := f.ensure(t, 1<<20+100)
	if !strings.Contains(r.Err, "image too big") || !strings.Contains(r.Err, "max_image_size") {
		t.Fatalf("error %q, want the size limit's", r.Err)
	}
	f.nothingLeft(t)
}
