package source

// SIF files and bare squashfs images, as Apptainer builds and runs them.
//
// A SIF file holds data objects; its root filesystem is the partition
// marked primary system (Apptainer's "*System"), a squashfs. A bare
// squashfs is that same filesystem alone. Either is one tree, not layers:
// the image's digest is the SHA-256 of the squashfs's bytes, and its
// files come out of Entries as tar headers, so that package cache applies
// them through the same extraction code, with the same rules, as a layer.
//
// The squashfs is read in place with hpcrun's own pure-Go reader
// (internal/squashfs), which reads every compression mksquashfs writes:
// the unpack is the same on every node whatever squashfs-tools it has,
// and no outside program parses a hostile image.
//
// A squashfs is a tree, so it cannot hold what makes a hostile tar layer
// (a name with "../" in it, the same path twice, a file written through a
// symlink): a directory entry whose name is not one plain file name, or a
// name given twice in a directory, means a forged image, and the walk
// refuses it before anything is written. Links may point anywhere, as in a
// layer: the unpacker resolves them inside the root.

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"

	"github.com/apptainer/sif/v2/pkg/sif"
	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hpcrun/hpcrun/internal/squashfs"
	"github.com/hpcrun/hpcrun/unpack"
)

// Tree is a Source that is one filesystem tree rather than layers: a SIF
// file or a bare squashfs. Resolve gives its digest and config (with no
// layers); Entries gives its files.
type Tree interface {
	Source
	// Entries walks the tree, parents before their children, as tar
	// headers. It is called after Resolve.
	Entries() (Entries, error)
	// Size is how many bytes the tree takes in its file.
	Size() int64
}

// Entries is a stream of a tree's files, each a tar header followed by
// its content (Read), as archive/tar's Reader gives a layer's.
type Entries interface {
	// Next returns the next entry's header, or io.EOF after the last.
	Next() (*tar.Header, error)
	// Read reads the current entry's content.
	Read(p []byte) (int, error)
	// DataSize is how many bytes of file content the entries hold.
	DataSize() int64
	// Close releases what reading the entries holds; call it when done,
	// whether or not all were read.
	Close() error
}

// Runscript is what Apptainer runs when no command is given; a SIF's
// Entrypoint when it has one.
const Runscript = "/.singularity.d/runscript"

// treeCache is how much the reader keeps of the squashfs's decompressed
// metadata and fragment blocks. The walk reads them in about the order
// they were written, so a few MiB serve it.
const treeCache = 8 << 20

// maxTreeEntries caps how many files a tree may hold, so that a forged
// directory table cannot make the walk allocate without bound. The
// largest real images (conda environments) hold a few hundred thousand.
const maxTreeEntries = 1 << 22

const squashSuperSize = 96

// sniffTree says whether head, a file's first bytes, begins a SIF file or
// a squashfs.
func sniffTree(head []byte) (sifFile, squash bool) {
	switch {
	case len(head) >= 42 && string(head[32:42]) == "SIF_MAGIC\x00":
		return true, false
	case len(head) >= 4 && string(head[:4]) == "hsqs":
		return false, true
	}
	return false, false
}

// squashSource is a SIF file's system partition or a bare squashfs, read
// in place from f at [off, off+size).
type squashSource struct {
	ref, key string
	what     string // "SIF image" or "squashfs image", for messages
	f        *os.File
	off      int64
	size     int64
	arch     string // the SIF partition's architecture; "" when it names none

	mu  sync.Mutex
	sfs *squashfs.Reader // opened by Resolve
}

