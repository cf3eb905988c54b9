package cache

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"github.com/opencontainers/umoci/oci/layer"
	"golang.org/x/sys/unix"
)

// The fast path extracts the common entries of a layer with a handful of
// directory-fd-relative syscalls each, where umoci's TarExtractor spends
// about 29 (it resolves every parent with SecureJoin, lstats, saves and
// restores the parent's metadata, clears xattrs). It handles only entries
// whose result cannot depend on what lower layers left:
//
//   - a directory that does not exist yet (mkdirat fails with EEXIST
//     otherwise): it becomes "fresh", holding nothing of a lower layer;
//   - a regular file, symlink or hardlink created (O_EXCL) inside a fresh
//     directory;
//
// each owned by root in the image (no "user.rootlesscontainers" xattr to
// write), with no xattrs and no mode bits beyond 0777. Every parent is
// opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so the kernel
// refuses any path that leaves the root or passes through a symlink (before
// Linux 5.6, one openat with O_NOFOLLOW per component does; see walk); such
// an entry goes to umoci, which resolves links inside the root. So does
// everything else: whiteouts that reach below fresh directories, entries
// over existing paths, odd modes, xattrs, other owners, device nodes.
//
// umoci remembers which paths a layer made, so that a whiteout later in
// the same layer spares them; it does not know of the fast path's. A
// whiteout inside a fresh directory is a no-op (nothing of a lower layer
// is there), and one above a fresh directory is left to umoci only when
// no fresh directory lies below it. Otherwise the layer returns
// errUmociOnly and the caller unpacks the image again with umoci alone:
// layers never seen to do that (their whiteouts come before what they
// add) do not pay for it.
type fastPath struct {
	root      string
	rootfd    int // O_PATH of the layer's root
	rootTimes [2]unix.Timespec
	rootDev   uint64
	openat2   bool // resolve with openat2, else one openat per component (walk)
	umask     uint32
	tree      *pathNode // fresh directories, and directories whose times to restore
	fds       fdCache
	buf       []byte
	now       time.Time
}

// errUmociOnly asks for the image to be unpacked again without the fast
// path (see fastPath).
var errUmociOnly = errors.New("a whiteout covers entries the fast path made in this layer; unpack again with umoci alone")

// newFastPath prepares the fast path for one layer at root, or returns nil
// when root does not exist yet (umoci makes it).
func newFastPath(root string) (*fastPath, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	fp := &fastPath{root: root, rootfd: fd, tree: &pathNode{}, umask: currentUmask(), now: time.Now(), buf: make([]byte, 128<<10)}
	fp.openat2 = hasOpenat2(fd)
	fp.fds.init()
	if err := fp.statRoot(); err != nil {
		fp.close()
		return nil, err
	}
	// A root without entries is fresh: the image's first layer.
	if empty, err := dirEmpty(root); err != nil {
		fp.close()
		return nil, err
	} else if empty {
		fp.tree.fresh = true
	}
	return fp, nil
}

func (fp *fastPath) close() {
	fp.fds.drop()
	unix.Close(fp.rootfd)
}

// entry extracts hdr (already passed by checkEntry) when the fast path
// can; handled is false when umoci must, and nothing was changed then.
func (fp *fastPath) entry(hdr *tar.Header, r io.Reader) (handled bool, err error) {
	p := fastClean(hdr.Name)
	if p == "." {
		return false, nil // the root's own metadata
	}
	dir, base := splitPath(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return fp.whiteout(dir, base)
	}
	if hdr.Uid != 0 || hdr.Gid != 0 || len(hdr.Xattrs) != 0 || hdr.Mode&^0o777 != 0 { //nolint:staticcheck // umoci reads Xattrs
		return false, nil
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return fp.mkdir(dir, base, p, hdr)
	case tar.TypeReg, tar.TypeRegA, tar.TypeSymlink, tar.TypeLink: //nolint:staticcheck // old archives use TypeRegA
	default:
		return false, nil
	}
	if !fp.tree.freshAt(dir) {
		return false, nil
	}
	dfd, ok := fp.open(dir)
	if !ok {
		return false, nil
	}
	fp.saveTimes(dfd, dir)
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if unix.Symlinkat(hdr.Linkname, dfd, base) != nil {
			return false, nil
		}
		return true, fp.setTimes(dfd, base, p, hdr)
	case tar.TypeLink:
		return fp.link(dfd, base, hdr.Linkname)
	}
	return fp.file(dfd, base, p, hdr, r)
}

