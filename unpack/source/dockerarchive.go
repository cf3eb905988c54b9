package source

// Classic `docker save` archives: manifest.json is a list of
// {Config, RepoTags, Layers} naming members of the tar (the config as
// "<hex>.json", each layer as "<id>/layer.tar", or, from newer Docker,
// "blobs/sha256/<hex>" for both). There is no OCI manifest, so Resolve
// synthesises one:
//
//   - the config's digest is the sha256 of its content (checked against
//     its name when that is a digest);
//   - a layer's media type comes from its first bytes: gzip and zstd give
//     +gzip and +zstd, anything else is taken for an uncompressed tar;
//   - a layer's digest is taken from its name when that is blobs/ALG/HEX,
//     else from the config's rootfs.diff_ids (for an uncompressed layer
//     the diff ID is its digest), else, for a compressed layer.tar with
//     its digest written nowhere, it is hashed once here;
//   - ManifestDigest is the sha256 of the synthesised manifest's JSON, so
//     the same archive contents give the same cache key.
//
// Each digest is checked again when Open streams the blob. A :TAG picks
// the image whose RepoTags has "name:TAG" (or is TAG); with several images
// and no tag the error lists their tags. Resolve ignores the platform: a
// classic archive has one image per tag.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerEntry is one image in a docker save manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// dockerSource is a classic docker save archive.
type dockerSource struct {
	*store
	entry dockerEntry

	synth sync.Mutex // guards what follows
	done  bool
	res   *Resolved
	err   error
}

// newDockerSource reads manifest.json and picks the image tag names.
func newDockerSource(st *store, tag string) (Source, error) {
	data, err := st.readFile("manifest.json")
	if err != nil {
		return nil, err
	}
	var all []dockerEntry
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, newError(ErrInvalid, "manifest.json of %s: invalid JSON: %w", st.ref, err)
	}
	var entries []dockerEntry // one per config: the same image twice is one image
	var tags []string
	for _, e := range all {
		if !slices.ContainsFunc(entries, func(o dockerEntry) bool { return o.Config == e.Config }) {
			entries = append(entries, e)
		}
		for _, t := range e.RepoTags {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if tag != "" {
		var kept []dockerEntry
		for _, e := range entries {
			if slices.ContainsFunc(e.RepoTags, func(t string) bool { return tagMatches(t, tag) }) {
				kept = append(kept, e)
			}
		}
		switch {
		case len(kept) == 0 && len(tags) == 0:
			return nil, newError(ErrNoTag, "no tag %q in %s; its images have no tags", tag, st.file)
		case len(kept) == 0:
			return nil, newError(ErrNoTag, "no tag %q in %s; it has %s", tag, st.file, quoteList(tags))
		case len(kept) > 1:
			var names []string
			for _, e := range kept {
				names = append(names, e.RepoTags...)
			}
			return nil, newError(ErrNoTag, "tag %q of %s names several images (%s); give the whole name", tag, st.file, quoteList(names))
		}
		entries = kept
	}
	switch {
	case len(entries) == 0:
		return nil, newError(ErrInvalid, "manifest.json of %s lists no images", st.file)
	case len(entries) > 1 && len(tags) == 0:
		return nil, newError(ErrNoTag, "%s holds %d untagged images; hpcrun cannot tell which to use", st.file, len(entries))
	case len(entries) > 1:
		return nil, newError(ErrNoTag, "%s holds %d images; name one as %s:TAG (it has %s)", st.file, len(entries), st.file, quoteList(tags))
	}
	return &dockerSource{store: st, entry: entries[0]}, nil
}

// Resolve implements Source. The manifest is synthesised once.
func (s *dockerSource) Resolve(Platform) (*Resolved, error) {
	s.synth.Lock()
	defer s.synth.Unlock()
	if !s.done {
		s.res, s.err = s.synthesize()
		s.done = true
	}
	if s.err != nil {
		return nil, s.err
	}
	r := *s.res
	r.Manifest.Layers = slices.Clone(r.Manifest.Layers)
	return &r, nil
}

// Open implements Source. The blobs of a classic archive are found by the
// digests of the synthesised manifest, so it is synthesised first.
func (s *dockerSource) Open(d ispec.Descriptor) (io.ReadCloser, error) {
	_, _ = s.Resolve(Platform{}) // on failure, Open reports the blob missing
	return s.store.Open(d)
}

// synthesize builds the OCI manifest the archive does not have.
func (s *dockerSource) synthesize() (*Resolved, error) {
	cfgName, err := cleanMember(s.entry.Config)
	if err != nil || cfgName == "" {
		return nil, newError(ErrInvalid, "manifest.json of %s: config %.200q is not a member name", s.ref, s.entry.Config)
	}
	cfg, err := s.readFile(cfgName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, newError(ErrMissingBlob, "config %q of %s is missing", cfgName, s.ref)
	}
	if err != nil {
		return nil, err
	}
	cfgDigest := digest.FromBytes(cfg)
	if want := digestInName(cfgName); want != "" && want != cfgDigest {
		return nil, newError(ErrDigest, "config %q of %s: digest mismatch: its content hashes to %s", cfgName, s.ref, shortDigest(cfgDigest))
	}
	var img ispec.Image
	if err := json.Unmarshal(cfg, &img); err != nil {
		return nil, newError(ErrInvalid, "config %q of %s: invalid JSON: %w", cfgName, s.ref, err)
	}

	named := map[digest.Digest]string{cfgDigest: cfgName}
	layers := make([]ispec.Descriptor, 0, len(s.entry.Layers))
	for i, raw := range s.entry.Layers {
		what := fmt.Sprintf("layer %d (%.200q) of %s", i+1, raw, s.ref)
		name, err := cleanMember(raw)
		if err != nil || name == "" {
			return nil, newError(ErrInvalid, "%s: not a member name", what)
		}
		size, err := s.files.size(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, newError(ErrMissingBlob, "%s is missing", what)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		mediaType, err := s.sniffLayer(name, what)
		if err != nil {
			return nil, err
		}
		var d digest.Digest
		switch {
		case digestInName(name) != "":
			d = digestInName(name)
		case mediaType == ispec.MediaTypeImageLayer && len(img.RootFS.DiffIDs) == len(s.entry.Layers):
			d = img.RootFS.DiffIDs[i]
			if err := checkDigest(d); err != nil {
				return nil, fmt.Errorf("%s: diff ID: %w", what, err)
			}
		default:
			if d, err = s.hashMember(name, what); err != nil {
				return nil, err
			}
		}
		if _, ok := named[d]; !ok {
			named[d] = name
		}
		layers = append(layers, ispec.Descriptor{MediaType: mediaType, Digest: d, Size: size})
	}

	m := ispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ispec.MediaTypeImageManifest,
		Config:    ispec.Descriptor{MediaType: ispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfg))},
		Layers:    layers,
	}
	canonical, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: synthesise manifest: %w", s.ref, err)
	}
	s.store.mu.Lock()
	s.named = named
	s.store.mu.Unlock()
	return &Resolved{ManifestDigest: digest.FromBytes(canonical), Manifest: m, Config: img, ConfigDigest: cfgDigest}, nil
}

