package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/source"
)

// The cache on disk:
//
//	<dir>/images/<alg>-<hex>/rootfs/      a published image, never modified
//	<dir>/images/<alg>-<hex>/image.json   what Ensure returns about it
//	<dir>/locks/<alg>-<hex>               flock per digest; holds the unpacker's pid;
//	                                      its mtime is the image's last use
//	<dir>/tmp/<alg>-<hex>.<pid>.<random>  an unpack in progress, or a removal
//	<dir>/keys/<sha256 of source key>     the manifest digest a source resolved to
//
// Everything the cache creates is 0700 or 0600: images are private to their
// user, and nobody else may plant or swap entries.

// Sentinel errors wrapped by what the cache returns.
var (
	// ErrImageInUse: Remove found a job using the image, or an unpack.
	ErrImageInUse = errors.New("image is in use")
	// ErrNotCached: the digest has no published image.
	ErrNotCached = errors.New("image is not in the cache")
	// ErrCacheFull: not enough space, or ENOSPC/EDQUOT while unpacking.
	ErrCacheFull = errors.New("no space left in the image cache")
)

// Cache is a digest-keyed store of unpacked images on node-local disk,
// shared by all of one user's jobs on the node.
type Cache struct {
	Dir string // absolute

	// Progress, when set, hears how far the unpack is (compressed bytes
	// read of all layers). It is called from one goroutine at a time.
	Progress Progress
}

// Progress receives progress reports of a long phase.
type Progress interface {
	Phase(name string, done, total int64)
}

// CachedImage is an image published in the cache.
type CachedImage struct {
	Digest digest.Digest     // the manifest digest
	Rootfs string            // absolute path; never modified once published
	Config ispec.ImageConfig // Env, WorkingDir, Entrypoint, Cmd and User only
	Ref    string            // the source's Ref() for this Ensure
}

// Image returns the root filesystem and environment for the runtime.
func (ci *CachedImage) Image() *unpack.Image {
	return &unpack.Image{Rootfs: ci.Rootfs, Env: ci.Config.Env}
}

// Entry describes one cached image for List.
type Entry struct {
	Digest  digest.Digest
	Ref     string    // the ref it was first unpacked from
	Size    int64     // bytes on disk (blocks), hardlinks counted once
	LastUse time.Time // the last Ensure or unpack that returned it
}

// imageMeta is images/<digest>/image.json.
type imageMeta struct {
	Ref      string            `json:"ref"`
	Digest   digest.Digest     `json:"digest"`
	Platform string            `json:"platform"`
	Config   ispec.ImageConfig `json:"config"`
	Unpacked time.Time         `json:"unpacked"`
}

const cacheEnv = "HPCRUN_CACHE"

// DefaultCacheDir is where the cache lives when no flag names it:
// HPCRUN_CACHE from env, else /var/tmp/hpcrun-<uid>. Node-local on
// purpose: never under $HOME, whose quota an image would blow and whose
// parallel filesystem would take the metadata storm of every node's unpack.
func DefaultCacheDir(env []string, uid int) string {
	dir := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, cacheEnv+"="); ok {
			dir = v // the last one wins, as in exec.Cmd
		}
	}
	if dir != "" {
		return filepath.Clean(dir)
	}
	return "/var/tmp/hpcrun-" + strconv.Itoa(uid)
}

var cacheSubdirs = []string{"images", "locks", "tmp", "keys"}

// OpenCache opens the cache at dir, creating it and its subdirectories
// (mode 0700) as needed. It refuses a dir that is a symlink, is owned by
// another user, or that others may write to.
func OpenCache(dir string) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("no cache directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	if err := checkOwnDir(abs); err != nil {
		return nil, err
	}
	for _, sub := range cacheSubdirs {
		p := filepath.Join(abs, sub)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create cache: %w", err)
		}
		if err := checkOwnDir(p); err != nil {
			return nil, err
		}
	}
	return &Cache{Dir: abs}, nil
}

// checkOwnDir refuses anything at p but a real directory of ours that
// nobody else can write to.
func checkOwnDir(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("cache %s is a symlink; give the directory it points to", p)
	case !fi.IsDir():
		return fmt.Errorf("cache %s is not a directory", p)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("cache %s is owned by uid %d, not by you (uid %d); give your own directory", p, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("cache %s can be written by others (mode %04o); chmod go-w it or give another directory", p, fi.Mode().Perm())
	}
	return nil
}