// openTree opens loc, whose head was sniffed as a SIF file (sifFile) or a
// squashfs. It takes over f.
func openTree(loc *unpack.Location, f *os.File, fileSize int64, sifFile bool) (_ Source, err error) {
	ref := loc.Ref
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	s := &squashSource{ref: ref, key: loc.Key, f: f, size: fileSize, what: "squashfs image"}
	if sifFile {
		s.what = "SIF image"
	}
	if loc.Tag != "" {
		return nil, newError(ErrNoTag, "%s is a %s, which holds one image and no tags; give it without the \":%s\"", loc.Path, s.what, loc.Tag)
	}
	if sifFile {
		if err := s.systemPartition(); err != nil {
			return nil, err
		}
	}
	if err := s.checkSuperblock(); err != nil {
		return nil, err
	}
	return s, nil
}

// systemPartition finds the SIF's primary system partition and refuses
// what hpcrun cannot run.
func (s *squashSource) systemPartition() error {
	fimg, err := sif.LoadContainer(s.f, sif.OptLoadWithFlag(os.O_RDONLY), sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return newError(ErrInvalid, "%s is not a valid SIF file (%v); copy it again, or check it with apptainer sif list", s.ref, err)
	}
	defer fimg.UnloadContainer()
	d, err := fimg.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		var held []string
		fimg.WithDescriptors(func(d sif.Descriptor) bool {
			held = append(held, d.DataType().String())
			return false
		})
		what := "nothing"
		if len(held) > 0 {
			what = strings.Join(held, ", ")
		}
		if errors.Is(err, sif.ErrMultipleObjectsFound) {
			return newError(ErrInvalid, "%s has several primary system partitions; a SIF file has one", s.ref)
		}
		return newError(ErrUnsupported, "%s is a SIF file without a squashfs system partition (it holds %s); hpcrun runs the SIF images that apptainer build makes", s.ref, what)
	}
	fsType, _, arch, err := d.PartitionMetadata()
	if err != nil {
		return newError(ErrInvalid, "%s: its system partition: %v", s.ref, err)
	}
	switch fsType {
	case sif.FsSquash:
	case sif.FsEncryptedSquashfs, sif.FsGocryptfsSquashfs:
		return newError(ErrUnsupported, "%s is an encrypted SIF image, which hpcrun cannot decrypt; run it with Apptainer, or build it without --encrypt", s.ref)
	default:
		return newError(ErrUnsupported, "%s has a %s system partition, not squashfs; convert it with apptainer build NEW.sif %s", s.ref, fsType, s.ref)
	}
	if d.Offset() < 0 || d.Size() <= 0 || d.Offset() > s.size || d.Size() > s.size-d.Offset() {
		return newError(ErrInvalid, "%s is truncated: its system partition ends at byte %d, and the file has %d; copy it again", s.ref, d.Offset()+d.Size(), s.size)
	}
	s.off, s.size = d.Offset(), d.Size()
	if arch != "" && arch != "unknown" {
		s.arch = arch
	}
	return nil
}

// checkSuperblock refuses a squashfs that is not one, is cut short or is
// compressed in a way no reader knows, each with its own line.
func (s *squashSource) checkSuperblock() error {
	var b [squashSuperSize]byte
	if s.size < squashSuperSize {
		return newError(ErrInvalid, "%s is truncated: %d bytes, less than a squashfs superblock; copy it again", s.ref, s.size)
	}
	if _, err := s.f.ReadAt(b[:], s.off); err != nil {
		return fmt.Errorf("read %s: %w", s.ref, err)
	}
	// The reader's own checks of the rest come at Resolve, as its errors.
	sb, _ := squashfs.ParseSuperblock(b[:])
	switch {
	case sb == nil:
		return newError(ErrInvalid, "%s: its system partition is not a squashfs", s.ref)
	case sb.Major != 4:
		return newError(ErrUnsupported, "%s is a squashfs of version %d; hpcrun reads version 4, what mksquashfs has written since 2009", s.ref, sb.Major)
	case sb.BytesUsed > uint64(s.size):
		return newError(ErrInvalid, "%s is truncated: its squashfs takes %d bytes, and %d are there; copy it again", s.ref, sb.BytesUsed, s.size)
	case squashfs.Compressions[sb.Compression] == "":
		return newError(ErrUnsupported, "%s: unknown squashfs compression %d", s.ref, sb.Compression)
	}
	return nil
}

