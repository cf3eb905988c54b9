package cache

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/unpack/source"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// Cache unpacks images into a store.Store: N jobs that start together
// on a node unpack an image once.
type Cache struct {
	*store.Store

	// Progress, when set, hears how far the unpack is (compressed bytes
	// read of all layers). It is called from one goroutine at a time.
	Progress Progress

	// UmociOnly makes umoci extract every entry, without the fast path
	// (see fastPath): the reference the fast path is tested against.
	UmociOnly bool

	// MaxSize, when not 0, is the most an image's files may add up to
	// (all layers, logical sizes): a decompression bomb or a huge sparse
	// file fails with ErrTooBig before it fills the disk.
	MaxSize int64
}

// Progress receives progress reports of a long phase.
type Progress interface {
	// Phase reports done of total bytes; name says what is being
	// unpacked ("layer 2/5").
	Phase(name string, done, total int64)
}

// CachedImage is an image published in the cache.
type CachedImage = store.Image

// OpenCache opens the store at dir (see store.Open).
func OpenCache(dir string) (*Cache, error) {
	s, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	return &Cache{Store: s}, nil
}

// Ensure returns the image src resolves to for platform p, unpacking it
// into the cache first unless it is there. log receives the few lines a
// user should see (waiting for another unpack, unpacking, done); nil
// drops them.
//
// A warm start reads two small files (the key file and image.meta) and
// calls neither src.Resolve nor src.Open. A cold start unpacks under a
// per-digest flock, so that concurrent jobs on the node unpack once; the
// others wait and then use the result.
func (c *Cache) Ensure(ctx context.Context, src source.Source, p source.Platform, log func(string)) (*CachedImage, error) {
	if im, err := c.Lookup(src.Key(), p.String()); err == nil {
		im.Ref = src.Ref()
		return im, nil
	}
	return c.Refresh(ctx, src, p, log)
}

// Refresh is Ensure without the warm lookup: it resolves src again, so a
// pull learns where a registry's tag points now, and unpacks that image
// unless it is in the cache already.
func (c *Cache) Refresh(ctx context.Context, src source.Source, p source.Platform, log func(string)) (*CachedImage, error) {
	if log == nil {
		log = func(string) {}
	}
	im, err := c.cold(ctx, src, p, log)
	if err != nil {
		return nil, err
	}
	im.Ref = src.Ref()
	return im, nil
}