// digestName is how a digest names files: "sha256-<hex>". d must be valid.
func digestName(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// parseDigestName is the inverse of digestName.
func parseDigestName(name string) (digest.Digest, bool) {
	alg, enc, ok := strings.Cut(name, "-")
	if !ok {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	return d, d.Validate() == nil
}

func (c *Cache) imageDir(d digest.Digest) string {
	return filepath.Join(c.Dir, "images", digestName(d))
}

func (c *Cache) lockPath(d digest.Digest) string {
	return filepath.Join(c.Dir, "locks", digestName(d))
}

// keyPath is the file that remembers which manifest a source resolved to
// for a platform.
func (c *Cache) keyPath(src source.Source, p source.Platform) string {
	sum := sha256.Sum256([]byte(src.Key() + "\x00" + p.String()))
	return filepath.Join(c.Dir, "keys", hex.EncodeToString(sum[:]))
}

// Ensure returns the image src resolves to for platform p, unpacking it
// into the cache first unless it is there. log receives the few lines a
// user should see (waiting for another unpack, unpacking, done); nil
// drops them.
//
// A warm start reads two small files (the key file and image.json) and
// calls neither src.Resolve nor src.Open. A cold start unpacks under a
// per-digest flock, so that concurrent jobs on the node unpack once; the
// others wait and then use the result.
func (c *Cache) Ensure(ctx context.Context, src source.Source, p source.Platform, log func(string)) (*CachedImage, error) {
	if log == nil {
		log = func(string) {}
	}
	keyPath := c.keyPath(src, p)
	if im, err := c.warm(keyPath); err == nil {
		im.Ref = src.Ref()
		return im, nil
	}
	im, err := c.cold(ctx, src, p, keyPath, log)
	if err != nil {
		return nil, err
	}
	im.Ref = src.Ref()
	return im, nil
}

// warm follows the key file to a published image.
func (c *Cache) warm(keyPath string) (*CachedImage, error) {
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	d := digest.Digest(strings.TrimSpace(string(b)))
	if err := d.Validate(); err != nil {
		return nil, err
	}
	im, err := c.load(d)
	if err != nil {
		return nil, err
	}
	c.touch(d)
	return im, nil
}

// load reads a published image's image.json.
func (c *Cache) load(d digest.Digest) (*CachedImage, error) {
	dir := c.imageDir(d)
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	var m imageMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if m.Digest != d {
		return nil, fmt.Errorf("%s: image.json names %s", dir, m.Digest)
	}
	return &CachedImage{Digest: d, Rootfs: filepath.Join(dir, "rootfs"), Config: m.Config, Ref: m.Ref}, nil
}

// touch records a use of d: the lock file's times are the last use.
// Why not the image's own files: a published image is never modified, and
// atime on most mounts (relatime, noatime) says little.
func (c *Cache) touch(d digest.Digest) {
	now := time.Now()
	p := c.lockPath(d)
	if err := os.Chtimes(p, now, now); errors.Is(err, fs.ErrNotExist) {
		if f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
			f.Close()
		}
	}
}

// writeKey remembers that keyPath's source resolved to d. Best effort: a
// missing key only costs the next start a Resolve.
func (c *Cache) writeKey(keyPath string, d digest.Digest) {
	f, err := os.CreateTemp(filepath.Dir(keyPath), ".new-*")
	if err != nil {
		return
	}
	_, err = f.WriteString(d.String() + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), keyPath)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// cold resolves src and unpacks it unless another process did or does.
func (c *Cache) cold(ctx context.Context, src source.Source, p source.Platform, keyPath string, log func(string)) (*CachedImage, error) {
	res, err := src.Resolve(p)
	if err != nil {
		return nil, err
	}
	d := res.ManifestDigest
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: manifest digest %q: %w", src.Ref(), d, err)
	}
	if n, m := len(res.Manifest.Layers), len(res.Config.RootFS.DiffIDs); n != m {
		return nil, fmt.Errorf("%s: the manifest has %d layers but the config has %d diff_ids", src.Ref(), n, m)
	}
	published := func() *CachedImage {
		im, err := c.load(d)
		if err != nil {
			return nil
		}
		c.writeKey(keyPath, d)
		c.touch(d)
		return im
	}
	if im := published(); im != nil {
		return im, nil
	}
	lock, err := c.lockToUnpack(ctx, d, src.Ref(), log, func() bool { return published() != nil })
	if err != nil {
		return nil, err
	}
	if lock == nil { // published by the process we waited for
		if im := published(); im != nil {
			return im, nil
		}
		return nil, fmt.Errorf("%s: %s was published and removed at once", src.Ref(), d)
	}
	defer lock.Close()
	// Check again: the lock holder we waited for (or one before it) may
	// have published it.
	if im := published(); im != nil {
		return im, nil
	}
	c.removeStale(d)
	if err := c.unpack(ctx, src, res, p, log); err != nil {
		return nil, err
	}
	im := published()
	if im == nil {
		return nil, fmt.Errorf("%s: %s vanished right after it was unpacked", src.Ref(), d)
	}
	return im, nil
}