func (s *squashSource) Ref() string  { return s.ref }
func (s *squashSource) Key() string  { return s.key }
func (s *squashSource) Size() int64  { return s.size }
func (s *squashSource) Close() error { return s.f.Close() }

// Open implements Source: a tree has no blobs.
func (s *squashSource) Open(d ispec.Descriptor) (io.ReadCloser, error) {
	return nil, newError(ErrMissingBlob, "%s is a %s, which has no blob %s", s.ref, s.what, d.Digest)
}

// Resolve hashes the squashfs (its digest is the image's), opens it and
// reads what Apptainer's metadata says about running it.
func (s *squashSource) Resolve(p Platform) (*Resolved, error) {
	if s.arch != "" {
		_, want, _ := normalize(p.OS, p.Architecture, "")
		if _, got, _ := normalize("linux", s.arch, ""); got != want {
			return nil, newError(ErrNoPlatform, "%s is built for %s, and hpcrun runs %s images here", s.ref, s.arch, p.Architecture)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(s.f, s.off, s.size)); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.ref, err)
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	sfs, err := squashfs.Open(s.f, s.off, s.size, treeCache)
	if err != nil {
		return nil, newError(ErrInvalid, "%s: cannot read its squashfs (%v); the image is damaged", s.ref, err)
	}
	s.mu.Lock()
	s.sfs = sfs
	s.mu.Unlock()
	cfg := ispec.Image{Platform: ispec.Platform{OS: "linux", Architecture: s.arch}}
	if s.arch == "" {
		cfg.Architecture = p.Architecture
	}
	if ino, err := sfs.Lookup(Runscript); err == nil && ino.Mode.IsRegular() {
		cfg.Config.Entrypoint = []string{Runscript}
	}
	return &Resolved{ManifestDigest: d, Config: cfg}, nil
}

// Entries implements Tree.
func (s *squashSource) Entries() (Entries, error) {
	s.mu.Lock()
	sfs := s.sfs
	s.mu.Unlock()
	if sfs == nil {
		return nil, fmt.Errorf("%s: Entries before Resolve", s.ref)
	}
	w := &treeWalk{ref: s.ref, sfs: sfs, links: map[uint64]string{}, dirs: map[uint64]bool{}}
	root, err := sfs.Root()
	if err != nil {
		return nil, newError(ErrInvalid, "%s: cannot read its squashfs's root (%v); the image is damaged", s.ref, err)
	}
	if err := w.list(".", root, 0); err != nil {
		return nil, err
	}
	w.start()
	return w, nil
}

// treeEntry is a file of the tree, listed but not yet read.
type treeEntry struct {
	name string // slash-separated, relative to the root
	ino  *squashfs.Inode
}

// treeWalk lists the whole tree first, so that a forged directory table
// fails before anything is written, and then hands out the entries.
type treeWalk struct {
	ref     string
	sfs     *squashfs.Reader
	entries []treeEntry
	dirs    map[uint64]bool // the directories listed, by inode
	next    int
	links   map[uint64]string // inode → the first name of a hardlinked file
	cur     io.Reader
	size    int64 // bytes of file data, all entries

	// Reading ahead (start).
	ch      chan ahead    // the entries, in order
	file    chan ahead    // the current entry's content
	free    chan []byte   // chunks to reuse
	slots   chan struct{} // one per file being read
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup
	pending []byte // what is left of the chunk being read
	chunk   []byte // that chunk, to recycle
}

