package source

// Resolving: from index.json down to the manifest and config of one image.
//
// An index (OCI image index or Docker manifest list) picks the entry whose
// platform suits the one asked for (see Platform). An entry that gives no
// platform is taken when it is the only one; among several, a nested index
// is searched and a manifest is judged by its config's os and
// architecture. Indexes may nest up to maxIndexDepth deep. When nothing
// fits, the error lists every platform the image offers.
//
// OCI and Docker schema 2 media types are accepted. Layer media types pass
// through unchanged for the unpacker (uncompressed, +gzip, +zstd); any
// other type, Docker schema 1 and artifacts whose config is not an image
// config are ErrUnsupported.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types, which image-spec does not define.
const (
	mediaTypeDockerManifest         = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList             = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig           = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer            = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// maxIndexDepth is how many indexes may nest below index.json. Real images
// nest one or two; the limit stops a chain built to waste time.
const maxIndexDepth = 8

// maxOffered caps how many platforms an error lists.
const maxOffered = 16

var (
	indexTypes    = map[string]bool{ispec.MediaTypeImageIndex: true, mediaTypeDockerList: true}
	manifestTypes = map[string]bool{ispec.MediaTypeImageManifest: true, mediaTypeDockerManifest: true}
	configTypes   = map[string]bool{ispec.MediaTypeImageConfig: true, mediaTypeDockerConfig: true}
	layerTypes    = map[string]bool{
		ispec.MediaTypeImageLayer:                     true,
		ispec.MediaTypeImageLayerGzip:                 true,
		ispec.MediaTypeImageLayerZstd:                 true,
		ispec.MediaTypeImageLayerNonDistributable:     true, //nolint:staticcheck // deprecated, still found
		ispec.MediaTypeImageLayerNonDistributableGzip: true, //nolint:staticcheck
		ispec.MediaTypeImageLayerNonDistributableZstd: true, //nolint:staticcheck
		mediaTypeDockerLayer:                          true,
		mediaTypeDockerLayerGzip:                      true,
		mediaTypeDockerForeignLayerGzip:               true,
	}
)

// checkIndex checks the version and media type of an index.
func checkIndex(idx *ispec.Index, where string) error {
	if idx.SchemaVersion != 2 {
		return newError(ErrUnsupported, "%s has schemaVersion %d; hpcrun reads 2", where, idx.SchemaVersion)
	}
	if idx.MediaType != "" && !indexTypes[idx.MediaType] {
		return newError(ErrUnsupported, "%s has media type %.100q, not an image index", where, idx.MediaType)
	}
	return nil
}

// resolveIndex picks the image for p among index.json's entries.
func (s *store) resolveIndex(entries []ispec.Descriptor, p Platform) (*Resolved, error) {
	res, offered, err := s.pick(entries, p, 0)
	if err != nil {
		return nil, err
	}
	if res == nil {
		return nil, errNoPlatform(s.ref, p, offered)
	}
	return res, nil
}

// pick chooses the image for p among an index's entries, depth indexes
// below index.json. When none fits it returns a nil Resolved and the
// platforms the entries offer.
func (s *store) pick(entries []ispec.Descriptor, p Platform, depth int) (*Resolved, []string, error) {
	entries = dedupe(entries)
	if len(entries) == 1 && entries[0].Platform == nil {
		return s.resolveDesc(entries[0], p, depth)
	}
	var offered []string
	best, bestScore := -1, 0
	for i, e := range entries {
		if e.Platform == nil {
			continue
		}
		offered = offer(offered, platformString(e.Platform))
		if sc := score(p, e.Platform); sc > bestScore {
			best, bestScore = i, sc
		}
	}
	if best >= 0 {
		return s.resolveDesc(entries[best], p, depth)
	}

	// Entries that give no platform: search a nested index, judge a
	// manifest by its config. What is not an image (an attestation, a
	// signature) is passed over.
	var found *Resolved
	for _, e := range entries {
		if e.Platform != nil || (e.MediaType != "" && !indexTypes[e.MediaType] && !manifestTypes[e.MediaType]) {
			continue
		}
		isIndex, data, err := s.load(e)
		if errors.Is(err, ErrUnsupported) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if isIndex {
			res, more, err := s.descend(e, data, p, depth)
			if err != nil || res != nil {
				return res, nil, err
			}
			for _, o := range more {
				offered = offer(offered, o)
			}
			continue
		}
		res, err := s.manifest(e, data)
		if errors.Is(err, ErrUnsupported) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		q := res.Config.Platform
		offered = offer(offered, platformString(&q))
		if sc := score(p, &q); sc > bestScore {
			found, bestScore = res, sc
		}
	}
	if found == nil {
		return nil, offered, nil
	}
	if err := s.checkLayers(found); err != nil {
		return nil, nil, err
	}
	return found, nil, nil
}

// offer adds a platform to the list an error gives, once.
func offer(offered []string, p string) []string {
	if p == "unknown/unknown" || len(offered) >= maxOffered || slices.Contains(offered, p) {
		return offered // buildx's attestations say unknown/unknown
	}
	return append(offered, p)
}

// dedupe drops entries that repeat an earlier entry's digest (one image
// under several tags).
func dedupe(entries []ispec.Descriptor) []ispec.Descriptor {
	var out []ispec.Descriptor
	for _, e := range entries {
		if !slices.ContainsFunc(out, func(o ispec.Descriptor) bool { return o.Digest == e.Digest }) {
			out = append(out, e)
		}
	}
	return out
}

// resolveDesc resolves the index or manifest d, depth indexes below
// index.json.
func (s *store) resolveDesc(d ispec.Descriptor, p Platform, depth int) (*Resolved, []string, error) {
	isIndex, data, err := s.load(d)
	if err != nil {
		return nil, nil, err
	}
	if isIndex {
		return s.descend(d, data, p, depth)
	}
	res, err := s.manifest(d, data)
	if err == nil {
		err = s.checkLayers(res)
	}
	if err != nil {
		return nil, nil, err
	}
	return res, nil, nil
}

// descend picks from the nested index d whose content is data.
func (s *store) descend(d ispec.Descriptor, data []byte, p Platform, depth int) (*Resolved, []string, error) {
	where := fmt.Sprintf("index %s of %s", shortDigest(d.Digest), s.ref)
	if depth >= maxIndexDepth {
		return nil, nil, newError(ErrInvalid, "%s: indexes nest more than %d deep", where, maxIndexDepth)
	}
	var idx ispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, nil, newError(ErrInvalid, "%s: invalid JSON: %w", where, err)
	}
	return s.pick(idx.Manifests, p, depth+1)
}

