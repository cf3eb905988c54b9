package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/atomicfile"
	"github.com/hpcrun/hpcrun/internal/safedir"
	"github.com/hpcrun/hpcrun/unpack"
)

// The store on disk:
//
//	<dir>/images/<alg>-<hex>/rootfs/      a published image, never modified
//	<dir>/images/<alg>-<hex>/image.meta   its Meta (see meta.go)
//	<dir>/images/<alg>-<hex>/sentinel     made before rootfs/, never read (see MarkStart)
//	<dir>/locks/<alg>-<hex>               flock per digest; holds the unpacker's pid;
//	                                      its mtime is the image's last use
//	<dir>/tmp/<alg>-<hex>.<pid>.<random>  an unpack in progress, or a removal
//	<dir>/keys/<sha256 of key, platform>  the manifest digest a source resolved to
//
// Everything the store creates is 0700 or 0600: images are private to their
// user, and nobody else may plant or swap entries. Readers of a published
// image take no lock: an image appears and leaves images/ by one rename.

// Sentinel errors wrapped by what the store returns.
var (
	// ErrImageInUse: Remove found a job using the image, or an unpack.
	ErrImageInUse = errors.New("image is in use")
	// ErrNotCached: the digest has no published image.
	ErrNotCached = errors.New("image is not in the cache")
	// ErrCacheFull: not enough space, or ENOSPC/EDQUOT while unpacking.
	ErrCacheFull = errors.New("no space left in the image cache")
	// ErrDamaged: files of a published image were removed since it was
	// unpacked (see MarkStart). Unpack it again, after SetAside.
	ErrDamaged = errors.New("was damaged (a temp cleaner removed files from it)")
)

// Env names the cache directory when no flag does.
const Env = "HPCRUN_CACHE"

// Store is a digest-keyed store of unpacked images on node-local disk,
// shared by all of one user's jobs on the node.
type Store struct {
	Dir string // absolute
}

// ImageConfig is what a job takes from an image's config.
type ImageConfig struct {
	User       string
	Env        []string
	Entrypoint []string
	Cmd        []string
	WorkingDir string
}

// Meta is what the store keeps about a published image.
type Meta struct {
	Ref      string // what it was first unpacked from
	Digest   Digest
	Platform string
	Config   ImageConfig
	Unpacked time.Time
	Boot     string // BootID() of the unpack
	Sentinel bool   // the unpack left the sentinel (MarkStart); older ones did not
}

// Image is an image published in the store.
type Image struct {
	Digest Digest      // the manifest digest
	Rootfs string      // absolute path; never modified once published
	Config ImageConfig // Env, WorkingDir, Entrypoint, Cmd and User
	Ref    string      // what it was first unpacked from
	// Platform is the one it was unpacked for (os/arch[/variant]).
	Platform string

	unpacked time.Time
	synced   bool // known to be on disk
}

// Unpacked returns the root filesystem and environment for the runtime.
func (im *Image) Unpacked() *unpack.Image {
	return &unpack.Image{Rootfs: im.Rootfs, Env: im.Config.Env}
}

// Entry describes one cached image for List.
type Entry struct {
	Digest  Digest    `json:"digest"`
	Ref     string    `json:"ref"`      // the ref it was first unpacked from
	Size    int64     `json:"size"`     // bytes on disk (blocks), hardlinks counted once
	Blobs   int64     `json:"blobs"`    // bytes of the blobs it was pulled from, kept in BlobsDir
	LastUse time.Time `json:"last_use"` // the last Lookup or unpack that returned it
	Damaged bool      `json:"damaged"`  // files of it were removed (ErrDamaged)
}

var subdirs = []string{"images", "locks", "tmp", "keys"}

