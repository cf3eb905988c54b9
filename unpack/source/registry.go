package source

// Images in registries (docker://REF).
//
// OpenRegistry reads an image from an OCI or Docker registry into a blob
// directory (an OCI layout's blobs/ALG/HEX, in the cache), and serves it
// from there like an OCI layout: the same resolution, platform choice and
// digest checks as every other source. Blobs are fetched when the
// resolution first asks for them (the manifest it picks, its config, its
// layers), so only the chosen platform's are downloaded. A blob goes to
// HEX.partial first, is checked against its digest, then renamed; an
// interrupted download resumes from where the .partial file ends (an HTTP
// Range request), and a blob already there is not fetched again.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/atomicfile"
	"github.com/hpcrun/hpcrun/unpack"
	unpackstore "github.com/hpcrun/hpcrun/unpack/store"
)

// Errors of registry sources, for errors.Is.
var (
	// ErrRegistry: the registry refused or failed a request.
	ErrRegistry = errors.New("registry error")
	// ErrAuth: the registry wants credentials we do not have, or refused
	// those we gave.
	ErrAuth = errors.New("registry authentication failed")
)

// acceptManifests is what a manifest request accepts.
var acceptManifests = []string{ispec.MediaTypeImageIndex, ispec.MediaTypeImageManifest, mediaTypeDockerList, mediaTypeDockerManifest}

// RegistryOptions tune OpenRegistry.
type RegistryOptions struct {
	// Keychain finds credentials; nil means Keychain().
	Keychain authn.Keychain
	// Transport is the HTTP transport under the registry's auth; nil means
	// http.DefaultTransport with deadlines on every socket step
	// (RegistryTransport).
	Transport http.RoundTripper
	// Log hears one line per blob fetched.
	Log func(string)
	// TLS is how the registry's certificate is checked (when Transport is
	// nil).
	TLS TLS
}

// Keychain is where credentials come from: $REGISTRY_AUTH_FILE when it is
// set, then ~/.docker/config.json (or $DOCKER_CONFIG's), then podman's
// auth.json; anonymous when none has the registry.
func Keychain() authn.Keychain {
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		return authn.NewMultiKeychain(authFileKeychain(p), authn.DefaultKeychain)
	}
	return authn.DefaultKeychain
}

// OpenRegistry opens ref (python:3.12, ghcr.io/org/img@sha256:..., without
// docker://) for reading through blobDir. It fetches the manifest (or
// index) ref names now: a tag is resolved on every open.
func OpenRegistry(ctx context.Context, ref, blobDir string, o RegistryOptions) (Source, error) {
	full, err := unpack.NormalizeRegistryRef(ref)
	if err != nil {
		return nil, newError(ErrInvalid, "%w", err)
	}
	nameOpts := []name.Option{name.StrictValidation}
	if o.TLS.Insecure {
		nameOpts = append(nameOpts, name.Insecure) // plain HTTP too
	}
	r, err := name.ParseReference(full, nameOpts...)
	if err != nil {
		return nil, newError(ErrInvalid, "image reference %q: %w", ref, err)
	}
	kc := o.Keychain
	if kc == nil {
		kc = Keychain()
	}
	auth, err := authn.Resolve(ctx, kc, r.Context())
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", r.Context().RegistryStr(), err)
	}
	base := o.Transport
	if base == nil {
		if base, err = RegistryTransport(o.TLS); err != nil {
			return nil, err
		}
	}
	rt, err := transport.NewWithContext(ctx, r.Context().Registry, auth, base, []string{r.Context().Scope(transport.PullScope)})
	if err != nil {
		return nil, registryError(r.Context().RegistryStr(), err)
	}
	log := o.Log
	if log == nil {
		log = func(string) {}
	}
	if err := os.MkdirAll(filepath.Join(blobDir, "sha256"), 0o700); err != nil {
		return nil, fmt.Errorf("blob directory: %w", err)
	}
	rf := &registryFiles{
		ctx: ctx, repo: r.Context(), client: &http.Client{Transport: rt}, dir: blobDir,
		log: log, manifests: map[string]bool{},
	}
	display := unpack.RegistryPrefix + ref
	top, err := rf.fetchManifest(r.Identifier(), display)
	if err != nil {
		return nil, err
	}
	st := &store{ref: display, file: display, files: rf, key: unpack.RegistryPrefix + full}
	return &registrySource{ociSource: &ociSource{store: st, top: []ispec.Descriptor{top}}, name: full}, nil
}