// flock retries on EINTR, which Go's preemption signals can cause.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// lockPoll is how often a waiter checks the lock and whether the image
// got published.
const lockPoll = 50 * time.Millisecond

// lockToUnpack takes d's lock exclusively and writes our pid into it. While
// another process holds it, it says so once through log and polls, so that
// ctx can cancel the wait. It returns a nil file, and no error, when
// isPublished reports the image published meanwhile.
func (c *Cache) lockToUnpack(ctx context.Context, d digest.Digest, ref string, log func(string), isPublished func() bool) (*os.File, error) {
	p := c.lockPath(d)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", ref, err)
	}
	said := false
	for {
		err := flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: p, Err: err}
		}
		if !said {
			said = true
			if pid := lockHolder(f); pid > 0 {
				log(fmt.Sprintf("waiting for %s, being unpacked by pid %d", ref, pid))
			} else {
				log(fmt.Sprintf("waiting for %s, being unpacked by another process", ref))
			}
		}
		// An image that jobs are using is share-locked by them: stop
		// waiting as soon as it is published, or they could starve us.
		if isPublished() {
			f.Close()
			return nil, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", ref, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		f.WriteAt(pid, 0) // only for the waiters' message
	}
	return f, nil
}

// lockHolder reads the pid the lock holder wrote, or 0. The holder may not
// have written it yet: try for a moment.
func lockHolder(f *os.File) int {
	buf := make([]byte, 32)
	for range 5 {
		n, _ := f.ReadAt(buf, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0
}

// removeStale deletes what killed unpacks and removals left in tmp/: the
// entries of d (whose lock the caller holds) and those of any other digest
// whose lock is free and which is not published. Nothing in tmp/ is ever
// read, so a stale entry is never trusted, only deleted.
func (c *Cache) removeStale(d digest.Digest) {
	tmp := filepath.Join(c.Dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	mine := digestName(d) + "."
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, mine) {
			removeTree(filepath.Join(tmp, name))
			continue
		}
		dn, _, ok := strings.Cut(name, ".")
		other, valid := parseDigestName(dn)
		if !ok || !valid {
			continue
		}
		if _, err := os.Lstat(c.imageDir(other)); err == nil {
			continue // rare; jobs may hold its lock, so leave it to Remove/Prune
		}
		f, err := os.OpenFile(c.lockPath(other), os.O_RDONLY|os.O_CREATE, 0o600)
		if err != nil {
			continue
		}
		if flock(f, unix.LOCK_EX|unix.LOCK_NB) == nil {
			removeTree(filepath.Join(tmp, name))
		}
		f.Close()
	}
}

// unpack applies res's layers into a fresh tmp dir, writes image.json and
// renames the result into images/. The caller holds d's lock.
func (c *Cache) unpack(ctx context.Context, src source.Source, res *source.Resolved, p source.Platform, log func(string)) (err error) {
	d := res.ManifestDigest
	var total int64
	for _, l := range res.Manifest.Layers {
		total += l.Size
	}
	tmpRoot := filepath.Join(c.Dir, "tmp")
	if err := c.checkSpace(tmpRoot, total); err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), err)
	}
	tmp, err := os.MkdirTemp(tmpRoot, digestName(d)+"."+strconv.Itoa(os.Getpid())+".")
	if err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
	}
	defer func() {
		if err != nil {
			removeTree(tmp)
		}
	}()
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o700); err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
	}

	n := len(res.Manifest.Layers)
	layers := "layers"
	if n == 1 {
		layers = "layer"
	}
	log(fmt.Sprintf("unpacking %s (%s): %d %s, %s", src.Ref(), cacheShortDigest(d), n, layers, cacheBytes(total)))
	start := time.Now()
	var done int64
	for i, l := range res.Manifest.Layers {
		if err := c.applyCachedLayer(ctx, src, rootfs, l, res.Config.RootFS.DiffIDs[i], done, total); err != nil {
			return fmt.Errorf("unpack %s: layer %d/%d %s: %w", src.Ref(), i+1, n, cacheShortDigest(l.Digest), c.noSpace(err))
		}
		done += l.Size
	}

	meta := imageMeta{
		Ref:      src.Ref(),
		Digest:   d,
		Platform: p.String(),
		Config: ispec.ImageConfig{
			Env:        res.Config.Config.Env,
			WorkingDir: res.Config.Config.WorkingDir,
			Entrypoint: res.Config.Config.Entrypoint,
			Cmd:        res.Config.Config.Cmd,
			User:       res.Config.Config.User,
		},
		Unpacked: time.Now().UTC(),
	}
	b, err := json.MarshalIndent(meta, "", "\t")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "image.json"), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
	}
	// Why rename: it is atomic, so readers (who take no lock) see either
	// no image or a whole one.
	if err := os.Rename(tmp, c.imageDir(d)); err != nil {
		return fmt.Errorf("publish %s: %w", src.Ref(), err)
	}
	log(fmt.Sprintf("unpacked %s in %.1fs", src.Ref(), time.Since(start).Seconds()))
	return nil
}

