package source

// Opening images.
//
// Open takes what the user named with --image and opens it in place:
//
//   - an OCI layout directory (index.json, blobs/ALG/HEX, oci-layout), as DIR
//     or DIR:TAG;
//   - an OCI archive, the same layout in a tar (skopeo copy ... oci-archive:),
//     as FILE or FILE:TAG;
//   - a `docker save` tar, in the classic form (manifest.json, <id>/layer.tar,
//     <hex>.json) or newer Docker's OCI-layout form (index.json and blobs/ as
//     well as manifest.json; index.json wins when both are there);
//   - a SIF file or a bare squashfs (squashfs.go), a Tree.
//
// Archives are read in place: Open reads the tar headers once and
// remembers where each member's data lies, and every blob is then served
// from its offset in the file. Nothing is extracted or copied.
//
// Opening and resolving read only index.json or manifest.json, the manifest
// and the image config, each capped at maxJSONSize; layer data is never read
// (the one exception, a classic docker archive whose compressed layer.tar has
// its digest written nowhere, is hashed once by Resolve). Resolve does check
// that every layer blob is present with the right size, so a broken image
// fails before anything is unpacked.
//
// Every blob read through Source.Open, and every manifest, index and config
// read on the way, is checked against its descriptor's size and sha256 or
// sha512 digest as it streams. Errors are one line, say what was being read
// and wrap one of the sentinel errors below for errors.Is.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/unpack"
)

// Sentinel errors wrapped by what Open and a Source return.
var (
	// ErrNotImage: the file is none of the formats Open reads.
	ErrNotImage = unpack.ErrNotImage
	// ErrPlainRootfs: a directory that is not an OCI layout; the caller
	// uses it as a root filesystem.
	ErrPlainRootfs = errors.New("a plain directory, not an OCI layout")
	// ErrUnsupported: a media type, digest algorithm or format version
	// hpcrun does not handle.
	ErrUnsupported = errors.New("unsupported")
	// ErrNoPlatform: no image in an index fits the platform asked for.
	ErrNoPlatform = errors.New("no image for the platform")
	// ErrNoTag: the tag asked for is not there, or the source holds several
	// images and none was named.
	ErrNoTag = unpack.ErrNoTag
	// ErrDigest: a blob's content does not match its descriptor's digest or
	// size.
	ErrDigest = errors.New("digest mismatch")
	// ErrMissingBlob: a blob named by a descriptor is not in the source.
	ErrMissingBlob = errors.New("missing blob")
	// ErrInvalid: the image is malformed: invalid JSON, a truncated or
	// hostile archive, an impossible descriptor.
	ErrInvalid = errors.New("invalid image")
)

// Source is an image, opened in place for reading. Its methods may be
// called from several goroutines at once.
type Source interface {
	// Ref returns what the user named, for messages.
	Ref() string
	// Resolve picks the manifest: from an index, the one for platform p; a
	// plain manifest as it is. It reads and verifies the manifest and the
	// config, and checks that every layer blob is present, but reads no
	// layer data.
	Resolve(p Platform) (*Resolved, error)
	// Open returns a blob's content. Reading it to EOF verifies the size and
	// the digest, and gives an error naming the blob (never io.EOF) on a
	// mismatch. Reading less than the whole blob verifies nothing.
	Open(d ispec.Descriptor) (io.ReadCloser, error)
	// Key identifies the source file cheaply, for a warm-start cache: it is
	// unpack.Location's Key, computed from stat alone.
	Key() string
	// Close releases the archive file.
	Close() error
}

// Resolved is the image a Source resolved to for one platform.
type Resolved struct {
	ManifestDigest digest.Digest // the cache key
	Manifest       ispec.Manifest
	Config         ispec.Image // parsed and verified config blob
	ConfigDigest   digest.Digest
}

// maxJSONSize caps index.json, manifest.json, manifests, indexes and
// configs, so that a hostile image cannot make hpcrun allocate without
// bound. Real ones are a few KiB.
const maxJSONSize = 4 << 20

// Open opens ref: an OCI archive tar, a docker save tar (classic or
// OCI-layout form) or an OCI layout directory, each with an optional :TAG
// suffix that picks an image by its org.opencontainers.image.ref.name
// annotation or its docker RepoTags; or a SIF file or a bare squashfs,
// which have no tags and open as a Tree. unpack.Locate says how ref is
// split. It returns an error wrapping ErrNotImage for a file that is none of
// these, ErrPlainRootfs for a directory without index.json (the caller
// then uses it as a rootfs), ErrNoTag when the tag is absent or several
// images need one, and an *os.PathError when ref does not exist.
func Open(ref string) (Source, error) {
	loc, err := unpack.Locate(ref)
	if err != nil {
		return nil, err
	}
	switch loc.Kind {
	case unpack.Layout:
		st := &store{ref: ref, file: loc.Path, files: dirFiles(loc.Path), key: loc.Key}
		return newOCISource(st, loc.Tag)
	case unpack.Archive:
		return openArchive(loc)
	}
	return nil, newError(ErrPlainRootfs, "%s has no index.json: not an OCI layout", ref)
}

