package cache

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/unpack/source"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// ---- a fake source.Source, usable from another process ----

// cacheFakeMeta is what a fake image directory holds besides its blobs.
type cacheFakeMeta struct {
	Ref, Key string
	Resolved source.Resolved
}

// cacheWriteImage writes an image of gzip'd layers into dir (blobs/<hex>
// and meta.json) and returns its manifest digest.
func cacheWriteImage(t testing.TB, dir, ref string, layers ...[]byte) digest.Digest {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(dir, "blobs", d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var res source.Resolved
	res.Config.OS, res.Config.Architecture = "linux", "amd64"
	res.Config.Config = ispec.ImageConfig{Env: []string{"PATH=/bin", "LANG=C.UTF-8"}, WorkingDir: "/work", Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}, User: "1000"}
	res.Config.RootFS.Type = "layers"
	for _, l := range layers {
		gz := lGzip(t, l)
		res.Manifest.Layers = append(res.Manifest.Layers, ispec.Descriptor{MediaType: mtGzip, Digest: put(gz), Size: int64(len(gz))})
		res.Config.RootFS.DiffIDs = append(res.Config.RootFS.DiffIDs, digest.FromBytes(l))
	}
	cb, _ := json.Marshal(res.Config)
	res.ConfigDigest = put(cb)
	res.Manifest.SchemaVersion = 2
	res.Manifest.MediaType = ispec.MediaTypeImageManifest
	res.Manifest.Config = ispec.Descriptor{MediaType: ispec.MediaTypeImageConfig, Digest: res.ConfigDigest, Size: int64(len(cb))}
	mb, _ := json.Marshal(res.Manifest)
	res.ManifestDigest = put(mb)
	b, _ := json.Marshal(cacheFakeMeta{Ref: ref, Key: "fake:" + dir, Resolved: res})
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return res.ManifestDigest
}

// cacheFakeSource serves an image written by cacheWriteImage and counts
// the calls a warm start must not make.
type cacheFakeSource struct {
	dir      string
	meta     cacheFakeMeta
	resolves atomic.Int32
	opens    atomic.Int32

	slow       time.Duration // sleep per Read of a blob
	blockAfter int64         // after this many bytes of a blob, create blockFile and hang
	blockFile  string
}

func cacheOpenFake(dir string) (*cacheFakeSource, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	s := &cacheFakeSource{dir: dir}
	return s, json.Unmarshal(b, &s.meta)
}

func (s *cacheFakeSource) Ref() string  { return s.meta.Ref }
func (s *cacheFakeSource) Key() string  { return s.meta.Key }
func (s *cacheFakeSource) Close() error { return nil }

func (s *cacheFakeSource) Resolve(p source.Platform) (*source.Resolved, error) {
	s.resolves.Add(1)
	r := s.meta.Resolved
	return &r, nil
}

func (s *cacheFakeSource) Open(d ispec.Descriptor) (io.ReadCloser, error) {
	s.opens.Add(1)
	f, err := os.Open(filepath.Join(s.dir, "blobs", d.Digest.Encoded()))
	if err != nil {
		return nil, err
	}
	return &cacheFakeBlob{f: f, s: s}, nil
}

type cacheFakeBlob struct {
	f *os.File
	s *cacheFakeSource
	n int64
}

func (b *cacheFakeBlob) Read(p []byte) (int, error) {
	if b.s.slow > 0 {
		time.Sleep(b.s.slow)
		p = p[:min(len(p), 32<<10)]
	}
	if b.s.blockAfter > 0 && b.n >= b.s.blockAfter {
		os.WriteFile(b.s.blockFile, nil, 0o644)
		select {} // until killed
	}
	n, err := b.f.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *cacheFakeBlob) Close() error { return b.f.Close() }

// ---- the helper process ----

