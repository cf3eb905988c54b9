package store

import (
	"fmt"
	"strings"
)

// Digest is a content digest, "sha256:<hex>", as OCI images name blobs
// and manifests.
type Digest string

// hexLen is the length of each algorithm's hex encoding.
var hexLen = map[string]int{"sha256": 64, "sha384": 96, "sha512": 128}

// Validate checks that d is "<alg>:<hex>" with a known algorithm and a
// lower-case hex string of its length.
func (d Digest) Validate() error {
	alg, enc, ok := strings.Cut(string(d), ":")
	n, known := hexLen[alg]
	switch {
	case !ok:
		return fmt.Errorf("digest %q: want ALGORITHM:HEX", string(d))
	case !known:
		return fmt.Errorf("digest %q: unsupported algorithm %q", string(d), alg)
	case len(enc) != n || strings.Trim(enc, "0123456789abcdef") != "":
		return fmt.Errorf("digest %q: want %d lower-case hex digits", string(d), n)
	}
	return nil
}

// Algorithm is the part before the colon.
func (d Digest) Algorithm() string { alg, _, _ := strings.Cut(string(d), ":"); return alg }

// Encoded is the hex part.
func (d Digest) Encoded() string { _, enc, _ := strings.Cut(string(d), ":"); return enc }

func (d Digest) String() string { return string(d) }

// Short is "sha256:0123456789ab…", for messages.
func (d Digest) Short() string {
	if a := d.Abbrev(); a != string(d) {
		return a + "…"
	}
	return string(d)
}

// Abbrev is "sha256:0123456789ab", for tables: hpcrun rmi takes it back.
func (d Digest) Abbrev() string {
	if enc := d.Encoded(); len(enc) > 12 {
		return d.Algorithm() + ":" + enc[:12]
	}
	return string(d)
}

// name is how a digest names files: "sha256-<hex>". d must be valid.
func (d Digest) name() string { return d.Algorithm() + "-" + d.Encoded() }

// ParseName is the inverse of the file names the store gives a digest
// ("sha256-<hex>"); ok is false for any other name.
func ParseName(name string) (Digest, bool) {
	alg, enc, ok := strings.Cut(name, "-")
	if !ok {
		return "", false
	}
	d := Digest(alg + ":" + enc)
	return d, d.Validate() == nil
}