// openArchive opens a tar archive, OCI or docker, and indexes its headers;
// a SIF file or a squashfs it hands to openTree.
func openArchive(loc *unpack.Location) (_ Source, err error) {
	ref := loc.Ref
	f, err := os.Open(loc.Path)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", ref, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", ref, err)
	}
	var head [64]byte
	n, _ := f.ReadAt(head[:], 0)
	if sifFile, squash := sniffTree(head[:n]); sifFile || squash {
		return openTree(loc, f, fi.Size(), sifFile)
	}
	if err := sniffArchive(ref, f); err != nil {
		return nil, err
	}
	tf, err := indexTar(ref, f, fi.Size())
	if err != nil {
		return nil, err
	}
	st := &store{ref: ref, file: loc.Path, files: tf, key: loc.Key}
	switch {
	case tf.has("index.json"):
		return newOCISource(st, loc.Tag)
	case tf.has("manifest.json"):
		return newDockerSource(st, loc.Tag)
	default:
		return nil, newError(ErrNotImage, "%s is a tar archive without index.json or manifest.json, so not an OCI or docker archive", ref)
	}
}

// blobFiles is the set of files an image is stored in: a directory, or a
// tar archive read in place. Names are slash-separated and relative.
type blobFiles interface {
	// open returns a file's content and its size; an error wrapping
	// fs.ErrNotExist when it is absent.
	open(name string) (io.ReadCloser, int64, error)
	// size returns a file's size without reading it.
	size(name string) (int64, error)
	close() error
}

// store is what every kind of source shares: where its files are and how
// a blob is found among them.
type store struct {
	ref, key string
	file     string // the file or directory ref names, without its tag
	files    blobFiles

	mu    sync.Mutex
	named map[digest.Digest]string // blobs not at blobs/ALG/HEX (docker classic)

	describing bool // Describe: read no layer (see describe.go)
}

func (s *store) Ref() string  { return s.ref }
func (s *store) Key() string  { return s.key }
func (s *store) Close() error { return s.files.close() }

// Open implements Source.
func (s *store) Open(d ispec.Descriptor) (io.ReadCloser, error) {
	return s.open(d, "blob")
}

// blobName is the file that holds a blob with digest d.
func (s *store) blobName(d digest.Digest) string {
	s.mu.Lock()
	name, ok := s.named[d]
	s.mu.Unlock()
	if ok {
		return name
	}
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// open opens the blob d describes, as a verifying reader. what says what
// the blob is ("manifest", "layer 2") for messages.
func (s *store) open(d ispec.Descriptor, what string) (io.ReadCloser, error) {
	if err := checkDigest(d.Digest); err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, s.ref, err)
	}
	label := fmt.Sprintf("%s %s of %s", what, shortDigest(d.Digest), s.ref)
	if d.Size < 0 {
		return nil, newError(ErrInvalid, "%s: negative size %d in its descriptor", label, d.Size)
	}
	name := s.blobName(d.Digest)
	r, size, err := s.files.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, newError(ErrMissingBlob, "%s is missing (no %s)", label, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if size != d.Size {
		r.Close()
		return nil, newError(ErrDigest, "%s: size mismatch: its descriptor says %d bytes, %s has %d", label, d.Size, name, size)
	}
	return newVerifier(r, d, label), nil
}

// checkPresent checks that the blob d describes is there with the right
// size, without reading it.
func (s *store) checkPresent(d ispec.Descriptor, what string) error {
	if err := checkDigest(d.Digest); err != nil {
		return fmt.Errorf("%s of %s: %w", what, s.ref, err)
	}
	label := fmt.Sprintf("%s %s of %s", what, shortDigest(d.Digest), s.ref)
	name := s.blobName(d.Digest)
	size, err := s.files.size(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return newError(ErrMissingBlob, "%s is missing (no %s)", label, name)
	case err != nil:
		return fmt.Errorf("%s: %w", label, err)
	case d.Size < 0:
		return newError(ErrInvalid, "%s: negative size %d in its descriptor", label, d.Size)
	case size != d.Size:
		return newError(ErrDigest, "%s: size mismatch: its descriptor says %d bytes, %s has %d", label, d.Size, name, size)
	}
	return nil
}

// readBlob reads a small JSON blob (manifest, index, config) through the
// verifying path, refusing one larger than maxJSONSize before reading it.
func (s *store) readBlob(d ispec.Descriptor, what string) ([]byte, error) {
	if d.Size > maxJSONSize {
		return nil, newError(ErrInvalid, "%s %s of %s is %d bytes, more than the %d MiB hpcrun reads",
			what, shortDigest(d.Digest), s.ref, d.Size, maxJSONSize>>20)
	}
	r, err := s.open(d, what)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, 0, d.Size+1)
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readFile reads a small metadata file that no descriptor names
// (index.json, manifest.json, oci-layout), capped at maxJSONSize.
func (s *store) readFile(name string) ([]byte, error) {
	r, size, err := s.files.open(name)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", name, s.ref, err)
	}
	defer r.Close()
	if size > maxJSONSize {
		return nil, newError(ErrInvalid, "%s of %s is %d bytes, more than the %d MiB hpcrun reads", name, s.ref, size, maxJSONSize>>20)
	}
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err == nil && int64(len(data)) != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, newError(ErrInvalid, "%s of %s: %w", name, s.ref, err)
	}
	return data, nil
}

// imageError is an error that wraps a sentinel as well as its cause,
// without the sentinel's text in its message.
type imageError struct {
	sentinel error
	err      error
}

// newError formats a one-line message (%w allowed) and tags it with
// sentinel for errors.Is.
func newError(sentinel error, format string, args ...any) error {
	return &imageError{sentinel: sentinel, err: fmt.Errorf(format, args...)}
}

// Error returns the message on one line whatever the image put in it.
func (e *imageError) Error() string { return termsafe.Line(e.err.Error()) }

func (e *imageError) Unwrap() []error { return []error{e.sentinel, e.err} }