// list walks the tree depth-first, in the order mksquashfs writes it,
// which keeps the small files that share a fragment block together (the
// block is decompressed once while it stays in the reader's cache), and
// checks each directory's names. A directory listed twice (a forged
// table's loop) is refused.
func (w *treeWalk) list(dir string, ino *squashfs.Inode, depth int) error {
	if depth > maxTreeDepth {
		return newError(ErrInvalid, "%s: its squashfs nests directories more than %d deep, at /%s; the image is forged or damaged", w.ref, maxTreeDepth, strings.TrimPrefix(dir, "."))
	}
	if w.dirs[ino.Ref] {
		return newError(ErrInvalid, "%s: its squashfs lists directory /%s inside itself; the image is forged or damaged", w.ref, strings.TrimPrefix(dir, "."))
	}
	w.dirs[ino.Ref] = true
	des, err := w.sfs.ReadDir(ino)
	if err != nil {
		return newError(ErrInvalid, "%s: cannot read directory /%s of its squashfs (%v); the image is damaged", w.ref, strings.TrimPrefix(dir, "."), err)
	}
	seen := make(map[string]bool, len(des))
	for _, de := range des {
		name := de.Name
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return newError(ErrInvalid, "%s: its squashfs has an entry named %q in /%s, which is no file name; the image is forged or damaged", w.ref, name, strings.TrimPrefix(dir, "."))
		}
		if strings.HasPrefix(name, whiteoutPrefix) {
			return newError(ErrInvalid, "%s: its squashfs has a file %q in /%s, a name that layers use for deletions; the image is forged or damaged", w.ref, name, strings.TrimPrefix(dir, "."))
		}
		if seen[name] {
			return newError(ErrInvalid, "%s: its squashfs has %q twice in /%s; the image is forged or damaged", w.ref, name, strings.TrimPrefix(dir, "."))
		}
		seen[name] = true
	}
	for _, de := range des {
		full := path.Join(dir, de.Name)
		if len(w.entries) >= maxTreeEntries {
			return newError(ErrInvalid, "%s: its squashfs has more than %d files, more than hpcrun unpacks", w.ref, maxTreeEntries)
		}
		child, err := w.sfs.Inode(de.Ref)
		if err != nil {
			return newError(ErrInvalid, "%s: cannot read /%s of its squashfs (%v); the image is damaged", w.ref, full, err)
		}
		if child.Mode.IsDir() != de.IsDir {
			return newError(ErrInvalid, "%s: its squashfs's directory and inode disagree on whether /%s is a directory; the image is forged or damaged", w.ref, full)
		}
		w.entries = append(w.entries, treeEntry{name: full, ino: child})
		if child.Mode.IsDir() {
			if err := w.list(full, child, depth+1); err != nil {
				return err
			}
		} else if child.Mode.IsRegular() {
			w.size += child.Size
		}
	}
	return nil
}

// maxTreeDepth caps how deep directories nest: PATH_MAX allows no more
// than 2048 ("a/a/..."), and a forged tree could nest without end.
const maxTreeDepth = 2048

// whiteoutPrefix marks an OCI layer's deletions; in a tree it would be
// taken for one.
const whiteoutPrefix = ".wh."

// DataSize implements Entries.
func (w *treeWalk) DataSize() int64 { return w.size }