// mkdir makes a directory that does not exist yet, anywhere the parent
// resolves without symlinks, and marks it fresh.
func (fp *fastPath) mkdir(dir, base, p string, hdr *tar.Header) (bool, error) {
	dfd, ok := fp.open(dir)
	if !ok {
		return false, nil
	}
	perm := uint32(hdr.Mode) & 0o777
	fp.saveTimes(dfd, dir)
	if unix.Mkdirat(dfd, base, perm) != nil {
		return false, nil // EEXIST above all: umoci merges the metadata
	}
	if perm&fp.umask != 0 {
		if err := unix.Fchmodat(dfd, base, perm, 0); err != nil {
			return true, fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	n := fp.tree.node(p, true)
	n.fresh = true
	n.times = headerTimes(hdr, fp.now)
	return true, nil
}

// file creates a regular file and writes its contents.
func (fp *fastPath) file(dfd int, base, p string, hdr *tar.Header, r io.Reader) (bool, error) {
	perm := uint32(hdr.Mode) & 0o777
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return false, nil
	}
	err = fp.write(fd, r, hdr.Size)
	if err == nil && perm&fp.umask != 0 {
		err = unix.Fchmod(fd, perm)
	}
	if err == nil {
		err = fp.setTimes(dfd, base, p, hdr)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return true, fmt.Errorf("unpack entry %q: %w", hdr.Name, err)
	}
	return true, nil
}

func (fp *fastPath) write(fd int, r io.Reader, size int64) error {
	var n int64
	for n < size {
		k, rerr := r.Read(fp.buf[:min(int64(len(fp.buf)), size-n)])
		for b := fp.buf[:k]; len(b) > 0; {
			w, err := unix.Write(fd, b)
			if err != nil {
				if err == unix.EINTR {
					continue
				}
				return err
			}
			b = b[w:]
		}
		n += int64(k)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if n != size {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// link makes a hardlink to a target whose directory resolves without
// symlinks; the link itself has no metadata of its own to restore.
func (fp *fastPath) link(dfd int, base, target string) (bool, error) {
	t := fastClean(target)
	if t == "." {
		return false, nil
	}
	tdir, tbase := splitPath(t)
	tfd, ok := fp.open(tdir)
	if !ok {
		return false, nil
	}
	if unix.Linkat(tfd, tbase, dfd, base, 0) != nil {
		return false, nil
	}
	return true, nil
}

// whiteout decides a whiteout of base in dir (see fastPath).
func (fp *fastPath) whiteout(dir, base string) (bool, error) {
	target := dir
	if base != whiteoutOpaque {
		target = joinPath(dir, strings.TrimPrefix(base, whiteoutPrefix))
	}
	if fp.tree.freshAt(target) {
		// Only this layer's entries are there. But umoci resolves the
		// directory through symlinks, to a lower layer's maybe: a no-op
		// only when no symlink is on the way.
		fd, err := fp.resolve(dir)
		if err == nil {
			unix.Close(fd)
			return true, nil
		}
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return true, nil // umoci finds nothing to remove either
		}
		return true, errUmociOnly
	}
	if fp.tree.node(target, false) != nil {
		return true, errUmociOnly
	}
	return false, nil
}

// fallback is called before umoci extracts hdr: umoci may replace the path,
// so open parents are dropped and what was recorded below it forgotten
// (unless a directory stays a directory).
func (fp *fastPath) fallback(hdr *tar.Header) {
	fp.fds.drop()
	if hdr.Typeflag == tar.TypeDir {
		return
	}
	p := fastClean(hdr.Name)
	if _, base := splitPath(p); strings.HasPrefix(base, whiteoutPrefix) {
		return // whiteout() checked that nothing recorded is below it
	}
	fp.tree.remove(p)
}

// umociDone is called after umoci extracted hdr. umoci set the times of a
// directory entry: those are what the end of the layer puts back.
func (fp *fastPath) umociDone(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return nil
	}
	p := fastClean(hdr.Name)
	if p == "." {
		return fp.statRoot()
	}
	n := fp.tree.node(p, false)
	if n == nil || n.times == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fp.rootfd, p, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		n.times = &[2]unix.Timespec{st.Atim, st.Mtim}
	}
	return nil
}

func (fp *fastPath) statRoot() error {
	var st unix.Stat_t
	if err := unix.Fstat(fp.rootfd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", fp.root, err)
	}
	fp.rootTimes = [2]unix.Timespec{st.Atim, st.Mtim}
	fp.rootDev = st.Dev
	return nil
}

// finish sets the times of the directories the layer made, and puts back
// those of the directories it made entries in.
func (fp *fastPath) finish() error {
	fp.fds.drop()
	var err error
	fp.tree.walk("", func(p string, n *pathNode) {
		if n.times == nil || err != nil {
			return
		}
		if p == "" {
			return
		}
		dir, base := splitPath(p)
		dfd, rerr := fp.resolve(dir)
		if rerr != nil {
			return // replaced since by umoci: it set its own times
		}
		if e := unix.UtimesNanoAt(dfd, base, n.times[:], unix.AT_SYMLINK_NOFOLLOW); e != nil && !errors.Is(e, unix.ENOENT) {
			err = fmt.Errorf("set times of %s: %w", p, e)
		}
		unix.Close(dfd)
	})
	if err != nil {
		return err
	}
	// The root's, as umoci puts them back after each entry in it. (Its
	// path is ours, not the image's.)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fp.root, fp.rootTimes[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", fp.root, err)
	}
	return nil
}