// load reads the manifest or index d names and says which it is, from the
// descriptor's media type or, where that is empty, from the content's.
func (s *store) load(d ispec.Descriptor) (isIndex bool, data []byte, err error) {
	what := "manifest"
	switch {
	case indexTypes[d.MediaType]:
		what = "index"
	case manifestTypes[d.MediaType]:
	case d.MediaType == "":
		what = "manifest or index"
	default:
		if err := checkDigest(d.Digest); err != nil {
			return false, nil, fmt.Errorf("entry of %s: %w", s.ref, err)
		}
		return false, nil, newError(ErrUnsupported, "%s of %s has media type %.100q, not an image manifest or index",
			shortDigest(d.Digest), s.ref, d.MediaType)
	}
	if data, err = s.readBlob(d, what); err != nil {
		return false, nil, err
	}
	where := fmt.Sprintf("%s %s of %s", what, shortDigest(d.Digest), s.ref)
	var head struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return false, nil, newError(ErrInvalid, "%s: invalid JSON: %w", where, err)
	}
	switch {
	case indexTypes[head.MediaType]:
		isIndex = true
	case manifestTypes[head.MediaType]:
	case head.MediaType != "":
		return false, nil, newError(ErrUnsupported, "%s has media type %.100q, not an image manifest or index", where, head.MediaType)
	case head.Manifests != nil:
		isIndex = true
	case head.Config == nil:
		return false, nil, newError(ErrInvalid, "%s is neither an image manifest nor an index", where)
	}
	if d.MediaType != "" && isIndex != indexTypes[d.MediaType] {
		return false, nil, newError(ErrInvalid, "%s: its descriptor says %.100q but its content says %.100q", where, d.MediaType, head.MediaType)
	}
	if head.SchemaVersion != 2 {
		return false, nil, newError(ErrUnsupported, "%s has schemaVersion %d; hpcrun reads 2", where, head.SchemaVersion)
	}
	return isIndex, data, nil
}

// manifest parses the manifest d whose content is data, checks its media
// types and reads its config.
func (s *store) manifest(d ispec.Descriptor, data []byte) (*Resolved, error) {
	where := fmt.Sprintf("manifest %s of %s", shortDigest(d.Digest), s.ref)
	var m ispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, newError(ErrInvalid, "%s: invalid JSON: %w", where, err)
	}
	if !configTypes[m.Config.MediaType] {
		return nil, newError(ErrUnsupported, "%s: config media type %.100q is not an image config", where, m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			return nil, newError(ErrUnsupported, "%s: layer %d has unsupported media type %.100q", where, i+1, l.MediaType)
		}
		if err := checkDigest(l.Digest); err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", where, i+1, err)
		}
	}
	cfg, err := s.readBlob(m.Config, "config")
	if err != nil {
		return nil, err
	}
	var img ispec.Image
	if err := json.Unmarshal(cfg, &img); err != nil {
		return nil, newError(ErrInvalid, "config %s of %s: invalid JSON: %w", shortDigest(m.Config.Digest), s.ref, err)
	}
	return &Resolved{ManifestDigest: d.Digest, Manifest: m, Config: img, ConfigDigest: m.Config.Digest}, nil
}

// checkLayers checks that every layer blob is there with its size, so a
// broken image fails before an unpack starts.
func (s *store) checkLayers(res *Resolved) error {
	if s.describing {
		return nil
	}
	for i, l := range res.Manifest.Layers {
		if err := s.checkPresent(l, fmt.Sprintf("layer %d", i+1)); err != nil {
			return err
		}
	}
	return nil
}