// walkNext returns the next entry's header, its content then readable
// from w.cur (nil for all but regular files).
func (w *treeWalk) walkNext() (*tar.Header, error) {
	w.cur = nil
	if w.next >= len(w.entries) {
		return nil, io.EOF
	}
	e := w.entries[w.next]
	w.next++
	ino := e.ino
	m := ino.Mode
	hdr := &tar.Header{
		Name:    e.name,
		Mode:    int64(m.Perm()),
		Uid:     int(ino.UID),
		Gid:     int(ino.GID),
		ModTime: ino.Mtime,
		Format:  tar.FormatPAX,
	}
	if m&fs.ModeSetuid != 0 {
		hdr.Mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		hdr.Mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		hdr.Mode |= 0o1000
	}
	xattrs, err := w.sfs.Xattrs(ino)
	if err != nil {
		return nil, newError(ErrInvalid, "%s: /%s: its xattrs: %v; the image is damaged", w.ref, e.name, err)
	}
	if len(xattrs) > 0 {
		hdr.Xattrs = xattrs //nolint:staticcheck // umoci reads Xattrs
	}
	switch {
	case m.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case m.IsRegular():
		if first, ok := w.links[ino.Ref]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return hdr, nil
		}
		w.links[ino.Ref] = e.name
		hdr.Typeflag, hdr.Size = tar.TypeReg, ino.Size
		f, err := w.sfs.Open(ino)
		if err != nil {
			return nil, newError(ErrInvalid, "%s: /%s: %v; the image is damaged", w.ref, e.name, err)
		}
		w.cur = &treeFile{ref: w.ref, name: e.name, r: f, left: hdr.Size}
	case m&fs.ModeSymlink != 0:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, ino.Target
	case m&fs.ModeCharDevice != 0:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeChar, int64(ino.Major), int64(ino.Minor)
	case m&fs.ModeDevice != 0:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeBlock, int64(ino.Major), int64(ino.Minor)
	case m&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	default:
		// A socket: a tar layer cannot carry one either, and a job's
		// sockets are made when it runs.
		return w.walkNext()
	}
	return hdr, nil
}

// The squashfs is read and decompressed ahead while the caller writes the
// files: decompressing is most of an unpack's time (the reader inflates
// block by block), and writing waits in
// system calls. A goroutine hands out the entries in order; regular files
// are read by up to aheadFiles goroutines at once, each at most aheadDepth
// chunks of aheadChunk bytes ahead of the caller, so that a node's cores
// inflate several files together (the reader's reads are safe to run
// concurrently: its block cache is locked, its decompressors stateless).
const (
	aheadChunk = 256 << 10
	aheadDepth = 4
	aheadQueue = 64 // entries, most of them headers alone
)

// aheadFiles is how many files are read at once.
var aheadFiles = min(max(runtime.GOMAXPROCS(0), 2), 8)

// ahead is what the reading goroutines hand over: an entry's header with
// the chunks of its content to come (file, nil for all but regular
// files), a chunk, or an error.
type ahead struct {
	hdr  *tar.Header
	file chan ahead
	data []byte
	err  error
}

// start begins reading ahead.
func (w *treeWalk) start() {
	w.ch = make(chan ahead, aheadQueue)
	w.free = make(chan []byte, aheadFiles*(aheadDepth+1))
	w.stop = make(chan struct{})
	w.slots = make(chan struct{}, aheadFiles)
	w.wg.Add(1)
	go w.produce()
}

// send hands a over on ch, unless Close stops the walk first.
func (w *treeWalk) send(ch chan ahead, a ahead) bool {
	select {
	case ch <- a:
		return true
	case <-w.stop:
		return false
	}
}

// produce hands out every entry in order on w.ch, starting a reader for
// each regular file once one of aheadFiles slots is free, and closes w.ch
// after the last.
func (w *treeWalk) produce() {
	defer w.wg.Done()
	defer close(w.ch)
	for {
		hdr, err := w.walkNext()
		if err != nil {
			if err != io.EOF {
				w.send(w.ch, ahead{err: err})
			}
			return
		}
		a := ahead{hdr: hdr}
		if w.cur != nil {
			select {
			case w.slots <- struct{}{}:
			case <-w.stop:
				return
			}
			a.file = make(chan ahead, aheadDepth)
			w.wg.Add(1)
			go w.readFile(w.cur, a.file)
			w.cur = nil
		}
		if !w.send(w.ch, a) {
			return
		}
	}
}