func (c *Cache) applyCachedLayer(ctx context.Context, src source.Source, rootfs string, l ispec.Descriptor, diffID digest.Digest, done, total int64) error {
	comp, err := layerCompression(l.MediaType)
	if err != nil {
		return err
	}
	rc, err := src.Open(l)
	if err != nil {
		return err
	}
	defer rc.Close()
	r := &cacheReader{r: rc, ctx: ctx, progress: c.Progress, done: done, total: total}
	r.report()
	err = applyLayer(rootfs, r, comp, diffID)
	r.report()
	return err
}

// cacheReader reads a blob for the unpack, stops it when ctx is done and
// reports progress every few MiB.
type cacheReader struct {
	r           io.Reader
	ctx         context.Context
	progress    Progress
	done, total int64
	reported    int64
}

const progressEvery = 4 << 20

func (r *cacheReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.done += int64(n)
	if r.done-r.reported >= progressEvery {
		r.report()
	}
	return n, err
}

func (r *cacheReader) report() {
	if r.progress != nil {
		r.progress.Phase("unpack", r.done, r.total)
	}
	r.reported = r.done
}

// checkSpace refuses to start an unpack that cannot fit: the compressed
// layers are a lower bound of what the rootfs takes.
func (c *Cache) checkSpace(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%w %s: the layers alone take %s, and %s is free there; free some space or give another cache directory (--cache, %s)",
			ErrCacheFull, c.Dir, cacheBytes(need), cacheBytes(free), cacheEnv)
	}
	return nil
}

// noSpace turns ENOSPC and EDQUOT into an error that names the cache.
func (c *Cache) noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w %s (%v); free some space or give another cache directory (--cache, %s)",
			ErrCacheFull, c.Dir, err, cacheEnv)
	}
	return err
}

// Use marks d as in use until release is called: Remove and Prune leave it
// alone meanwhile. Call it after Ensure; ErrNotCached means the image was
// removed in between, and Ensure again will bring it back.
func (c *Cache) Use(d digest.Digest) (release func(), err error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("image %q: %w", d, err)
	}
	p := c.lockPath(d)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock image %s: %w", d, err)
	}
	// A shared lock waits only for an exclusive holder: a Remove or an
	// unpack, both of which end.
	if err := flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: p, Err: err}
	}
	if _, err := os.Stat(filepath.Join(c.imageDir(d), "image.json")); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotCached, d)
	}
	return func() { f.Close() }, nil
}

