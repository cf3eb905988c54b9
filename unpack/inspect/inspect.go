// Package inspect describes an image for hpcrun inspect: what its manifest
// and config say, and where this node's cache holds it. It reads no layer
// and unpacks nothing. cmd/hpcrun-unpack, which links the image readers,
// runs it and prints the result as JSON for hpcrun to format.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/source"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// Request is the image to describe.
type Request struct {
	// Ref is what --image takes (an archive, a layout DIR[:TAG],
	// docker://REF) or a cached image's digest (6 hex digits or more,
	// with or without "sha256:"). A relative path is the working
	// directory's.
	Ref      string
	Cache    *store.Store
	Platform unpack.Platform
	Registry source.RegistryOptions
}

// Inspect describes r.Ref. A docker:// image that a pull or a run left in
// the cache is read from there, else from its registry (its manifest and
// config only).
func Inspect(ctx context.Context, r Request) (*unpack.ImageInfo, error) {
	ref := r.Ref
	if rest, ok := strings.CutPrefix(ref, unpack.RegistryPrefix); ok {
		loc, err := unpack.Locate(ref)
		if err != nil {
			return nil, err
		}
		if src, err := r.cachedBlobs(loc.Key, r.Platform.String()); err == nil {
			if info, err := r.describe(src, r.Platform); err == nil {
				return info, nil
			}
		}
		src, err := source.OpenRegistry(ctx, rest, r.Cache.BlobsDir(), r.Registry)
		if err != nil {
			return nil, err
		}
		return r.describe(src, r.Platform)
	}
	abs, err := filepath.Abs(ref)
	if err != nil {
		return nil, err
	}
	loc, err := unpack.Locate(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist) && isDigest(ref):
		return r.fromCache(ref)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: no such file or directory, and not the digest of a cached image (see hpcrun images)", ref)
	case err != nil:
		return nil, err
	case loc.Kind == unpack.Rootfs:
		return nil, fmt.Errorf("%s is a directory without index.json, not an image: hpcrun inspect reads OCI layouts, archives and registry images", ref)
	}
	src, err := source.Open(abs)
	if err != nil {
		return nil, err
	}
	return r.describe(src, r.Platform)
}

// isDigest says whether name looks like a digest rather than a path.
func isDigest(name string) bool {
	alg, hex, ok := strings.Cut(name, ":")
	if !ok {
		alg, hex = "sha256", name
	}
	return (alg == "sha256" || alg == "sha512") && len(hex) >= 6 && strings.Trim(hex, "0123456789abcdef") == ""
}

// cachedBlobs opens the image that the source keyed key resolved to, from
// the blobs a pull kept.
func (r Request) cachedBlobs(key, platform string) (source.Source, error) {
	d, err := r.Cache.Peek(key, platform)
	if err != nil {
		return nil, err
	}
	return source.OpenBlobs(r.Ref, r.Cache.BlobsDir(), digest.Digest(d))
}

// fromCache describes the cached image whose digest starts as name gives:
// from the blobs it was pulled as, or the file it was unpacked from while
// that still holds it, or else from the cache's record alone.
func (r Request) fromCache(name string) (*unpack.ImageInfo, error) {
	d, err := r.pick(name)
	if err != nil {
		return nil, err
	}
	im, err := r.Cache.Load(d)
	if err != nil {
		return nil, err
	}
	p, err := unpack.ParsePlatform(im.Platform)
	if err != nil {
		p = r.Platform
	}
	if src, err := source.OpenBlobs(r.Ref, r.Cache.BlobsDir(), digest.Digest(d)); err == nil {
		return r.describe(src, p)
	}
	if loc, err := unpack.Locate(im.Ref); err == nil && loc.Kind != unpack.Registry && loc.Kind != unpack.Rootfs {
		if k, err := r.Cache.Peek(loc.Key, p.String()); err == nil && k == d {
			if src, err := source.Open(im.Ref); err == nil {
				if info, err := r.describe(src, p); err == nil && info.Digest == d.String() {
					return info, nil
				}
			}
		}
	}
	c := im.Config
	info := &unpack.ImageInfo{
		Ref: r.Ref, Digest: d.String(), Platform: im.Platform, Partial: true,
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User,
	}
	r.addCached(info, d)
	return normalize(info), nil
}

// pick finds the one cached image whose digest starts as name gives.
func (r Request) pick(name string) (store.Digest, error) {
	alg, hex, ok := strings.Cut(name, ":")
	if !ok {
		alg, hex = "sha256", name
	}
	ents, err := os.ReadDir(filepath.Join(r.Cache.Dir, "images"))
	if err != nil {
		return "", fmt.Errorf("list cache: %w", err)
	}
	var hits []store.Digest
	for _, e := range ents {
		if d, ok := store.ParseName(e.Name()); ok && d.Algorithm() == alg && strings.HasPrefix(d.Encoded(), hex) {
			hits = append(hits, d)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return "", fmt.Errorf("%s: no such file, and no cached image has that digest (see hpcrun images)", name)
	}
	return "", fmt.Errorf("%s names %d cached images; give more of the digest", name, len(hits))
}

// describe reads src's manifest and config, and closes it.
func (r Request) describe(src source.Source, p unpack.Platform) (*unpack.ImageInfo, error) {
	defer src.Close()
	res, err := source.Describe(src, p)
	if err != nil {
		return nil, err
	}
	cfg := res.Config
	info := &unpack.ImageInfo{
		Ref: r.Ref, Digest: res.ManifestDigest.String(), ConfigDigest: res.ConfigDigest.String(),
		Platform: unpack.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}.String(),
		Created:  cfg.Created, Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd, Env: cfg.Config.Env,
		WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User, Labels: maps.Clone(cfg.Config.Labels),
	}
	for _, l := range res.Manifest.Layers {
		li := unpack.LayerInfo{Digest: l.Digest.String(), MediaType: l.MediaType, Size: l.Size}
		if uncompressed[l.MediaType] {
			li.Uncompressed = &li.Size
		}
		info.Layers = append(info.Layers, li)
		info.Size += l.Size
	}
	if lb, ok := src.(source.Labeled); ok {
		own, err := lb.Labels()
		if err != nil {
			return nil, err
		}
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		maps.Copy(info.Labels, own)
	}
	r.addCached(info, store.Digest(res.ManifestDigest))
	return normalize(info), nil
}

// uncompressed are the layer media types whose stored size is the tar's.
var uncompressed = map[string]bool{
	ispec.MediaTypeImageLayer:                      true,
	ispec.MediaTypeImageLayerNonDistributable:      true, //nolint:staticcheck // deprecated, still found
	"application/vnd.docker.image.rootfs.diff.tar": true,
}

// addCached says where the cache holds d unpacked, if it does.
func (r Request) addCached(info *unpack.ImageInfo, d store.Digest) {
	e, err := r.Cache.Stat(d)
	if err != nil {
		return
	}
	info.Cached = &unpack.CachedInfo{Dir: r.Cache.ImageDir(d), Size: e.Size, LastUse: e.LastUse, Damaged: e.Damaged}
}

// normalize makes the empty lists and labels empty rather than null.
func normalize(info *unpack.ImageInfo) *unpack.ImageInfo {
	for _, l := range []*[]string{&info.Entrypoint, &info.Cmd, &info.Env} {
		if *l == nil {
			*l = []string{}
		}
	}
	if info.Layers == nil {
		info.Layers = []unpack.LayerInfo{}
	}
	if info.Labels == nil {
		info.Labels = map[string]string{}
	}
	return info
}