// Open opens the store at dir, creating it and its subdirectories (mode
// 0700) as needed. It refuses a dir that is a symlink, is owned by another
// user, or that others may write to.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("no cache directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	// Nothing is made where someone else could swap it: a cache refused
	// below must leave nothing behind in their directory.
	uid := os.Getuid()
	if err := safedir.MkdirAll(abs, uid); err != nil {
		var pe *safedir.ParentError
		if errors.As(err, &pe) {
			return nil, parentError(pe, uid)
		}
		return nil, fmt.Errorf("create cache: %w; give another directory (--cache, %s)", err, Env)
	}
	// The parents' symlinks resolved once, here: then every parent can be
	// checked, and none can be swapped later by someone else.
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	abs = filepath.Join(parent, filepath.Base(abs))
	if err := checkParents(parent, uid); err != nil {
		return nil, err
	}
	if err := checkOwnDir(abs, uid); err != nil {
		return nil, err
	}
	// What lies inside a 0700 directory of ours only we can change: the
	// subdirectories need checking only when they are made.
	if _, err := os.Lstat(filepath.Join(abs, subdirs[len(subdirs)-1])); err == nil {
		return &Store{Dir: abs}, nil
	}
	for _, sub := range subdirs {
		p := filepath.Join(abs, sub)
		err := checkOwnDir(p, uid)
		if errors.Is(err, fs.ErrNotExist) { // the first use
			if err = os.Mkdir(p, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
				err = checkOwnDir(p, uid)
			} else {
				err = fmt.Errorf("create cache: %w; give another directory (--cache, %s)", err, Env)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return &Store{Dir: abs}, nil
}

// checkParents refuses a cache whose parent directories someone else could
// rename or replace it in, and so plant images that we would run.
func checkParents(dir string, uid int) error {
	var pe *safedir.ParentError
	err := safedir.CheckParents(dir, uid)
	switch {
	case errors.As(err, &pe):
		return parentError(pe, uid)
	case err != nil:
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// parentError says what to do about a parent someone else could change.
func parentError(pe *safedir.ParentError, uid int) error {
	return fmt.Errorf("cache parent %v, who could swap the cache; give a directory whose parents only root and you can change, such as /var/tmp/hpcrun-%d", pe, uid)
}

// checkOwnDir refuses anything at p but a real directory of ours that
// nobody else can write to.
func checkOwnDir(p string, uid int) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("cache %s is a symlink; give the directory it points to, if it is yours (--cache, %s)", p, Env)
	case !fi.IsDir():
		return fmt.Errorf("cache %s is not a directory; give another directory (--cache, %s)", p, Env)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("cache %s is owned by uid %d, not by you (uid %d); give your own directory (--cache, %s)", p, st.Uid, uid, Env)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("cache %s can be written by others (mode %04o); chmod go-w it or give another directory (--cache, %s)", p, fi.Mode().Perm(), Env)
	}
	return nil
}

// ImageDir is where d is published.
func (s *Store) ImageDir(d Digest) string { return filepath.Join(s.Dir, "images", d.name()) }

// LockPath is d's lock file.
func (s *Store) LockPath(d Digest) string { return filepath.Join(s.Dir, "locks", d.name()) }

// TmpDir holds unpacks in progress and removals.
func (s *Store) TmpDir() string { return filepath.Join(s.Dir, "tmp") }

// BlobsDir holds the blobs of images pulled from registries, as
// sha256/HEX (and HEX.partial while one downloads), so that a pull
// resumes and `hpcrun pull -o` writes an archive without fetching again.
func (s *Store) BlobsDir() string { return filepath.Join(s.Dir, "blobs") }

// pruneBlobs removes the pulled blobs not written or read since cutoff.
func (s *Store) pruneBlobs(cutoff time.Time) {
	dir := filepath.Join(s.BlobsDir(), "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// TmpPrefix starts the name of d's entries in TmpDir, made by this process.
func TmpPrefix(d Digest) string { return d.name() + "." + strconv.Itoa(os.Getpid()) + "." }

// CopyPrefix starts the name of a copy of hpcrun's unpacker in TmpDir,
// which hpcruns before issue 16's fix ran from there where the kernel
// forbids executing a memfd. hpcrun now runs an unnamed copy (see
// internal/unpacker) and only sweeps the old ones.
const CopyPrefix = "hpcrun-unpack."

// SweepCopies removes the copies of the unpacker that a killed hpcrun left
// in TmpDir. A minute is far longer than hpcrun keeps one.
func (s *Store) SweepCopies() {
	ents, _ := os.ReadDir(s.TmpDir())
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), CopyPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > time.Minute {
			os.Remove(filepath.Join(s.TmpDir(), e.Name()))
		}
	}
}

// SweepTmp removes what killed unpacks and removals left in TmpDir, and
// the damaged trees set aside whose jobs have ended: every entry of held,
// a digest whose lock the caller holds exclusively ("" for none), and the
// entries of any other digest whose lock is free. Nothing in TmpDir is ever read, so a stale entry is
// never trusted, only deleted.
func (s *Store) SweepTmp(held Digest) {
	tmp := s.TmpDir()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		dn, _, ok := strings.Cut(name, ".")
		d, valid := ParseName(dn)
		switch {
		case !ok || !valid:
			continue
		case d == held:
			RemoveTree(filepath.Join(tmp, name))
			continue
		}
		// Whoever made the entry held the lock while it worked, and the
		// jobs on a tree set aside (SetAside) hold it shared: free, they
		// are dead or done. A new unpack waits for us.
		f, err := os.OpenFile(s.LockPath(d), os.O_RDONLY|os.O_CREATE, 0o600)
		if err != nil {
			continue
		}
		if Flock(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close()
			continue
		}
		// A published image's jobs would wait for us to delete: the entry
		// is stale already, and no one will use it again.
		if _, err := os.Lstat(s.ImageDir(d)); err == nil {
			f.Close()
			RemoveTree(filepath.Join(tmp, name))
			continue
		}
		RemoveTree(filepath.Join(tmp, name))
		f.Close()
	}
}

// keyPath is the file that remembers which manifest a source (by its
// unpack.Location key) resolved to for a platform.
func (s *Store) keyPath(key, platform string) string {
	sum := sha256.Sum256([]byte(key + "\x00" + platform))
	return filepath.Join(s.Dir, "keys", hex.EncodeToString(sum[:]))
}

// Lookup is the warm start: it follows the key file of (key, platform) to
// a published image, reading two small files, and records the use. An
// error means the caller must resolve the source (a cold start).
func (s *Store) Lookup(key, platform string) (*Image, error) {
	d, err := s.Peek(key, platform)
	if err != nil {
		return nil, err
	}
	im, err := s.Load(d)
	if err != nil {
		return nil, err
	}
	s.Touch(d)
	s.markSynced(d, im)
	return im, nil
}

// Peek says which manifest the source keyed key resolved to for platform
// when it was last unpacked, without recording a use.
func (s *Store) Peek(key, platform string) (Digest, error) {
	b, err := os.ReadFile(s.keyPath(key, platform))
	if err != nil {
		return "", err
	}
	d := Digest(strings.TrimSpace(string(b)))
	if err := d.Validate(); err != nil {
		return "", err
	}
	return d, nil
}

// ErrUnsynced: the image was unpacked before the node last booted, and
// nothing showed that it had reached the disk before then.
var ErrUnsynced = errors.New("unpacked before the node last booted and maybe never written to disk whole")

// Why the boot and the synced marker: an unpack is published by rename
// without waiting for its data to reach the disk (a sync would add a
// tenth to every cold start), so a node that crashes within half a minute
// can come back with an image whose files are empty. An image is trusted
// across a reboot only once a later job, a minute or more after the
// unpack, has synced its filesystem (nearly free by then) and left the
// synced marker in its dir.
const (
	syncedFile = "synced"
	syncAfter  = time.Minute
)

// BootID names this boot of the node; "" if it cannot be read.
func BootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// markSynced makes sure that an image unpacked in this boot a while ago is
// on disk, and says so for the boots to come. Best effort.
func (s *Store) markSynced(d Digest, im *Image) {
	if im.synced || time.Since(im.unpacked) < syncAfter {
		return
	}
	dir := s.ImageDir(d)
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Syncfs(int(f.Fd())) != nil {
		return
	}
	if m, err := os.OpenFile(filepath.Join(dir, syncedFile), os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
		m.Close()
	}
}

// Load reads a published image's image.meta.
func (s *Store) Load(d Digest) (*Image, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	dir := s.ImageDir(d)
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		// Every published dir has its image.meta: one without it lost it.
		if _, err := os.Lstat(dir); err == nil {
			return nil, s.damaged(d)
		}
		return nil, fmt.Errorf("%w: %s", ErrNotCached, d)
	}
	if err != nil {
		return nil, err
	}
	m, err := decodeMeta(b)
	if errors.Is(err, ErrNewerFormat) {
		return nil, fmt.Errorf("image %s: %w; run that hpcrun, or give this one another cache (--cache, %s)", d.Short(), err, Env)
	}
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, metaFile, err)
	}
	if m.Digest != d {
		return nil, fmt.Errorf("%s/%s names %s", dir, metaFile, m.Digest)
	}
	if m.Sentinel && !intact(dir) {
		return nil, s.damaged(d)
	}
	im := &Image{Digest: d, Rootfs: filepath.Join(dir, "rootfs"), Config: m.Config, Ref: m.Ref, Platform: m.Platform, unpacked: m.Unpacked}
	if _, err := os.Lstat(filepath.Join(dir, syncedFile)); err == nil {
		im.synced = true // no need to know the boot
	} else if m.Boot == "" || m.Boot != BootID() {
		return nil, fmt.Errorf("image %s: %w", d.Short(), ErrUnsynced)
	}
	return im, nil
}