// cold resolves src and unpacks it unless another process did or does.
func (c *Cache) cold(ctx context.Context, src source.Source, p source.Platform, log func(string)) (*CachedImage, error) {
	res, err := src.Resolve(p)
	if err != nil {
		return nil, err
	}
	d := store.Digest(res.ManifestDigest)
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", src.Ref(), err)
	}
	if n, m := len(res.Manifest.Layers), len(res.Config.RootFS.DiffIDs); n != m {
		return nil, fmt.Errorf("%s: the manifest has %d layers but the config has %d diff_ids", src.Ref(), n, m)
	}
	// An entry of a newer hpcrun is neither ours to use nor to replace;
	// and its jobs may hold its lock for days.
	_, loadErr := c.Load(d)
	if errors.Is(loadErr, store.ErrNewerFormat) {
		return nil, fmt.Errorf("%s: %w", src.Ref(), loadErr)
	}
	published := func() *CachedImage {
		im, err := c.Load(d)
		if err != nil {
			return nil
		}
		c.Remember(src.Key(), p.String(), d)
		c.Touch(d)
		return im
	}
	if im := published(); im != nil {
		return im, nil
	}
	if errors.Is(loadErr, store.ErrDamaged) {
		log(loadErr.Error() + ": unpacking it again")
		return c.repair(ctx, src, res, p, log, published)
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
	// An image dir that does not load (a broken or older entry) would
	// block the rename that publishes: take it out of the way.
	if _, err := os.Lstat(c.ImageDir(d)); err == nil {
		if err := c.Discard(d); err != nil {
			return nil, err
		}
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

// repair unpacks the damaged image d again. Why not under d's lock, as
// cold does: the jobs that run on the damaged tree hold it shared, for
// days maybe, and exclusive it would wait for them all. So repair holds
// d's lock shared too, which keeps out every unpack and removal of d (they
// take it exclusively), and the repair lock exclusively, which keeps out
// the other repairs; it moves the damaged tree aside (store.SetAside),
// where the running jobs keep it, and unpacks afresh.
func (c *Cache) repair(ctx context.Context, src source.Source, res *source.Resolved, p source.Platform, log func(string), published func() *CachedImage) (*CachedImage, error) {
	d := store.Digest(res.ManifestDigest)
	var locks []*os.File
	defer func() {
		for _, f := range locks {
			f.Close()
		}
	}()
	for _, l := range []struct {
		path string
		how  int
	}{{c.RepairLockPath(d), unix.LOCK_EX}, {c.LockPath(d), unix.LOCK_SH}} {
		f, err := c.waitLock(ctx, l.path, l.how, src.Ref(), log, func() bool { return published() != nil })
		if err != nil {
			return nil, err
		}
		if f == nil { // repaired, or unpacked, by the process we waited for
			if im := published(); im != nil {
				return im, nil
			}
			return nil, fmt.Errorf("%s: %s was published and removed at once", src.Ref(), d)
		}
		locks = append(locks, f)
	}
	switch _, err := c.Load(d); {
	case err == nil:
		return published(), nil
	case errors.Is(err, store.ErrDamaged):
		if err := c.SetAside(d); err != nil && !errors.Is(err, store.ErrNotCached) {
			return nil, err
		}
	case !errors.Is(err, store.ErrNotCached):
		return nil, err
	}
	c.SweepCopies()
	if err := c.unpack(ctx, src, res, p, log); err != nil {
		return nil, err
	}
	if im := published(); im != nil {
		return im, nil
	}
	return nil, fmt.Errorf("%s: %s vanished right after it was unpacked", src.Ref(), d)
}

// waitLock takes the flock how (LOCK_EX or LOCK_SH) on the lock file at
// path, polling so that ctx can cancel the wait; it says once through log
// that it waits. It returns a nil file, and no error, when done reports
// that there is nothing left to wait for.
func (c *Cache) waitLock(ctx context.Context, path string, how int, ref string, log func(string), done func() bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", ref, err)
	}
	said := false
	for {
		err := store.Flock(f, how|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: path, Err: err}
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
		// waiting as soon as there is nothing left to wait for, or they
		// could starve us.
		if done() {
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
}

// lockPoll is how often a waiter checks the lock and whether the image
// got published.
const lockPoll = 50 * time.Millisecond

// lockToUnpack takes d's lock exclusively and writes our pid into it. While
// another process holds it, it says so once through log and polls, so that
// ctx can cancel the wait. It returns a nil file, and no error, when
// isPublished reports the image published meanwhile.
func (c *Cache) lockToUnpack(ctx context.Context, d store.Digest, ref string, log func(string), isPublished func() bool) (*os.File, error) {
	f, err := c.waitLock(ctx, c.LockPath(d), unix.LOCK_EX, ref, log, isPublished)
	if f == nil || err != nil {
		return nil, err
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
// entries of d, whose lock the caller holds, and those of other digests
// that nobody works on (see store.SweepTmp).
func (c *Cache) removeStale(d store.Digest) {
	c.SweepCopies()
	c.SweepTmp(d)
}

// unpack applies res's layers into a fresh tmp dir, writes image.meta and
// renames the result into images/. The caller holds d's lock.
func (c *Cache) unpack(ctx context.Context, src source.Source, res *source.Resolved, p source.Platform, log func(string)) (err error) {
	d := store.Digest(res.ManifestDigest)
	var total int64
	for _, l := range res.Manifest.Layers {
		total += l.Size
	}
	tree, isTree := src.(source.Tree)
	if isTree {
		total = tree.Size()
	}
	tmpRoot := c.TmpDir()
	if err := c.checkSpace(tmpRoot, total); err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), err)
	}
	tmp, err := os.MkdirTemp(tmpRoot, store.TmpPrefix(d))
	if err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
	}
	defer func() {
		if err != nil {
			store.RemoveTree(tmp)
		}
	}()
	if err := store.MarkStart(tmp); err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o700); err != nil {
		return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
	}

	n := len(res.Manifest.Layers)
	layers := fmt.Sprintf("%d layers", n)
	switch {
	case isTree:
		layers = "one squashfs"
	case n == 1:
		layers = "1 layer"
	}
	log(fmt.Sprintf("unpacking %s (%s): %s, %s", src.Ref(), d.Short(), layers, store.Bytes(total)))
	start := time.Now()
	apply := func(fast bool) error {
		if isTree {
			return c.applyTree(ctx, tree, rootfs, fast, log)
		}
		return c.applyLayers(ctx, src, res, rootfs, total, fast, log)
	}
	err = apply(!c.UmociOnly)
	if IsUmociOnly(err) {
		log(fmt.Sprintf("%s: %v", src.Ref(), err))
		if err = store.RemoveTree(rootfs); err == nil {
			err = os.Mkdir(rootfs, 0o700)
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %w", src.Ref(), c.noSpace(err))
		}
		err = apply(false)
	}
	if err != nil {
		return err
	}

	cfg := res.Config.Config
	meta := store.Meta{
		Ref:      src.Ref(),
		Digest:   d,
		Platform: p.String(),
		Config: store.ImageConfig{
			Env:        cfg.Env,
			WorkingDir: cfg.WorkingDir,
			Entrypoint: cfg.Entrypoint,
			Cmd:        cfg.Cmd,
			User:       cfg.User,
		},
		Unpacked: time.Now().UTC(),
		Boot:     store.BootID(),
		Sentinel: true,
	}
	if err := c.Publish(tmp, meta); err != nil {
		return fmt.Errorf("publish %s: %w", src.Ref(), c.noSpace(err))
	}
	log(fmt.Sprintf("unpacked %s in %.1fs", src.Ref(), time.Since(start).Seconds()))
	return nil
}