// saveTimes records the current times of dir (open as dfd) the first time
// the fast path makes an entry in it, to put them back at the end of the
// layer, as umoci does after each entry. A directory the fast path made has
// its header's times recorded already.
func (fp *fastPath) saveTimes(dfd int, dir string) {
	if dir == "" {
		return // the root's are kept apart
	}
	n := fp.tree.node(dir, true)
	if n.times != nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(dfd, &st) == nil {
		n.times = &[2]unix.Timespec{st.Atim, st.Mtim}
	}
}

func (fp *fastPath) setTimes(dfd int, base, p string, hdr *tar.Header) error {
	ts := headerTimes(hdr, fp.now)
	if err := unix.UtimesNanoAt(dfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", p, err)
	}
	return nil
}

// headerTimes are the atime and mtime umoci gives an entry: a missing
// mtime is now, a missing atime the mtime.
func headerTimes(hdr *tar.Header, now time.Time) *[2]unix.Timespec {
	mt := hdr.ModTime
	if mt.IsZero() {
		mt = now
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = mt
	}
	return &[2]unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
}

// open returns an fd (O_PATH) of the directory dir, cached; ok is false
// when it does not resolve beneath the root without symlinks.
func (fp *fastPath) open(dir string) (int, bool) {
	if fd, ok := fp.fds.get(dir); ok {
		return fd, true
	}
	fd, err := fp.resolve(dir)
	if err != nil {
		return -1, false
	}
	fp.fds.put(dir, fd)
	return fd, true
}

