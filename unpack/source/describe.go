package source

// Describing an image for hpcrun inspect: its manifest and config, and no
// layer. A registry source fetches every layer on Resolve (to check it is
// there); Describe does not, so that inspecting a remote image costs two
// small requests.

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Describe resolves src for platform p as Resolve does, but reads no layer
// data and does not check that the layers are there. src serves only
// descriptions afterwards: unpack from a source opened anew.
func Describe(src Source, p Platform) (*Resolved, error) {
	if d, ok := src.(interface{ describeOnly() }); ok {
		d.describeOnly()
	}
	return src.Resolve(p)
}

func (s *store) describeOnly() { s.describing = true }

// Labeled is a Source whose format keeps labels of its own besides those
// in the image config; inspect shows both, these winning. A SIF file's
// are its /.singularity.d/labels.json.
type Labeled interface {
	Labels() (map[string]string, error)
}

// OpenBlobs opens the image whose manifest (or index) is the blob d in
// dir, a blob directory laid out as ALG/HEX (the cache's blobs/, where
// pulls keep what they fetched), for Describe. ref names it in messages.
func OpenBlobs(ref, dir string, d digest.Digest) (Source, error) {
	if err := checkDigest(d); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	fi, err := os.Stat(filepath.Join(dir, d.Algorithm().String(), d.Encoded()))
	if err != nil {
		return nil, err
	}
	st := &store{ref: ref, file: ref, files: blobDirFiles{dirFiles(dir)}, key: ref}
	return &ociSource{store: st, top: []ispec.Descriptor{{Digest: d, Size: fi.Size()}}}, nil
}

// blobDirFiles maps an OCI layout's blobs/ALG/HEX names into a blob
// directory that holds ALG/HEX; it has no other files.
type blobDirFiles struct{ dir dirFiles }

func (b blobDirFiles) name(n string) (string, error) {
	if rest, ok := strings.CutPrefix(n, "blobs/"); ok {
		return rest, nil
	}
	return "", &fs.PathError{Op: "open", Path: n, Err: fs.ErrNotExist}
}

func (b blobDirFiles) open(n string) (io.ReadCloser, int64, error) {
	rest, err := b.name(n)
	if err != nil {
		return nil, 0, err
	}
	return b.dir.open(rest)
}

func (b blobDirFiles) size(n string) (int64, error) {
	rest, err := b.name(n)
	if err != nil {
		return 0, err
	}
	return b.dir.size(rest)
}

func (blobDirFiles) close() error { return nil }