// Why a sentinel: temp cleaners (systemd-tmpfiles, tmpreaper) delete the
// files in /tmp and /var/tmp that no one used for some days, by their
// atime, mtime or ctime, and the files of an image that no job reads go
// first. The sentinel is made before the image's tree, and its atime and
// mtime are set to the epoch, so that each of its times is the oldest of
// the image: whatever times a cleaner goes by, it removes the sentinel no
// later than any other file. Nothing reads it (stat does not move atime),
// so it ages as the image's least used file does, and a warm start finds
// it missing with one fstatat.
const sentinelFile = "sentinel"

// MarkStart makes the sentinel in tmp, the dir of an unpack, before
// anything else is unpacked there; Meta.Sentinel then says it was made.
func MarkStart(tmp string) error {
	p := filepath.Join(tmp, sentinelFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	f.Close()
	epoch := time.Unix(0, 0)
	return os.Chtimes(p, epoch, epoch)
}

// intact reports whether the image dir still has its sentinel.
func intact(dir string) bool {
	var st unix.Stat_t
	return unix.Fstatat(unix.AT_FDCWD, filepath.Join(dir, sentinelFile), &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

func (s *Store) damaged(d Digest) error {
	return fmt.Errorf("image %s in %s %w", d, s.Dir, ErrDamaged)
}

// RepairLockPath is the lock that one process at a time holds to unpack a
// damaged d again (see SetAside).
func (s *Store) RepairLockPath(d Digest) string { return s.LockPath(d) + ".repair" }

// SetAside moves the damaged image d out of images/ into TmpDir, so that
// it can be unpacked again beside the jobs that still run on it: they
// keep their mounts, and they keep d's lock shared, which keeps the tree
// from being deleted until they end (SweepTmp deletes d's entries only
// under d's lock held exclusively). The caller holds d's lock shared and
// its RepairLockPath exclusively: no one else unpacks or removes d
// meanwhile. ErrNotCached: there was nothing to move.
func (s *Store) SetAside(d Digest) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	aside := filepath.Join(s.TmpDir(), TmpPrefix(d)+hex.EncodeToString(rnd[:]))
	if err := os.Rename(s.ImageDir(d), aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotCached, d)
		}
		return fmt.Errorf("set the damaged image %s aside: %w", d, err)
	}
	return nil
}

