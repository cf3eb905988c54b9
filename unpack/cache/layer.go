package cache

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	apexlog "github.com/apex/log"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/umoci/oci/layer"

	"github.com/hpcrun/hpcrun/unpack/store"
)

var quietUmoci sync.Once

// compression is how a layer blob is compressed.
type compression int

const (
	uncompressed compression = iota
	compGzip
	compZstd
)

func (c compression) String() string {
	switch c {
	case compGzip:
		return "gzip"
	case compZstd:
		return "zstd"
	}
	return "uncompressed"
}

// layerCompression maps a layer's media type to its compression. It knows
// the OCI types (with the deprecated non-distributable ones) and Docker's.
func layerCompression(mediaType string) (compression, error) {
	base, suffix := mediaType, ""
	if i := strings.LastIndexAny(mediaType, "+."); i >= 0 {
		base, suffix = mediaType[:i], mediaType[i+1:]
	}
	switch {
	case mediaType == "application/vnd.oci.image.layer.v1.tar",
		mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar",
		mediaType == "application/vnd.docker.image.rootfs.diff.tar":
		return uncompressed, nil
	case base == "application/vnd.oci.image.layer.v1.tar",
		base == "application/vnd.oci.image.layer.nondistributable.v1.tar",
		base == "application/vnd.docker.image.rootfs.diff.tar",
		base == "application/vnd.docker.image.rootfs.foreign.diff.tar":
		switch suffix {
		case "gzip":
			return compGzip, nil
		case "zstd":
			return compZstd, nil
		}
	}
	return 0, fmt.Errorf("unsupported layer media type %q", mediaType)
}

// ApplyLayer applies one layer blob on top of the tree at root, as the
// calling user: umoci's rootless mode keeps foreign owners in
// "user.rootlesscontainers" xattrs instead of chowning, and turns device
// nodes into empty placeholder files.
//
// The blob is decompressed according to mediaType in its own goroutine, so
// that decompression overlaps extraction. The uncompressed stream is hashed
// and must match diffID (skipped when diffID is empty). The stream is read to
// its end even when the tar ends early, so that a digest check done by the
// blob reader at EOF always fires.
//
// Entries are modified on the way so that the job can read what the image's
// own user could: regular files get u+r (and u+x when any x bit is set),
// directories get u+rwx. Whiteouts that would name the directory itself or
// its parent are refused. Everything else about escaping root (../ and
// absolute names, links that lead out) is left to umoci, which resolves every
// path inside root; the tests check that.
func ApplyLayer(root string, blob io.Reader, mediaType string, diffID digest.Digest) error {
	comp, err := layerCompression(mediaType)
	if err != nil {
		return err
	}
	return applyLayer(root, blob, comp, diffID, true, nil)
}

// ApplyLayerUmoci is ApplyLayer with every entry extracted by umoci, the
// reference the fast path is tested against. ApplyLayer's errors for which
// IsUmociOnly is true ask for the layers to be applied again from an
// empty root with this.
func ApplyLayerUmoci(root string, blob io.Reader, mediaType string, diffID digest.Digest) error {
	comp, err := layerCompression(mediaType)
	if err != nil {
		return err
	}
	return applyLayer(root, blob, comp, diffID, false, nil)
}

// IsUmociOnly reports whether err asks for the image to be unpacked again
// with umoci alone (see fastPath).
func IsUmociOnly(err error) bool { return errors.Is(err, errUmociOnly) }

// pipeChunk is the size of the chunks handed from the decompressing
// goroutine to the extracting one, and pipeDepth how many of them may wait
// for the extractor (see chunkPipe). blobChunk and blobDepth are those of
// the compressed blob, read (and its digest checked) ahead of the
// decompressor.
const (
	pipeChunk = 256 << 10
	pipeDepth = 6
	blobChunk = 256 << 10
	blobDepth = 4
)

// layerStats counts a layer's entries, and those the fast path took, and
// the bytes of its files against a limit.
type layerStats struct {
	entries, fast int
	// size is the sum of the layer's regular files' sizes (their logical
	// sizes: a sparse file counts whole); limit, when not 0, is the most
	// it may reach.
	size, limit int64
}

// ErrTooBig: an image unpacks to more than the limit allows.
var ErrTooBig = errors.New("image too big")

// applyLayer applies a layer; fast lets the fast path (fastPath) extract
// the entries it can. st, when not nil, gets the counts.
func applyLayer(root string, blob io.Reader, comp compression, diffID digest.Digest, fast bool, st *layerStats) error {
	if diffID != "" {
		if err := diffID.Validate(); err != nil {
			return fmt.Errorf("diff_id %q: %w", diffID, err)
		}
	}
	pipe := newChunkPipe(pipeChunk, pipeDepth)
	var digester digest.Digester
	if diffID != "" {
		digester = diffID.Algorithm().Digester()
	}
	// Three stages, each in its goroutine: reading the blob (which checks
	// its digest), decompressing it, extracting the tar. Decompressing is
	// the slowest: it gets nothing else to do.
	bpipe := newChunkPipe(blobChunk, blobDepth)
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, err := bpipe.ReadFrom(blob)
		bpipe.CloseWrite(err)
	}()
	done := make(chan error, 1)
	go func() {
		err := decompress(pipe, bpipe, comp)
		bpipe.CloseRead(errAborted) // stops the reader if we stopped early
		<-read
		pipe.CloseWrite(err) // nil closes with io.EOF
		done <- err
	}()

	// The decompressed stream is hashed here, on the extracting side: the
	// decompressor is the slower of the two (inflate is most of an
	// unpack's CPU time), and the extractor mostly waits in syscalls.
	var br io.Reader = pipe
	if digester != nil {
		br = io.TeeReader(pipe, digester.Hash())
	}
	if st == nil {
		st = new(layerStats)
	}
	err := extract(root, tar.NewReader(br), fast, st)
	if err == nil {
		// UnpackLayer stops at the tar's end-of-archive marker; whatever
		// follows (padding, or a corrupted tail) must still be read so that
		// the digests cover the whole blob.
		if _, derr := io.Copy(io.Discard, br); derr != nil {
			err = fmt.Errorf("read layer: %w", derr)
		}
	}
	pipe.CloseRead(errAborted) // stops the decompressor if we failed early
	derr := <-done
	pipe.release()
	bpipe.release()
	if errors.Is(err, errUmociOnly) {
		return err
	}
	if derr != nil && !errors.Is(derr, errAborted) {
		// A decompression or blob digest error explains a tar error better
		// than the tar error does.
		return fmt.Errorf("read layer: %w", derr)
	}
	if err != nil {
		return err
	}
	if digester != nil {
		if got := digester.Digest(); got != diffID {
			return fmt.Errorf("uncompressed layer is %s, but the image config's diff_id is %s", got, diffID)
		}
	}
	return nil
}