// digestInName returns the digest a member's name gives ("blobs/sha256/HEX"
// or Docker's "HEX.json" config), or "".
func digestInName(name string) digest.Digest {
	var d digest.Digest
	if rest, ok := strings.CutPrefix(name, "blobs/"); ok {
		d = digest.Digest(strings.Replace(rest, "/", ":", 1))
	} else if hex, ok := strings.CutSuffix(name, ".json"); ok && !strings.Contains(hex, "/") {
		d = digest.NewDigestFromEncoded(digest.SHA256, hex)
	}
	if checkDigest(d) != nil {
		return ""
	}
	return d
}

// sniffLayer tells a layer's compression from its first bytes.
func (s *dockerSource) sniffLayer(name, what string) (string, error) {
	r, _, err := s.files.open(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer r.Close()
	var head [6]byte
	n, err := io.ReadFull(r, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", newError(ErrInvalid, "%s: %w", what, err)
	}
	switch h := string(head[:n]); {
	case strings.HasPrefix(h, "\x1f\x8b"):
		return ispec.MediaTypeImageLayerGzip, nil
	case strings.HasPrefix(h, "\x28\xb5\x2f\xfd"):
		return ispec.MediaTypeImageLayerZstd, nil
	case strings.HasPrefix(h, "\xfd7zXZ\x00"):
		return "", newError(ErrUnsupported, "%s is xz-compressed; hpcrun reads uncompressed, gzip and zstd layers", what)
	case strings.HasPrefix(h, "BZh"):
		return "", newError(ErrUnsupported, "%s is bzip2-compressed; hpcrun reads uncompressed, gzip and zstd layers", what)
	}
	return ispec.MediaTypeImageLayer, nil
}

// hashMember computes the sha256 of a member whose digest nothing gives.
func (s *dockerSource) hashMember(name, what string) (digest.Digest, error) {
	r, _, err := s.files.open(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer r.Close()
	d, err := digest.SHA256.FromReader(r)
	if err != nil {
		return "", newError(ErrInvalid, "%s: %w", what, err)
	}
	return d, nil
}
