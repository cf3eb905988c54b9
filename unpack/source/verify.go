package source

// Verifying blobs as they stream. A blob is read through a verifier that
// hashes what passes; at the end of the blob it compares the size and the
// digest with the descriptor's and turns io.EOF into an error that names
// the blob if either differs. Only sha256 and sha512 are accepted: those
// are what the image spec registers for content, and a weaker hash would
// let a hostile image pass a forged blob.

import (
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// checkDigest accepts a well-formed sha256 or sha512 digest.
// (go-digest's Algorithm panics on a string without a colon, so the
// algorithm is split off here.)
func checkDigest(d digest.Digest) error {
	alg, _, ok := strings.Cut(string(d), ":")
	switch {
	case d == "":
		return newError(ErrInvalid, "empty digest")
	case !ok:
		return newError(ErrInvalid, "malformed digest %.80q", d)
	case alg != string(digest.SHA256) && alg != string(digest.SHA512):
		return newError(ErrUnsupported, "digest %.80q: hpcrun checks only sha256 and sha512 digests", d)
	}
	if err := d.Validate(); err != nil {
		return newError(ErrInvalid, "malformed digest %.80q", d)
	}
	return nil
}

// shortDigest is how messages name a blob: "sha256:0123456789ab…". d must
// have passed checkDigest.
func shortDigest(d digest.Digest) string {
	const n = 12
	if enc := d.Encoded(); len(enc) > n {
		return d.Algorithm().String() + ":" + enc[:n] + "…"
	}
	return string(d)
}

func newHash(a digest.Algorithm) hash.Hash {
	if a == digest.SHA512 {
		return sha512.New()
	}
	return sha256.New()
}

// verifier reads a blob and checks it against its descriptor at the end.
type verifier struct {
	r     io.Reader // limited to the descriptor's size
	c     io.Closer
	h     hash.Hash
	want  ispec.Descriptor
	n     int64
	label string // "layer sha256:… of img.tar"
	err   error  // sticky: io.EOF once verified, or why it failed
}

// newVerifier wraps r, which holds the blob d describes; d's digest must
// have passed checkDigest. At most d.Size bytes are read from r: a file
// that grew since its size was checked cannot feed more than that, and
// the first d.Size bytes either hash to the digest or not.
func newVerifier(r io.ReadCloser, d ispec.Descriptor, label string) io.ReadCloser {
	return &verifier{
		r:     io.LimitReader(r, d.Size),
		c:     r,
		h:     newHash(d.Digest.Algorithm()),
		want:  d,
		label: label,
	}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case err == io.EOF:
		v.err = v.finish()
	case err != nil:
		v.err = newError(ErrInvalid, "reading %s: %w", v.label, err)
	case v.n == v.want.Size:
		// Say so now rather than on the next call, so that a caller
		// that stops at the size it expects still gets the check.
		v.err = v.finish()
	}
	if v.err == io.EOF && n > 0 {
		return n, nil
	}
	return n, v.err
}

// finish checks what was read once the blob has ended.
func (v *verifier) finish() error {
	if v.n != v.want.Size {
		return newError(ErrDigest, "%s: truncated: read %d of %d bytes", v.label, v.n, v.want.Size)
	}
	got := digest.NewDigest(v.want.Digest.Algorithm(), v.h)
	if got != v.want.Digest {
		return newError(ErrDigest, "%s: digest mismatch: its content hashes to %s", v.label, shortDigest(got))
	}
	return io.EOF
}

func (v *verifier) Close() error { return v.c.Close() }