// registrySource is an image in a registry, read through a blob dir.
type registrySource struct {
	*ociSource
	name string // the full reference
}

// registryFiles serves blobs/ALG/HEX names from a directory, fetching from
// the registry what is not there.
type registryFiles struct {
	ctx    context.Context
	repo   name.Repository
	client *http.Client
	dir    string // holds ALG/HEX
	log    func(string)

	mu        sync.Mutex
	manifests map[string]bool // digests to fetch as manifests, not blobs
}

func (f *registryFiles) close() error { return nil }

// path maps "blobs/ALG/HEX" to the file in the blob dir.
func (f *registryFiles) path(name string) (string, digest.Digest, error) {
	rest, ok := strings.CutPrefix(name, "blobs/")
	alg, enc, ok2 := strings.Cut(rest, "/")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	if !ok || !ok2 || d.Validate() != nil || alg != "sha256" {
		return "", "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return filepath.Join(f.dir, alg, enc), d, nil
}

func (f *registryFiles) open(name string) (io.ReadCloser, int64, error) {
	p, d, err := f.path(name)
	if err != nil {
		return nil, 0, err
	}
	if err := f.ensure(p, d); err != nil {
		return nil, 0, err
	}
	return dirFiles(f.dir).open(filepath.Join(d.Algorithm().String(), d.Encoded()))
}

func (f *registryFiles) size(name string) (int64, error) {
	p, d, err := f.path(name)
	if err != nil {
		return 0, err
	}
	if err := f.ensure(p, d); err != nil {
		return 0, err
	}
	return dirFiles(f.dir).size(filepath.Join(d.Algorithm().String(), d.Encoded()))
}

// ensure fetches blob d to p unless it is there.
func (f *registryFiles) ensure(p string, d digest.Digest) error {
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	f.mu.Lock()
	isManifest := f.manifests[d.String()]
	f.mu.Unlock()
	if isManifest {
		_, err := f.fetchManifest(d.String(), d.String())
		return err
	}
	return f.fetchBlob(p, d)
}

// fetchManifest GETs the manifest or index ref (a tag or a digest) names,
// stores it under its digest and learns which of the digests it names are
// manifests. It returns the descriptor of what it got.
func (f *registryFiles) fetchManifest(ref, what string) (ispec.Descriptor, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.url("manifests", ref), nil)
	if err != nil {
		return ispec.Descriptor{}, err
	}
	req.Header.Set("Accept", strings.Join(acceptManifests, ", "))
	resp, err := f.client.Do(req)
	if err != nil {
		return ispec.Descriptor{}, registryError(f.repo.RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := f.check(resp, what, http.StatusOK); err != nil {
		return ispec.Descriptor{}, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONSize+1))
	if err != nil {
		return ispec.Descriptor{}, registryError(f.repo.RegistryStr(), err)
	}
	if len(data) > maxJSONSize {
		return ispec.Descriptor{}, newError(ErrInvalid, "the manifest of %s is more than the %d MiB hpcrun reads", what, maxJSONSize>>20)
	}
	d := digest.FromBytes(data)
	if want, err := digest.Parse(ref); err == nil && want != d {
		return ispec.Descriptor{}, newError(ErrDigest, "manifest %s of %s: the registry sent content whose digest is %s", shortDigest(want), f.repo, shortDigest(d))
	}
	var m struct {
		MediaType string             `json:"mediaType"`
		Manifests []ispec.Descriptor `json:"manifests"`
		Config    *ispec.Descriptor  `json:"config"`
		Layers    []ispec.Descriptor `json:"layers"`
		Schema    int                `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return ispec.Descriptor{}, newError(ErrInvalid, "the manifest of %s: invalid JSON: %w", what, err)
	}
	if m.Schema == 1 {
		return ispec.Descriptor{}, newError(ErrUnsupported, "%s is a Docker schema 1 image, which registries stopped serving in 2019; push it again with a current docker or skopeo", what)
	}
	mt := resp.Header.Get("Content-Type")
	if m.MediaType != "" {
		mt = m.MediaType
	}
	if mt == "" || mt == "application/json" {
		mt = ispec.MediaTypeImageManifest
		if m.Manifests != nil {
			mt = ispec.MediaTypeImageIndex
		}
	}
	f.mu.Lock()
	for _, c := range m.Manifests {
		f.manifests[c.Digest.String()] = true
	}
	f.mu.Unlock()
	p := filepath.Join(f.dir, d.Algorithm().String(), d.Encoded())
	if err := atomicfile.Write(p, data, 0o600); err != nil {
		return ispec.Descriptor{}, err
	}
	return ispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}, nil
}

// fetchBlob downloads blob d to p, resuming a .partial file that an
// interrupted download left, under a lock that makes a concurrent pull of
// the same blob wait rather than write beside us.
func (f *registryFiles) fetchBlob(p string, d digest.Digest) error {
	partial := p + ".partial"
	pf, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("blob %s: %w", shortDigest(d), err)
	}
	defer pf.Close()
	if err := unix.Flock(int(pf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("blob %s: lock: %w", shortDigest(d), err)
	}
	if _, err := os.Lstat(p); err == nil {
		return nil // another pull finished it while we waited
	}
	// The bytes already there count towards the digest.
	h := sha256.New()
	have, err := io.Copy(h, pf)
	if err != nil {
		return fmt.Errorf("blob %s: %w", shortDigest(d), err)
	}
	restart := func() error {
		if err := pf.Truncate(0); err != nil {
			return fmt.Errorf("blob %s: %w", shortDigest(d), err)
		}
		if _, err := pf.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h.Reset()
		have = 0
		return nil
	}
	var size int64 = -1
	if have > 0 {
		// A closed range, which every registry understands, needs the size.
		if size, err = f.blobSize(d); err != nil {
			return err
		}
		if have > size {
			if err := restart(); err != nil {
				return err
			}
		}
	}
	if have == 0 || have < size {
		req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.url("blobs", d.String()), nil)
		if err != nil {
			return err
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", have, size-1))
		}
		resp, err := f.client.Do(req)
		if err != nil {
			return registryError(f.repo.RegistryStr(), err)
		}
		defer resp.Body.Close()
		if have > 0 && resp.StatusCode == http.StatusOK {
			// The registry ignores ranges: start over.
			if err := restart(); err != nil {
				return err
			}
		}
		want := http.StatusOK
		if have > 0 {
			want = http.StatusPartialContent
		}
		if err := f.check(resp, "blob "+shortDigest(d)+" of "+f.repo.String(), want); err != nil {
			return err
		}
		if have > 0 {
			f.log(fmt.Sprintf("resuming blob %s at %s of %s", shortDigest(d), unpackstore.Bytes(have), unpackstore.Bytes(size)))
		} else if resp.ContentLength > 0 {
			f.log(fmt.Sprintf("pulling blob %s (%s)", shortDigest(d), unpackstore.Bytes(resp.ContentLength)))
		}
		if _, err := io.Copy(io.MultiWriter(pf, h), resp.Body); err != nil {
			if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
				return fmt.Errorf("blob %s: %w", shortDigest(d), err)
			}
			return registryError(f.repo.RegistryStr(), fmt.Errorf("blob %s: %w (run the pull again to resume)", shortDigest(d), err))
		}
	}
	if got := digest.NewDigest(digest.SHA256, h); got != d {
		// Nothing of it can be trusted: the next pull starts over.
		os.Remove(partial)
		return newError(ErrDigest, "blob %s of %s: the registry sent content whose digest is %s", shortDigest(d), f.repo, shortDigest(got))
	}
	if err := pf.Sync(); err != nil {
		return fmt.Errorf("blob %s: %w", shortDigest(d), err)
	}
	return os.Rename(partial, p)
}

// blobSize asks the registry for a blob's size (HEAD).
func (f *registryFiles) blobSize(d digest.Digest) (int64, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodHead, f.url("blobs", d.String()), nil)
	if err != nil {
		return 0, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, registryError(f.repo.RegistryStr(), err)
	}
	resp.Body.Close()
	if err := f.check(resp, "blob "+shortDigest(d)+" of "+f.repo.String(), http.StatusOK); err != nil {
		return 0, err
	}
	if resp.ContentLength < 0 {
		return 0, newError(ErrRegistry, "blob %s of %s: the registry gives no size", shortDigest(d), f.repo)
	}
	return resp.ContentLength, nil
}

func (f *registryFiles) url(kind, ref string) string {
	return fmt.Sprintf("%s://%s/v2/%s/%s/%s", f.repo.Scheme(), f.repo.RegistryStr(), f.repo.RepositoryStr(), kind, ref)
}

// check turns a response other than want into a one-line error.
func (f *registryFiles) check(resp *http.Response, what string, want int) error {
	if resp.StatusCode == want {
		return nil
	}
	err := transport.CheckError(resp, want)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return newError(ErrMissingBlob, "%s: not found in %s (HTTP 404); check the name and tag", what, f.repo.RegistryStr())
	case http.StatusUnauthorized, http.StatusForbidden:
		return newError(ErrAuth, "%s: %s refused access (HTTP %d); log in with `hpcrun login %s`, or check the name", what, f.repo.RegistryStr(), resp.StatusCode, f.repo.RegistryStr())
	}
	return newError(ErrRegistry, "%s: %v", what, err)
}

// registryError makes a transport or auth error one line, tagged.
func registryError(reg string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return newError(ErrAuth, "%s refused access (HTTP %d); log in with `hpcrun login %s`", reg, te.StatusCode, reg)
	}
	if u := unreachable(reg, err); u != nil {
		return u
	}
	if u := untrusted(reg, err); u != nil {
		return u
	}
	return newError(ErrRegistry, "registry %s: %w", reg, oneLineError{err})
}

// authFileKeychain reads credentials from a containers-auth.json or
// docker config.json file ({"auths": {"REGISTRY": {"auth": ...}}}).
type authFileKeychain string

func (p authFileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	data, err := os.ReadFile(string(p))
	if errors.Is(err, fs.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("REGISTRY_AUTH_FILE: %w", err)
	}
	var f struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("REGISTRY_AUTH_FILE %s: invalid JSON: %w", p, err)
	}
	reg := r.RegistryStr()
	names := []string{reg}
	if reg == name.DefaultRegistry || reg == "docker.io" {
		names = append(names, "docker.io", name.DefaultRegistry, authn.DefaultAuthKey)
	}
	for key, ac := range f.Auths {
		host := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		for _, n := range names {
			if key == n || host == n {
				return authn.FromConfig(ac), nil
			}
		}
	}
	return authn.Anonymous, nil
}

// WriteArchive writes the image src resolved to (res, from src.Resolve)
// as an OCI archive at out, the form `skopeo copy ... oci-archive:` writes
// and --image reads: oci-layout, index.json naming the image, and its
// manifest, config and layers. It writes a temporary file beside out and
// renames it, so out is whole or untouched. src must be a registry source.
func WriteArchive(src Source, res *Resolved, out string) (err error) {
	rs, ok := src.(*registrySource)
	if !ok {
		return fmt.Errorf("%s: only an image pulled from a registry can be written as an archive", src.Ref())
	}
	mt := res.Manifest.MediaType
	if mt == "" {
		mt = ispec.MediaTypeImageManifest
	}
	mfile := "blobs/" + res.ManifestDigest.Algorithm().String() + "/" + res.ManifestDigest.Encoded()
	msize, err := rs.files.size(mfile)
	if err != nil {
		return err
	}
	top := ispec.Descriptor{MediaType: mt, Digest: res.ManifestDigest, Size: msize,
		Annotations: map[string]string{ispec.AnnotationRefName: rs.name, annotationContainerdName: rs.name}}
	if p := res.Config.Platform; p.OS != "" {
		top.Platform = &ispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	}
	index, err := json.Marshal(ispec.Index{Versioned: ispecVersioned(), MediaType: ispec.MediaTypeImageIndex, Manifests: []ispec.Descriptor{top}})
	if err != nil {
		return err
	}
	layout, _ := json.Marshal(ispec.ImageLayout{Version: ispec.ImageLayoutVersion})

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	tw := tarWriter(tmp)
	if err := tw.file(ispec.ImageLayoutFile, layout); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tw.file("index.json", index); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	blobs := append([]ispec.Descriptor{top, {Digest: res.ConfigDigest, Size: res.Manifest.Config.Size}}, res.Manifest.Layers...)
	for _, d := range blobs {
		name := "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
		r, err := rs.Open(d)
		if err != nil {
			return err
		}
		err = tw.copy(name, d.Size, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
	}
	if err := tw.close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