type cacheHelperArgs struct {
	Cache, Image string
	Out          string
	Slow         time.Duration
	BlockAfter   int64
	BlockFile    string
	MountTmpfs   bool  // mount a 1 MiB tmpfs on Cache first (in our own mount namespace)
	Tree         bool  // Image is a SIF or a squashfs, opened with source.Open
	MaxSize      int64 // the cache's MaxSize
}

type cacheHelperResult struct {
	Pid    int
	Log    []string
	Err    string
	Rootfs string
}

func cacheHelper(mode, args string) error {
	var a cacheHelperArgs
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		return err
	}
	if mode != "ensure" {
		return errors.New("unknown helper " + mode)
	}
	if a.MountTmpfs {
		// Why rprivate: the test may run as root in the host's mount
		// namespace copy, whose mounts would otherwise propagate back.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make / private: %w", err)
		}
		if err := unix.Mount("tmpfs", a.Cache, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
			return fmt.Errorf("mount tmpfs: %w", err)
		}
	}
	res := cacheHelperResult{Pid: os.Getpid()}
	var src source.Source
	var err error
	if a.Tree {
		src, err = source.Open(a.Image)
	} else {
		var fake *cacheFakeSource
		if fake, err = cacheOpenFake(a.Image); err == nil {
			fake.slow, fake.blockAfter, fake.blockFile = a.Slow, a.BlockAfter, a.BlockFile
			src = fake
		}
	}
	var mu sync.Mutex
	var c *Cache
	if err == nil {
		c, err = OpenCache(a.Cache)
	}
	if err == nil {
		c.MaxSize = a.MaxSize
		var im *CachedImage
		im, err = c.Ensure(context.Background(), src, source.Platform{OS: "linux", Architecture: "amd64"}, func(s string) {
			mu.Lock()
			res.Log = append(res.Log, s)
			mu.Unlock()
		})
		if err == nil {
			res.Rootfs = im.Rootfs
			if _, err2 := os.Stat(filepath.Join(im.Rootfs, "etc/hello")); err2 != nil && !a.Tree {
				err = err2
			}
		}
	}
	if err != nil {
		res.Err = err.Error()
	}
	if a.MountTmpfs {
		// What is left in the cache, since the tmpfs dies with us.
		var left []string
		filepath.WalkDir(a.Cache, func(p string, de fs.DirEntry, err error) error {
			if p != a.Cache {
				left = append(left, strings.TrimPrefix(p, a.Cache+"/"))
			}
			return nil
		})
		res.Log = append(res.Log, "left: "+strings.Join(left, " "))
	}
	b, _ := json.Marshal(res)
	return os.WriteFile(a.Out, b, 0o644)
}

// cacheFixture is an image and a cache directory the helper user owns.
type cacheFixture struct {
	base, image, cache string
	digest             store.Digest
}

func cacheNewFixture(t *testing.T, layers ...[]byte) *cacheFixture {
	base := layerUserDir(t)
	f := &cacheFixture{base: base, image: filepath.Join(base, "image"), cache: filepath.Join(base, "cache")}
	if len(layers) == 0 {
		layers = [][]byte{
			lTar(t, lDir("etc", 0o755), lFile("etc/hello", 0o644, "hello"), lFile("big", 0o644, strings.Repeat("0123456789abcdef", 64<<10))),
			lTar(t, lFile("etc/second", 0o600, "second layer")),
		}
	}
	f.digest = store.Digest(cacheWriteImage(t, f.image, "test.tar", layers...))
	return f
}

func (f *cacheFixture) args(out string) cacheHelperArgs {
	return cacheHelperArgs{Cache: f.cache, Image: f.image, Out: filepath.Join(f.base, out)}
}