func (fp *fastPath) resolve(dir string) (int, error) {
	if dir == "" {
		dir = "."
	}
	if !fp.openat2 {
		return fp.walk(dir)
	}
	for {
		fd, err := unix.Openat2(fp.rootfd, dir, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// hasOpenat2 reports whether the kernel resolves with openat2 (Linux 5.6),
// trying it on the root fd. A seccomp filter may refuse it with EPERM.
func hasOpenat2(rootfd int) bool {
	if fallback.Forced(fallback.Openat2) {
		return false
	}
	fd, err := unix.Openat2(rootfd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC})
	if err != nil {
		return err != unix.ENOSYS && err != unix.EPERM
	}
	unix.Close(fd)
	return true
}

// walk is resolve for kernels without openat2: it opens dir one component
// at a time, each relative to its parent, with O_NOFOLLOW|O_DIRECTORY, so
// that a symlink anywhere on the way fails (ENOTDIR) as RESOLVE_NO_SYMLINKS
// does. dir is clean and relative, without "." or ".." components, so it
// cannot leave the root (RESOLVE_BENEATH); nothing is mounted inside a
// layer being unpacked, and a component on another device fails as
// RESOLVE_NO_XDEV does. The longest parent in the fd cache is the start:
// a tar lists a directory before what it holds.
func (fp *fastPath) walk(dir string) (int, error) {
	at, rest := fp.rootfd, dir
	if parent, _ := splitPath(dir); parent != "" {
		if fd, ok := fp.fds.get(parent); ok {
			at, rest = fd, dir[len(parent)+1:]
		}
	}
	if rest == "." {
		return openatRetry(fp.rootfd, ".")
	}
	names := strings.Split(rest, "/")
	if slices.ContainsFunc(names, func(n string) bool { return n == "" || n == "." || n == ".." }) {
		return -1, unix.EXDEV
	}
	var st unix.Stat_t
	fd := -1
	for _, name := range names {
		next, err := openatRetry(at, name)
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		fd, at = next, next
		if err := unix.Fstat(fd, &st); err != nil || st.Dev != fp.rootDev {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
	}
	return fd, nil
}

// openatRetry opens directory name of dirfd without following a symlink.
// A symlink fails with ELOOP, as under RESOLVE_NO_SYMLINKS, not with the
// ENOTDIR of O_NOFOLLOW|O_DIRECTORY: whiteout tells the two apart.
func openatRetry(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOTDIR {
			var st unix.Stat_t
			if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		return fd, err
	}
}

// fastClean is umoci's CleanPath made relative: "" is the root.
func fastClean(name string) string {
	p := strings.TrimLeft(layer.CleanPath(name), "/")
	if p == "" || p == "." {
		return "."
	}
	return p
}

// splitPath splits a cleaned path into its directory ("" for the root)
// and last element.
func splitPath(p string) (dir, base string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func joinPath(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

func currentUmask() uint32 {
	old := unix.Umask(0)
	unix.Umask(old)
	return uint32(old)
}

func dirEmpty(dir string) (bool, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", dir, err)
		}
		if n == 0 {
			return true, nil
		}
		for b := buf[:n]; len(b) > 0; {
			// linux_dirent64: ino 8, off 8, reclen 2, type 1, name.
			reclen := int(b[16]) | int(b[17])<<8
			name := b[19:reclen]
			if i := strings.IndexByte(string(name), 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				return false, nil
			}
			b = b[reclen:]
		}
	}
}

// pathNode is a tree of cleaned paths ("" is the root).
type pathNode struct {
	kids  map[string]*pathNode
	fresh bool              // made by the fast path in this layer
	times *[2]unix.Timespec // to set at the end of the layer
}

// node finds p's node, making it (and those above it) when create is set.
func (n *pathNode) node(p string, create bool) *pathNode {
	for p != "" {
		var el string
		el, p, _ = strings.Cut(p, "/")
		k := n.kids[el]
		if k == nil {
			if !create {
				return nil
			}
			if n.kids == nil {
				n.kids = map[string]*pathNode{}
			}
			k = &pathNode{}
			n.kids[el] = k
		}
		n = k
	}
	return n
}

// freshAt reports whether p or a directory above it is fresh.
func (n *pathNode) freshAt(p string) bool {
	for {
		if n.fresh {
			return true
		}
		if p == "" {
			return false
		}
		var el string
		el, p, _ = strings.Cut(p, "/")
		if n = n.kids[el]; n == nil {
			return false
		}
	}
}

// remove forgets p and everything below it.
func (n *pathNode) remove(p string) {
	if p == "." || p == "" {
		n.kids, n.fresh, n.times = nil, false, nil
		return
	}
	dir, base := splitPath(p)
	if parent := n.node(dir, false); parent != nil {
		delete(parent.kids, base)
	}
}

// walk calls fn on every node, parents before children.
func (n *pathNode) walk(p string, fn func(string, *pathNode)) {
	fn(p, n)
	for el, k := range n.kids {
		k.walk(joinPath(p, el), fn)
	}
}

// fdCache keeps the last few parent directories open: a tar lists a
// directory's entries together, mostly.
type fdCache struct {
	paths [8]string
	fds   [8]int
	next  int
}

func (c *fdCache) init() {
	for i := range c.fds {
		c.fds[i] = -1
	}
}

func (c *fdCache) get(p string) (int, bool) {
	for i, q := range c.paths {
		if c.fds[i] >= 0 && q == p {
			return c.fds[i], true
		}
	}
	return -1, false
}

func (c *fdCache) put(p string, fd int) {
	if c.fds[c.next] >= 0 {
		unix.Close(c.fds[c.next])
	}
	c.paths[c.next], c.fds[c.next] = p, fd
	c.next = (c.next + 1) % len(c.fds)
}

func (c *fdCache) drop() {
	for i, fd := range c.fds {
		if fd >= 0 {
			unix.Close(fd)
			c.fds[i] = -1
		}
	}
}