// readFile reads r in chunks onto ch, closes ch and frees its slot.
func (w *treeWalk) readFile(r io.Reader, ch chan ahead) {
	defer w.wg.Done()
	defer func() { <-w.slots }()
	defer close(ch)
	for {
		var buf []byte
		select {
		case buf = <-w.free:
		default:
			buf = make([]byte, aheadChunk)
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 && !w.send(ch, ahead{data: buf[:n]}) {
			return
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return
		case err != nil:
			w.send(ch, ahead{err: err})
			return
		}
	}
}

// Next implements Entries. What is left of the current entry's content
// is skipped (read, so that its reader ends and frees its slot).
func (w *treeWalk) Next() (*tar.Header, error) {
	w.recycle()
	for w.file != nil {
		a, ok := <-w.file
		if !ok {
			w.file = nil
			break
		}
		w.chunk = a.data
		w.recycle()
	}
	a, ok := <-w.ch
	switch {
	case !ok:
		return nil, io.EOF
	case a.err != nil:
		return nil, a.err
	}
	w.file = a.file
	return a.hdr, nil
}

// Read implements Entries.
func (w *treeWalk) Read(p []byte) (int, error) {
	for len(w.pending) == 0 {
		w.recycle()
		if w.file == nil {
			return 0, io.EOF
		}
		a, ok := <-w.file
		switch {
		case !ok:
			w.file = nil
			return 0, io.EOF
		case a.err != nil:
			return 0, a.err
		}
		w.pending, w.chunk = a.data, a.data
	}
	n := copy(p, w.pending)
	w.pending = w.pending[n:]
	return n, nil
}

// recycle hands the chunk just read back to the reading goroutines.
func (w *treeWalk) recycle() {
	if w.chunk != nil {
		select {
		case w.free <- w.chunk[:cap(w.chunk)]:
		default:
		}
		w.chunk, w.pending = nil, nil
	}
}

// Close implements Entries: it stops the reading goroutines and waits for
// them, so that nothing reads the squashfs once it returns.
func (w *treeWalk) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
	return nil
}

// treeFile is a regular file's content, which must be as long as its
// inode says.
type treeFile struct {
	ref, name string
	r         io.Reader
	left      int64
}

func (f *treeFile) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.left -= int64(n)
	if err == io.EOF && f.left > 0 {
		return n, newError(ErrInvalid, "%s: /%s ends %d bytes early; the image is damaged", f.ref, f.name, f.left)
	}
	if err != nil && err != io.EOF {
		return n, newError(ErrInvalid, "%s: /%s: %v", f.ref, f.name, err)
	}
	return n, err
}

// labelsFile is where Apptainer keeps an image's labels.
const labelsFile = ".singularity.d/labels.json"

// Labels implements Labeled: the image's /.singularity.d/labels.json, a
// flat JSON object; none when the image has no such file. Read after
// Resolve, capped, as a regular file of the image only.
func (s *squashSource) Labels() (map[string]string, error) {
	s.mu.Lock()
	sfs := s.sfs
	s.mu.Unlock()
	if sfs == nil {
		return nil, fmt.Errorf("%s: Labels before Resolve", s.ref)
	}
	ino, err := sfs.Lookup(labelsFile)
	if err != nil || !ino.Mode.IsRegular() {
		return nil, nil
	}
	f, err := sfs.Open(ino)
	if err != nil {
		return nil, newError(ErrInvalid, "%s: cannot read its /%s (%v); the image is damaged", s.ref, labelsFile, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxLabels+1))
	if err != nil || len(b) > maxLabels {
		return nil, newError(ErrInvalid, "%s: its /%s cannot be read, or is larger than %d bytes", s.ref, labelsFile, maxLabels)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, newError(ErrInvalid, "%s: its /%s is not a JSON object: %v", s.ref, labelsFile, err)
	}
	labels := make(map[string]string, len(raw))
	for k, v := range raw {
		if str, ok := v.(string); ok {
			labels[k] = str
		} else {
			b, _ := json.Marshal(v)
			labels[k] = string(b)
		}
	}
	return labels, nil
}

// maxLabels caps a labels.json: labels are a few lines of metadata.
const maxLabels = 1 << 20