var errAborted = errors.New("layer extraction stopped")

// decompress copies blob, decompressed, to w.
func decompress(w io.ReaderFrom, blob io.Reader, comp compression) error {
	var r io.Reader
	switch comp {
	case compGzip:
		br := getReader(blob, 256<<10)
		defer putReader(br, 256<<10)
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	case compZstd:
		// One decoder goroutine (this one): decoding already runs beside
		// extraction, and more would cost memory for nothing.
		zr, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		r = blob
	}
	if _, err := w.ReadFrom(r); err != nil {
		if comp != uncompressed && !errors.Is(err, errAborted) {
			return fmt.Errorf("%s: %w", comp, err)
		}
		return err
	}
	// A decompressor may stop at the end of its stream: read the blob to
	// its EOF, where its reader checks the digest.
	n, err := io.Copy(io.Discard, blob)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d bytes of garbage after the %s stream", n, comp)
	}
	return nil
}

// entryReader is a stream of entries: a layer's tar.Reader, or a tree's
// source.Entries, whose files go through the same checks and extraction.
type entryReader interface {
	Next() (*tar.Header, error)
	io.Reader
}

// extract unpacks the entries of tr at root with umoci's TarExtractor, one
// entry at a time (umoci's own UnpackLayer loop, with our checks added),
// and with the fast path, when fast is set, for the entries it can take.
func extract(root string, tr entryReader, fast bool, st *layerStats) error {
	quietUmoci.Do(func() {
		// umoci logs a warning per device node it turns into a
		// placeholder, which is what rootless unpacking always does.
		apexlog.SetLevel(apexlog.ErrorLevel)
	})
	uid, gid := os.Getuid(), os.Getgid()
	opt := &layer.UnpackOptions{OnDiskFormat: layer.DirRootfs{MapOptions: layer.MapOptions{
		Rootless:    true,
		UIDMappings: []rspec.LinuxIDMapping{{HostID: uint32(uid), ContainerID: 0, Size: 1}},
		GIDMappings: []rspec.LinuxIDMapping{{HostID: uint32(gid), ContainerID: 0, Size: 1}},
	}}}
	te := layer.NewTarExtractor(opt)
	var fp *fastPath
	if fast {
		var err error
		if fp, err = newFastPath(root); err != nil {
			return err
		}
		if fp != nil {
			defer fp.close()
		}
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if fp != nil {
				return fp.finish()
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := hdr.Name
		skip, err := checkEntry(hdr)
		if err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
		if skip {
			continue
		}
		st.entries++
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA { //nolint:staticcheck // old archives use TypeRegA
			st.size += hdr.Size
			if st.limit > 0 && st.size > st.limit {
				return fmt.Errorf("%w: entry %q takes it past the limit of %s; if the image is genuine, raise max_image_size in the config (or HPCRUN_MAX_IMAGE_SIZE)",
					ErrTooBig, name, store.Bytes(st.limit))
			}
		}
		if fp != nil {
			handled, err := fp.entry(hdr, tr)
			if err != nil {
				return err
			}
			if handled {
				st.fast++
				continue
			}
			fp.fallback(hdr)
		}
		if err := te.UnpackEntry(root, hdr, tr); err != nil {
			return fmt.Errorf("unpack entry %q: %w", name, err)
		}
		if fp != nil {
			if err := fp.umociDone(hdr); err != nil {
				return err
			}
		}
	}
}

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// checkEntry refuses what umoci would let out of root, skips what carries
// no file, and widens modes so that the owner (the job's user) can read.
func checkEntry(hdr *tar.Header) (skip bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		// pax global headers (git archive writes one) hold no file.
		return true, nil
	}
	base := path.Base(layer.CleanPath(hdr.Name))
	if wo, ok := strings.CutPrefix(base, whiteoutPrefix); ok && base != whiteoutOpaque {
		// Why: umoci joins the whited-out name to its resolved directory
		// without cleaning it, so ".wh.." would delete the directory itself
		// and ".wh..." its parent, outside root when the directory is root.
		if wo == "" || wo == "." || wo == ".." || strings.ContainsRune(wo, '/') {
			return false, errors.New("malicious whiteout: it names no file inside its directory")
		}
		return false, nil
	}
	if strings.IndexByte(hdr.Name, 0) >= 0 || strings.IndexByte(hdr.Linkname, 0) >= 0 {
		return false, errors.New("name contains a NUL byte")
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use TypeRegA
		hdr.Mode |= 0o400
		if hdr.Mode&0o111 != 0 {
			hdr.Mode |= 0o100
		}
	case tar.TypeDir:
		hdr.Mode |= 0o700
	}
	return false, nil
}