// Touch records a use of d: the lock file's times are the last use.
// Why not the image's own files: a published image is never modified, and
// atime on most mounts (relatime, noatime) says little.
func (s *Store) Touch(d Digest) {
	now := time.Now()
	p := s.LockPath(d)
	if err := os.Chtimes(p, now, now); errors.Is(err, fs.ErrNotExist) {
		if f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
			f.Close()
		}
	}
}

// Remember records that the source with key resolved to d for platform,
// so that the next Lookup finds it. Best effort: a missing key only costs
// the next start a resolve.
func (s *Store) Remember(key, platform string, d Digest) {
	atomicfile.Write(s.keyPath(key, platform), []byte(d.String()+"\n"), 0o600)
}

// Publish moves a finished unpack in tmp (with rootfs/ inside) into
// images/ under m.Digest, after writing m as its image.meta. The caller
// holds the digest's lock.
func (s *Store) Publish(tmp string, m Meta) error {
	if err := m.Digest.Validate(); err != nil {
		return err
	}
	b, err := encodeMeta(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, metaFile), b, 0o600); err != nil {
		return err
	}
	// Why rename: it is atomic, so readers (who take no lock) see either
	// no image or a whole one.
	return os.Rename(tmp, s.ImageDir(m.Digest))
}

// Flock retries on EINTR, which Go's preemption signals can cause.
func Flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// Use marks d as in use until release is called: Remove and Prune leave it
// alone meanwhile. Call it after Lookup or an unpack; ErrNotCached means
// the image was removed in between, and unpacking again brings it back.
func (s *Store) Use(d Digest) (release func(), err error) {
	f, err := s.Hold(d)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Hold is Use for a holder that outlives this process: d is in use for as
// long as the returned file is open anywhere, in a detached container's
// init for example.
func (s *Store) Hold(d Digest) (*os.File, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	p := s.LockPath(d)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock image %s: %w", d, err)
	}
	// A shared lock waits only for an exclusive holder: a Remove or an
	// unpack, both of which end.
	if err := Flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: p, Err: err}
	}
	if _, err := os.Stat(filepath.Join(s.ImageDir(d), metaFile)); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotCached, d)
	}
	return f, nil
}

