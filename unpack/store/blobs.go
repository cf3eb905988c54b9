package store

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The blobs of a pulled image lie in BlobsDir as <alg>/<hex>: its manifest
// (under the digest the image is published under), the manifest's config
// and layers, and the index its tag named, if it named one. Which blobs
// belong to which image is read from the manifests there, so nothing else
// has to be kept in step with them.

// maxManifest is the most a manifest or index blob may weigh; larger blobs
// are layers, and are not read.
const maxManifest = 4 << 20

// manifestRefs is what a manifest or an index names.
type manifestRefs struct {
	Config    *struct{ Digest Digest }  `json:"config"`
	Layers    []struct{ Digest Digest } `json:"layers"`
	Manifests []struct{ Digest Digest } `json:"manifests"`
}

// blobPath is where the blob d lies; "" for a digest that is not valid.
func (s *Store) blobPath(d Digest) string {
	if d.Validate() != nil {
		return ""
	}
	return filepath.Join(s.BlobsDir(), d.Algorithm(), d.Encoded())
}

// readRefs reads the blob d as a manifest or an index; ok is false when it
// is not there or is neither (a layer, a config).
func (s *Store) readRefs(d Digest) (manifestRefs, bool) {
	var m manifestRefs
	p := s.blobPath(d)
	if p == "" {
		return m, false
	}
	f, err := os.Open(p)
	if err != nil {
		return m, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil || len(b) > maxManifest || len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &m) != nil {
		return m, false
	}
	// An image's config has a "config" too, an object without a digest.
	if m.Config != nil && m.Config.Digest.Validate() != nil {
		m.Config = nil
	}
	return m, m.Config != nil || len(m.Manifests) > 0
}

// imageBlobs lists the blobs of the image published as d: its manifest,
// config and layers; none for an image that was not pulled.
func (s *Store) imageBlobs(d Digest) []Digest {
	m, ok := s.readRefs(d)
	if !ok || m.Config == nil {
		return nil
	}
	out := []Digest{d, m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// blobsSize is the space the pulled blobs of d take.
func (s *Store) blobsSize(d Digest) int64 {
	var n int64
	for _, b := range s.imageBlobs(d) {
		if p := s.blobPath(b); p != "" {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
		}
	}
	return n
}

// removeBlobs removes the pulled blobs of d that no other manifest in
// BlobsDir names (another image's, or a pull's in progress), and the
// indexes that name d and no other manifest there.
func (s *Store) removeBlobs(d Digest) {
	own := s.imageBlobs(d)
	if own == nil {
		return
	}
	used := map[Digest]bool{}
	var indexes []Digest
	manifests := map[Digest]bool{}
	for _, alg := range []string{"sha256", "sha384", "sha512"} {
		ents, _ := os.ReadDir(filepath.Join(s.BlobsDir(), alg))
		for _, e := range ents {
			b := Digest(alg + ":" + e.Name())
			if b == d || strings.HasSuffix(e.Name(), ".partial") || b.Validate() != nil {
				continue
			}
			if fi, err := e.Info(); err != nil || !fi.Mode().IsRegular() || fi.Size() > maxManifest {
				continue
			}
			m, ok := s.readRefs(b)
			switch {
			case !ok:
			case m.Config != nil:
				manifests[b] = true
				for _, x := range s.imageBlobs(b) {
					used[x] = true
				}
			default:
				indexes = append(indexes, b)
			}
		}
	}
	for _, x := range own {
		if !used[x] {
			os.Remove(s.blobPath(x))
		}
	}
	for _, ix := range indexes {
		m, _ := s.readRefs(ix)
		names, others := false, false
		for _, x := range m.Manifests {
			names = names || x.Digest == d
			others = others || manifests[x.Digest]
		}
		if names && !others {
			os.Remove(s.blobPath(ix))
		}
	}
}