// Remove deletes a published image, unless a job uses it (see Use) or it is
// being unpacked. The image leaves images/ by one rename, so a job starting
// meanwhile sees it whole or not at all.
func (c *Cache) Remove(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("image %q: %w", d, err)
	}
	dir := c.imageDir(d)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotCached, d)
	}
	p := c.lockPath(d)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock image %s: %w", d, err)
	}
	defer f.Close()
	switch err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
	case unix.EWOULDBLOCK:
		return fmt.Errorf("%w: image %s; remove it when its jobs have ended", ErrImageInUse, d)
	default:
		return &os.PathError{Op: "flock", Path: p, Err: err}
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	trash := filepath.Join(c.Dir, "tmp", digestName(d)+"."+strconv.Itoa(os.Getpid())+"."+hex.EncodeToString(rnd[:]))
	// Out of images/ in one step; into tmp/ under d's name, so that a
	// removal killed midway is cleaned up like a killed unpack.
	if err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, trash, unix.RENAME_NOREPLACE); err != nil {
		err = &os.LinkError{Op: "rename", Old: dir, New: trash, Err: err}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotCached, d)
		}
		return fmt.Errorf("remove image %s: %w", d, err)
	}
	c.removeKeys(func(k digest.Digest) bool { return k == d })
	// We keep the lock while deleting, so that no Ensure takes the tree
	// for a stale unpack and deletes it beside us.
	if err := removeTree(trash); err != nil {
		return fmt.Errorf("remove image %s: %w", d, err)
	}
	return nil
}

// removeKeys deletes the key files whose digest matches.
func (c *Cache) removeKeys(match func(digest.Digest) bool) {
	dir := filepath.Join(c.Dir, "keys")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if match(digest.Digest(strings.TrimSpace(string(b)))) {
			os.Remove(p)
		}
	}
}

// List returns the published images, least recently used first.
func (c *Cache) List() ([]Entry, error) {
	ents, err := os.ReadDir(filepath.Join(c.Dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("list cache: %w", err)
	}
	var out []Entry
	for _, e := range ents {
		d, ok := parseDigestName(e.Name())
		if !ok {
			continue
		}
		en := Entry{Digest: d}
		if im, err := c.load(d); err == nil {
			en.Ref = im.Ref
		}
		if fi, err := os.Stat(c.lockPath(d)); err == nil {
			en.LastUse = fi.ModTime()
		}
		en.Size = diskUsage(c.imageDir(d))
		out = append(out, en)
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.LastUse.Compare(b.LastUse) })
	return out, nil
}

// Prune removes the images not used for olderThan, except those in use,
// and the key files that lead nowhere. It returns what it removed.
func (c *Cache) Prune(olderThan time.Duration) ([]digest.Digest, error) {
	ents, err := c.List()
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []digest.Digest
	var errs []error
	for _, e := range ents {
		if !e.LastUse.Before(cutoff) {
			continue
		}
		switch err := c.Remove(e.Digest); {
		case err == nil:
			removed = append(removed, e.Digest)
		case errors.Is(err, ErrImageInUse), errors.Is(err, ErrNotCached):
		default:
			errs = append(errs, err)
		}
	}
	c.removeKeys(func(d digest.Digest) bool {
		if d.Validate() != nil {
			return true
		}
		_, err := os.Lstat(c.imageDir(d))
		return errors.Is(err, fs.ErrNotExist)
	})
	return removed, errors.Join(errs...)
}

// diskUsage is the space the tree at dir takes, counting each inode once.
func diskUsage(dir string) int64 {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var n int64
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := ino{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		n += st.Blocks * 512
		return nil
	})
	return n
}

// removeTree deletes a tree of ours, first giving back u+rwx to any
// directory that lost it.
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	// WalkDir calls us on a directory before it reads it.
	filepath.WalkDir(p, func(q string, de fs.DirEntry, err error) error {
		if de != nil && de.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// cacheShortDigest is "sha256:0123456789ab…".
func cacheShortDigest(d digest.Digest) string {
	if enc := d.Encoded(); len(enc) > 12 {
		return d.Algorithm().String() + ":" + enc[:12] + "…"
	}
	return d.String()
}

// cacheBytes is a size for people: "12.3 MiB".
func cacheBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i-1])
}