// Remove deletes a published image, unless a job uses it (see Use) or it is
// being unpacked, and the blobs it was pulled from that no other image
// uses. The image leaves images/ by one rename, so a job starting
// meanwhile sees it whole or not at all.
func (s *Store) Remove(d Digest) error {
	if err := d.Validate(); err != nil {
		return err
	}
	dir := s.ImageDir(d)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotCached, d)
	}
	p := s.LockPath(d)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock image %s: %w", d, err)
	}
	defer f.Close()
	switch err := Flock(f, unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
	case unix.EWOULDBLOCK:
		return fmt.Errorf("%w: image %s; remove it when its jobs have ended", ErrImageInUse, d)
	default:
		return &os.PathError{Op: "flock", Path: p, Err: err}
	}
	if err := s.Discard(d); err != nil {
		return err
	}
	s.removeBlobs(d)
	return nil
}

// Discard deletes d's image dir, published or broken, whose lock the
// caller holds exclusively.
func (s *Store) Discard(d Digest) error {
	dir := s.ImageDir(d)
	var rnd [8]byte
	rand.Read(rnd[:])
	trash := filepath.Join(s.TmpDir(), TmpPrefix(d)+hex.EncodeToString(rnd[:]))
	// Out of images/ in one step; into tmp/ under d's name, so that a
	// removal killed midway is cleaned up like a killed unpack.
	// A plain rename: the trash name is random, and NFS knows no
	// RENAME_NOREPLACE.
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotCached, d)
		}
		return fmt.Errorf("remove image %s: %w", d, err)
	}
	s.removeKeys(func(k Digest) bool { return k == d })
	// We keep the lock while deleting, so that no unpack takes the tree
	// for a stale one and deletes it beside us.
	if err := RemoveTree(trash); err != nil {
		return fmt.Errorf("remove image %s: %w", d, err)
	}
	return nil
}

// removeKeys deletes the key files whose digest matches.
func (s *Store) removeKeys(match func(Digest) bool) {
	dir := filepath.Join(s.Dir, "keys")
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
		if match(Digest(strings.TrimSpace(string(b)))) {
			os.Remove(p)
		}
	}
}

// List returns the published images, least recently used first.
func (s *Store) List() ([]Entry, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("list cache: %w", err)
	}
	var out []Entry
	for _, e := range ents {
		if d, ok := ParseName(e.Name()); ok {
			out = append(out, s.entry(d))
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.LastUse.Compare(b.LastUse) })
	return out, nil
}

// Stat describes the published image d; an error wrapping ErrNotCached
// when there is none.
func (s *Store) Stat(d Digest) (Entry, error) {
	if err := d.Validate(); err != nil {
		return Entry{}, err
	}
	if _, err := os.Lstat(s.ImageDir(d)); err != nil {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotCached, d)
	}
	return s.entry(d), nil
}

func (s *Store) entry(d Digest) Entry {
	en := Entry{Digest: d}
	im, err := s.Load(d)
	if err == nil {
		en.Ref = im.Ref
	}
	en.Damaged = errors.Is(err, ErrDamaged)
	if fi, err := os.Stat(s.LockPath(d)); err == nil {
		en.LastUse = fi.ModTime()
	}
	en.Size = diskUsage(s.ImageDir(d))
	en.Blobs = s.blobsSize(d)
	return en
}

// Prune removes the images not used for olderThan, except those in use,
// the key files that lead nowhere, and what killed unpacks left in TmpDir.
// It returns the images it removed.
func (s *Store) Prune(olderThan time.Duration) ([]Digest, error) {
	ents, err := s.List()
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []Digest
	var errs []error
	for _, e := range ents {
		if !e.LastUse.Before(cutoff) {
			continue
		}
		switch err := s.Remove(e.Digest); {
		case err == nil:
			removed = append(removed, e.Digest)
		case errors.Is(err, ErrImageInUse), errors.Is(err, ErrNotCached):
		default:
			errs = append(errs, err)
		}
	}
	s.SweepCopies()
	s.SweepTmp("")
	s.pruneBlobs(cutoff)
	s.removeKeys(func(d Digest) bool {
		if d.Validate() != nil {
			return true
		}
		_, err := os.Lstat(s.ImageDir(d))
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

// RemoveTree deletes a tree of ours, first giving back u+rwx to any
// directory that lost it.
func RemoveTree(p string) error {
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

// Bytes is a size for people: "12.3 MiB".
func Bytes(n int64) string {
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