// applyLayers applies res's layers in order at rootfs.
func (c *Cache) applyLayers(ctx context.Context, src source.Source, res *source.Resolved, rootfs string, total int64, fast bool, log func(string)) error {
	n := len(res.Manifest.Layers)
	var done, size int64
	for i, l := range res.Manifest.Layers {
		name := fmt.Sprintf("layer %d/%d", i+1, n)
		t := time.Now()
		var st layerStats
		if c.MaxSize > 0 {
			st.limit = c.MaxSize - size
		}
		err := c.applyCachedLayer(ctx, src, rootfs, l, res.Config.RootFS.DiffIDs[i], name, done, total, fast, &st)
		if IsUmociOnly(err) {
			return err
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %s %s: %w", src.Ref(), name, store.Digest(l.Digest).Short(), c.noSpace(err))
		}
		done += l.Size
		size += st.size
		if c.Progress == nil {
			// A batch log gets a line per layer rather than a bar.
			log(fmt.Sprintf("%s %s: %s in %.2fs, %d entries, %d on the fast path", name, store.Digest(l.Digest).Short(),
				store.Bytes(l.Size), time.Since(t).Seconds(), st.entries, st.fast))
		}
	}
	return nil
}

// applyTree applies a tree's entries (a SIF's or a squashfs's) at rootfs,
// as applyLayers applies a layer's: the same checks, the same size limit,
// the same extraction.
func (c *Cache) applyTree(ctx context.Context, t source.Tree, rootfs string, fast bool, log func(string)) error {
	ents, err := t.Entries()
	if err != nil {
		return err
	}
	defer ents.Close()
	t0 := time.Now()
	st := layerStats{limit: c.MaxSize}
	r := &treeReader{Entries: ents, cacheReader: cacheReader{r: ents, ctx: ctx, progress: c.Progress, name: "squashfs", total: ents.DataSize()}}
	r.report()
	err = extract(rootfs, r, fast, &st)
	r.report()
	if IsUmociOnly(err) {
		return err
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", t.Ref(), c.noSpace(err))
	}
	if c.Progress == nil {
		log(fmt.Sprintf("squashfs: %s of files in %.2fs, %d entries, %d on the fast path",
			store.Bytes(ents.DataSize()), time.Since(t0).Seconds(), st.entries, st.fast))
	}
	return nil
}

// treeReader is a tree's entries, with their content read through a
// cacheReader: it stops when ctx is done and reports progress.
type treeReader struct {
	source.Entries
	cacheReader
}

func (r *treeReader) Next() (*tar.Header, error) {
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	return r.Entries.Next()
}

func (r *treeReader) Read(p []byte) (int, error) { return r.cacheReader.Read(p) }

func (c *Cache) applyCachedLayer(ctx context.Context, src source.Source, rootfs string, l ispec.Descriptor, diffID digest.Digest, name string, done, total int64, fast bool, st *layerStats) error {
	comp, err := layerCompression(l.MediaType)
	if err != nil {
		return err
	}
	rc, err := src.Open(l)
	if err != nil {
		return err
	}
	defer rc.Close()
	r := &cacheReader{r: rc, ctx: ctx, progress: c.Progress, name: name, done: done, total: total}
	r.report()
	err = applyLayer(rootfs, r, comp, diffID, fast, st)
	r.report()
	return err
}

// cacheReader reads a blob for the unpack, stops it when ctx is done and
// reports progress every few MiB.
type cacheReader struct {
	r           io.Reader
	ctx         context.Context
	progress    Progress
	name        string
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
		r.progress.Phase(r.name, r.done, r.total)
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
			store.ErrCacheFull, c.Dir, store.Bytes(need), store.Bytes(free), store.Env)
	}
	return nil
}

// noSpace turns ENOSPC and EDQUOT into an error that names the cache.
func (c *Cache) noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w %s (%v); free some space or give another cache directory (--cache, %s)",
			store.ErrCacheFull, c.Dir, err, store.Env)
	}
	return err
}