func cacheReadResult(t *testing.T, p string) cacheHelperResult {
	t.Helper()
	var r cacheHelperResult
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("no helper result: %v", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func cacheCount(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// ---- tests ----

func TestEnsureColdThenWarm(t *testing.T) {
	f := cacheNewFixture(t)
	c, err := OpenCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, p := context.Background(), source.Platform{OS: "linux", Architecture: "amd64"}
	src, _ := cacheOpenFake(f.image)
	var logs []string
	im, err := c.Ensure(ctx, src, p, func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	if src.resolves.Load() != 1 || src.opens.Load() != 2 {
		t.Errorf("cold: %d Resolve and %d Open, want 1 and 2", src.resolves.Load(), src.opens.Load())
	}
	if cacheCount(logs, "unpacking test.tar") != 1 {
		t.Errorf("log: %q", logs)
	}
	if im.Digest != f.digest || im.Rootfs != filepath.Join(c.Dir, "images", (f.digest.Algorithm()+"-"+f.digest.Encoded()), "rootfs") {
		t.Errorf("image %+v", im)
	}
	if b, _ := os.ReadFile(filepath.Join(im.Rootfs, "etc/second")); string(b) != "second layer" {
		t.Errorf("etc/second = %q", b)
	}
	if im.Config.WorkingDir != "/work" || im.Config.User != "1000" || len(im.Config.Env) != 2 || im.Config.Cmd[1] != "true" || im.Config.Entrypoint[0] != "/bin/sh" {
		t.Errorf("config %+v", im.Config)
	}
	// What the cache created is private.
	for _, p := range []string{"images", "images/" + (f.digest.Algorithm() + "-" + f.digest.Encoded()), "locks/" + (f.digest.Algorithm() + "-" + f.digest.Encoded()), "images/" + (f.digest.Algorithm() + "-" + f.digest.Encoded()) + "/image.meta"} {
		fi, err := os.Stat(filepath.Join(c.Dir, p))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v %v", p, fi.Mode(), err)
		}
	}
	keys, _ := os.ReadDir(filepath.Join(c.Dir, "keys"))
	if len(keys) != 1 {
		t.Fatalf("keys: %v", keys)
	}
	if fi, _ := keys[0].Info(); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Join(c.Dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp not empty: %v", ents)
	}

	// Warm: the same source file, opened again.
	warm, _ := cacheOpenFake(f.image)
	im2, err := c.Ensure(ctx, warm, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if warm.resolves.Load() != 0 || warm.opens.Load() != 0 {
		t.Errorf("warm: %d Resolve and %d Open, want none", warm.resolves.Load(), warm.opens.Load())
	}
	if im2.Rootfs != im.Rootfs || im2.Digest != im.Digest || im2.Config.WorkingDir != "/work" {
		t.Errorf("warm image %+v", im2)
	}
	// Another platform is another key: resolved again, but not unpacked.
	other, _ := cacheOpenFake(f.image)
	if _, err := c.Ensure(ctx, other, source.Platform{OS: "linux", Architecture: "arm64"}, nil); err != nil {
		t.Fatal(err)
	}
	if other.resolves.Load() != 1 || other.opens.Load() != 0 {
		t.Errorf("other key: %d Resolve and %d Open, want 1 and 0", other.resolves.Load(), other.opens.Load())
	}
}

// TestEnsureConcurrentProcesses starts 8 cold Ensure in 8 processes at
// once: one unpacks, the others wait for it and use its result.
func TestEnsureConcurrentProcesses(t *testing.T) {
	random := make([]byte, 1<<20)
	rand.Read(random)
	f := cacheNewFixture(t, lTar(t, lFile("etc/hello", 0o644, "hi"), lFile("random", 0o644, string(random))))
	const n = 8
	var cmds []*exec.Cmd
	for i := range n {
		a := f.args(fmt.Sprintf("out%d.json", i))
		a.Slow = 5 * time.Millisecond // about 0.2 s for the 1 MiB layer
		cmd := layerHelperCmd(t, f.base, "ensure", a)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	unpackers, waiters := map[int]bool{}, 0
	var waitedFor []string
	var rootfs string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v", i, err)
			continue
		}
		r := cacheReadResult(t, filepath.Join(f.base, fmt.Sprintf("out%d.json", i)))
		if r.Err != "" {
			t.Errorf("helper %d: %s", i, r.Err)
		}
		if rootfs == "" {
			rootfs = r.Rootfs
		} else if r.Rootfs != rootfs {
			t.Errorf("helper %d got %s, another %s", i, r.Rootfs, rootfs)
		}
		if cacheCount(r.Log, "unpacking ") > 0 {
			unpackers[r.Pid] = true
		}
		for _, l := range r.Log {
			if strings.HasPrefix(l, "waiting for test.tar, being unpacked by pid ") {
				waiters++
				waitedFor = append(waitedFor, strings.TrimPrefix(l, "waiting for test.tar, being unpacked by pid "))
			}
		}
	}
	if len(unpackers) != 1 {
		t.Fatalf("%d processes unpacked, want exactly 1", len(unpackers))
	}
	if waiters == 0 {
		t.Errorf("no process said it was waiting")
	}
	for pid := range unpackers {
		for _, w := range waitedFor {
			if w != fmt.Sprint(pid) {
				t.Errorf("a waiter named pid %s, but %d unpacked", w, pid)
			}
		}
	}
	t.Logf("1 unpack, %d waiters said so", waiters)
}

// TestEnsureKilledUnpack SIGKILLs a process in the middle of an unpack,
// then checks that nothing it left is trusted and the next Ensure works.
func TestEnsureKilledUnpack(t *testing.T) {
	random := make([]byte, 1<<20)
	rand.Read(random)
	f := cacheNewFixture(t, lTar(t, lFile("etc/hello", 0o644, "hi"), lFile("random", 0o644, string(random))))
	a := f.args("killed.json")
	a.BlockAfter = 64 << 10
	a.BlockFile = filepath.Join(f.base, "blocked")
	cmd := layerHelperCmd(t, f.base, "ensure", a)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(a.BlockFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the helper never reached the middle of its unpack")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tmp, _ := os.ReadDir(filepath.Join(f.cache, "tmp"))
	if len(tmp) != 1 {
		t.Fatalf("mid-unpack, tmp holds %v, want one entry", tmp)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if imgs, _ := os.ReadDir(filepath.Join(f.cache, "images")); len(imgs) != 0 {
		t.Fatalf("a killed unpack published %v", imgs)
	}
	if keys, _ := os.ReadDir(filepath.Join(f.cache, "keys")); len(keys) != 0 {
		t.Fatalf("a killed unpack left keys %v", keys)
	}

	b := f.args("after.json")
	layerHelper(t, f.base, "ensure", b, b.Out, new(cacheHelperResult))
	r := cacheReadResult(t, b.Out)
	if r.Err != "" {
		t.Fatalf("Ensure after the kill: %s", r.Err)
	}
	if cacheCount(r.Log, "unpacking ") != 1 {
		t.Errorf("Ensure after the kill did not unpack: %q", r.Log)
	}
	if tmp, _ := os.ReadDir(filepath.Join(f.cache, "tmp")); len(tmp) != 0 {
		t.Errorf("the stale unpack is still in tmp: %v", tmp)
	}
}

// TestEnsureNoSpace unpacks into a 1 MiB tmpfs: an image whose layers
// alone do not fit is refused up front; one that runs out of space midway
// (its layer compresses well) fails with ENOSPC. Both name the directory
// and leave no entry.
func TestEnsureNoSpace(t *testing.T) {
	requireNS := os.Getenv("HPCRUN_TEST_REQUIRE_USERNS") == "1"
	random := make([]byte, 2<<20)
	rand.Read(random)
	for _, tc := range []struct {
		name, want string
		layer      []byte
	}{
		{"layers bigger than the free space", "the layers alone take", lTar(t, lFile("etc/hello", 0o644, "hi"), lFile("random", 0o644, string(random)))},
		{"ENOSPC while unpacking", "no space left on device", lTar(t, lFile("etc/hello", 0o644, "hi"), lFile("zeros", 0o644, string(make([]byte, 4<<20))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := cacheNewFixture(t, tc.layer)
			os.Mkdir(f.cache, 0o700)
			a := f.args("out.json")
			a.MountTmpfs = true
			cmd := layerHelperCmd(t, f.base, "ensure", a)
			// The helper mounts the tmpfs in a mount namespace of its own:
			// as root directly (and stays root: the size limit is what is
			// tested), otherwise inside a user namespace.
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
			if os.Getuid() != 0 {
				cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
				cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
				cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
			} else {
				// Root's cache must not sit in another user's directory.
				os.Chown(f.base, 0, 0)
				os.Chown(f.cache, 0, 0)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				if os.Getuid() != 0 && !requireNS {
					t.Skipf("cannot mount a tmpfs in a user namespace here (set HPCRUN_TEST_REQUIRE_USERNS=1 to fail instead): %v\n%s", err, out)
				}
				t.Fatalf("helper: %v\n%s", err, out)
			}
			r := cacheReadResult(t, a.Out)
			t.Logf("error: %s", r.Err)
			if r.Err == "" || !strings.Contains(r.Err, tc.want) || !strings.Contains(r.Err, "no space left in the image cache "+f.cache) {
				t.Errorf("err = %q, want one naming %s and saying %q", r.Err, f.cache, tc.want)
			}
			if left := r.Log[len(r.Log)-1]; left != "left: images keys locks locks/"+(f.digest.Algorithm()+"-"+f.digest.Encoded())+" tmp" {
				t.Errorf("the cache holds more than empty dirs and a lock: %q", left)
			}
		})
	}
}

func TestCacheRemoveAndPrune(t *testing.T) {
	c, err := OpenCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, p := context.Background(), source.Platform{OS: "linux", Architecture: "amd64"}
	var ims []*CachedImage
	for i := range 2 {
		f := cacheNewFixture(t, lTar(t, lFile("etc/hello", 0o644, fmt.Sprint("image ", i)), lDir("ro", 0o500), lFile("ro/secret", 0o000, "x")))
		src, _ := cacheOpenFake(f.image)
		im, err := c.Ensure(ctx, src, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		ims = append(ims, im)
	}
	ents, err := c.List()
	if err != nil || len(ents) != 2 {
		t.Fatalf("List = %v, %v", ents, err)
	}
	for _, e := range ents {
		if e.Size <= 0 || e.Ref != "test.tar" || time.Since(e.LastUse) > time.Minute {
			t.Errorf("entry %+v", e)
		}
	}

	// In use: Remove refuses.
	release, err := c.Use(ims[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ims[0].Digest); !errors.Is(err, store.ErrImageInUse) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Remove of an image in use: %v", err)
	}
	if _, err := os.Stat(ims[0].Rootfs); err != nil {
		t.Errorf("refused Remove touched the image: %v", err)
	}
	// Prune leaves it too, even when old.
	old := time.Now().Add(-48 * time.Hour)
	for _, im := range ims {
		os.Chtimes(c.LockPath(im.Digest), old, old)
	}
	removed, err := c.Prune(24 * time.Hour)
	if err != nil || len(removed) != 1 || removed[0] != ims[1].Digest {
		t.Errorf("Prune = %v, %v; want only %s", removed, err, ims[1].Digest)
	}
	release()

	if err := c.Remove(ims[0].Digest); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"images", "tmp", "keys"} {
		if ents, _ := os.ReadDir(filepath.Join(c.Dir, sub)); len(ents) != 0 {
			t.Errorf("%s/ after removing everything: %v", sub, ents)
		}
	}
	if err := c.Remove(ims[0].Digest); !errors.Is(err, store.ErrNotCached) {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := c.Use(ims[0].Digest); !errors.Is(err, store.ErrNotCached) {
		t.Errorf("Use of a removed image: %v", err)
	}
}

// ---- benchmarks ----

// BenchmarkEnsureWarm is the cost a job start pays when its image is
// cached.
func BenchmarkEnsureWarm(b *testing.B) {
	f := &cacheFixture{image: filepath.Join(b.TempDir(), "image")}
	cacheWriteImage(b, f.image, "bench.tar", lTar(b, lFile("etc/hello", 0o644, "hi")))
	c, err := OpenCache(filepath.Join(b.TempDir(), "cache"))
	if err != nil {
		b.Fatal(err)
	}
	src, _ := cacheOpenFake(f.image)
	ctx, p := context.Background(), source.Platform{OS: "linux", Architecture: "amd64"}
	if _, err := c.Ensure(ctx, src, p, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Ensure(ctx, src, p, nil); err != nil {
			b.Fatal(err)
		}
	}
	if src.resolves.Load() != 1 {
		b.Fatalf("warm Ensure resolved %d times", src.resolves.Load())
	}
}

// TestEnsureDamaged: an image that a temp cleaner took files from is
// unpacked again, saying why, beside a job that still runs on the damaged
// tree (it holds the image's lock shared) and keeps it; the sentinel is the
// oldest file of the image by each of its times.
func TestEnsureDamaged(t *testing.T) {
	f := cacheNewFixture(t)
	c, err := OpenCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, p := context.Background(), source.Platform{OS: "linux", Architecture: "amd64"}
	src, _ := cacheOpenFake(f.image)
	im, err := c.Ensure(ctx, src, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(im.Rootfs)
	var sentinel unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "sentinel"), &sentinel); err != nil {
		t.Fatalf("no sentinel: %v", err)
	}
	filepath.WalkDir(im.Rootfs, func(q string, de fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Lstat(q, &st) == nil {
			if st.Atim.Nano() < sentinel.Atim.Nano() || st.Mtim.Nano() < sentinel.Mtim.Nano() || st.Ctim.Nano() < sentinel.Ctim.Nano() {
				t.Errorf("%s is older than the sentinel", q)
			}
		}
		return nil
	})

	job, err := c.Hold(f.digest) // a job on the image, for days
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	// What a cleaner does: the oldest files first.
	for _, q := range []string{filepath.Join(dir, "sentinel"), filepath.Join(im.Rootfs, "etc/hello")} {
		if err := os.Remove(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(src.Key(), p.String()); !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("Lookup of the damaged image: %v, want ErrDamaged", err)
	}
	var logs []string
	again, _ := cacheOpenFake(f.image)
	done := make(chan error, 1)
	go func() {
		_, err := c.Ensure(ctx, again, p, func(s string) { logs = append(logs, s) })
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Ensure of a damaged image waits for the job that runs on it")
	}
	want := "image " + f.digest.String() + " in " + c.Dir + " was damaged (a temp cleaner removed files from it): unpacking it again"
	if len(logs) == 0 || logs[0] != want || cacheCount(logs, "unpacking test.tar") != 1 {
		t.Errorf("log %q, want first %q", logs, want)
	}
	if b, err := os.ReadFile(filepath.Join(im.Rootfs, "etc/hello")); string(b) != "hello" {
		t.Errorf("etc/hello after the repair: %q, %v", b, err)
	}
	// The damaged tree is set aside, where the job keeps it until it ends.
	aside, _ := filepath.Glob(filepath.Join(c.TmpDir(), f.digest.Algorithm()+"-"+f.digest.Encoded()+".*", "rootfs", "etc", "second"))
	if len(aside) != 1 {
		t.Fatalf("the damaged tree set aside: %q", aside)
	}
	if _, err := c.Prune(24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(aside[0]); err != nil {
		t.Errorf("the tree a job runs on was removed: %v", err)
	}
	job.Close()
	if _, err := c.Prune(24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(filepath.Dir(filepath.Dir(aside[0])))); err == nil {
		t.Errorf("the damaged tree outlived its last job")
	}
	if _, err := c.Lookup(src.Key(), p.String()); err != nil {
		t.Errorf("after the repair: %v", err)
	}
}
