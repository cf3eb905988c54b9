package source

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hpcrun/hpcrun/internal/testregistry"
	"github.com/hpcrun/hpcrun/unpack"
)

// testRegistry is a registry served on 127.0.0.1 by the test process.
type testRegistry struct {
	*testregistry.Registry
	host string
	mu   sync.Mutex // guards what hooks record
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := testregistry.Start(t)
	return &testRegistry{Registry: r, host: r.Host}
}

func (tr *testRegistry) setHook(h testregistry.Hook) { tr.SetHook(h) }

// push writes a random image of layers layers to repo:tag and returns it.
func (tr *testRegistry) push(t *testing.T, repoTag string, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(300<<10, layers)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// readAllLayers resolves src and reads every layer to its end (which
// checks its digest), returning the resolution.
func readAllLayers(t *testing.T, src Source, p Platform) (*Resolved, error) {
	t.Helper()
	res, err := src.Resolve(p)
	if err != nil {
		return nil, err
	}
	for _, l := range res.Manifest.Layers {
		r, err := src.Open(l)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

var anonymous = authn.NewMultiKeychain() // no credentials at all

func TestRegistryPull(t *testing.T) {
	tr := newTestRegistry(t)
	img := tr.push(t, "test/img:v1", 2)
	want, _ := img.Digest()
	blobs := t.TempDir()
	ctx := context.Background()

	for _, ref := range []string{tr.host + "/test/img:v1", tr.host + "/test/img@" + want.String()} {
		src, err := OpenRegistry(ctx, ref, blobs, RegistryOptions{Keychain: anonymous})
		if err != nil {
			t.Fatal(err)
		}
		res, err := readAllLayers(t, src, unpack.HostPlatform())
		if err != nil {
			t.Fatal(err)
		}
		if res.ManifestDigest.String() != want.String() {
			t.Errorf("%s: manifest %s, pushed %s", ref, res.ManifestDigest, want)
		}
		if k := src.Key(); !strings.HasPrefix(k, "docker://"+tr.host+"/test/img") {
			t.Errorf("key %q", k)
		}
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		if _, err := os.Stat(filepath.Join(blobs, "sha256", d.Hex)); err != nil {
			t.Errorf("layer %s is not in the blob dir: %v", d, err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(blobs, "sha256", "*.partial")); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}

	// A second pull fetches no blob again.
	var blobGets atomic.Int32
	tr.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			blobGets.Add(1)
		}
		next.ServeHTTP(w, r)
	})
	src, err := OpenRegistry(ctx, tr.host+"/test/img:v1", blobs, RegistryOptions{Keychain: anonymous})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAllLayers(t, src, unpack.HostPlatform()); err != nil {
		t.Fatal(err)
	}
	if n := blobGets.Load(); n != 0 {
		t.Errorf("a second pull fetched %d blobs again", n)
	}
}

// Of a multi-platform index only the platform's manifest and blobs are
// fetched.
func TestRegistryPlatform(t *testing.T) {
	tr := newTestRegistry(t)
	amd, _ := random.Image(100<<10, 1)
	arm, _ := random.Image(100<<10, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref, _ := name.ParseReference(tr.host + "/test/multi:v1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	blobs := t.TempDir()
	src, err := OpenRegistry(context.Background(), tr.host+"/test/multi:v1", blobs, RegistryOptions{Keychain: anonymous})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := unpack.ParsePlatform("linux/arm64")
	res, err := readAllLayers(t, src, p)
	if err != nil {
		t.Fatal(err)
	}
	armDigest, _ := arm.Digest()
	if res.ManifestDigest.String() != armDigest.String() {
		t.Errorf("picked %s, want the arm64 manifest %s", res.ManifestDigest, armDigest)
	}
	amdLayers, _ := amd.Layers()
	d, _ := amdLayers[0].Digest()
	if _, err := os.Stat(filepath.Join(blobs, "sha256", d.Hex)); err == nil {
		t.Errorf("the amd64 layer was fetched too")
	}
	// And -o writes an archive that --image reads, of that platform.
	out := filepath.Join(t.TempDir(), "multi.tar")
	if err := WriteArchive(src, res, out); err != nil {
		t.Fatal(err)
	}
	a, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ares, err := readAllLayers(t, a, p)
	if err != nil {
		t.Fatal(err)
	}
	if ares.ManifestDigest != res.ManifestDigest {
		t.Errorf("the archive holds %s, want %s", ares.ManifestDigest, res.ManifestDigest)
	}
	if _, err := Open(out + ":v1"); err != nil {
		t.Errorf("the archive's tag: %v", err)
	}
}

func TestRegistryErrors(t *testing.T) {
	tr := newTestRegistry(t)
	img := tr.push(t, "test/img:v1", 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	ctx := context.Background()

	t.Run("not found", func(t *testing.T) {
		_, err := OpenRegistry(ctx, tr.host+"/test/nope:v1", t.TempDir(), RegistryOptions{Keychain: anonymous})
		if !errors.Is(err, ErrMissingBlob) || !strings.Contains(err.Error(), "404") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("bad reference", func(t *testing.T) {
		_, err := OpenRegistry(ctx, "Not/Valid:tag!", t.TempDir(), RegistryOptions{Keychain: anonymous})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("digest mismatch", func(t *testing.T) {
		blobs := t.TempDir()
		tr.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) || r.Method != http.MethodGet {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			b[len(b)/2] ^= 0xff
			w.WriteHeader(rec.Code)
			w.Write(b)
		})
		defer tr.setHook(nil)
		src, err := OpenRegistry(ctx, tr.host+"/test/img:v1", blobs, RegistryOptions{Keychain: anonymous})
		if err == nil {
			_, err = readAllLayers(t, src, unpack.HostPlatform())
		}
		if !errors.Is(err, ErrDigest) {
			t.Fatalf("err = %v, want a digest mismatch", err)
		}
		if m, _ := filepath.Glob(filepath.Join(blobs, "sha256", "*")); len(m) > 0 && strings.Contains(strings.Join(m, " "), ld.Hex) {
			t.Errorf("the bad blob stayed: %v", m)
		}
		tr.setHook(nil)
		src, err = OpenRegistry(ctx, tr.host+"/test/img:v1", blobs, RegistryOptions{Keychain: anonymous})
		if err == nil {
			_, err = readAllLayers(t, src, unpack.HostPlatform())
		}
		if err != nil {
			t.Errorf("the pull after a bad one: %v", err)
		}
	})
	t.Run("cut halfway, resumed", func(t *testing.T) {
		blobs := t.TempDir()
		var ranges []string
		tr.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) || r.Method != http.MethodGet {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, httptestStripRange(r))
			b := rec.Body.Bytes()
			tr.mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			n := len(ranges)
			tr.mu.Unlock()
			if n == 1 {
				// Half of it, then the connection drops.
				w.Header().Set("Content-Length", itoa(len(b)))
				w.WriteHeader(http.StatusOK)
				w.Write(b[:len(b)/2])
				panic(http.ErrAbortHandler)
			}
			var from int
			if rg := r.Header.Get("Range"); strings.HasPrefix(rg, "bytes=") {
				from = atoi(strings.Split(strings.TrimPrefix(rg, "bytes="), "-")[0])
				w.Header().Set("Content-Range", "bytes "+itoa(from)+"-"+itoa(len(b)-1)+"/"+itoa(len(b)))
				w.Header().Set("Content-Length", itoa(len(b)-from))
				w.WriteHeader(http.StatusPartialContent)
			} else {
				w.WriteHeader(http.StatusOK)
			}
			w.Write(b[from:])
		})
		defer tr.setHook(nil)
		src, err := OpenRegistry(ctx, tr.host+"/test/img:v1", blobs, RegistryOptions{Keychain: anonymous})
		if err == nil {
			_, err = readAllLayers(t, src, unpack.HostPlatform())
		}
		if err == nil || !errors.Is(err, ErrRegistry) {
			t.Fatalf("the cut pull: err = %v", err)
		}
		partial := filepath.Join(blobs, "sha256", ld.Hex+".partial")
		fi, serr := os.Stat(partial)
		if serr != nil || fi.Size() == 0 {
			t.Fatalf("no partial blob after the cut: %v", serr)
		}
		var lines []string
		src, err = OpenRegistry(ctx, tr.host+"/test/img:v1", blobs, RegistryOptions{Keychain: anonymous, Log: func(s string) { lines = append(lines, s) }})
		if err == nil {
			_, err = readAllLayers(t, src, unpack.HostPlatform())
		}
		if err != nil {
			t.Fatalf("the resumed pull: %v", err)
		}
		if len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes="+itoa(int(fi.Size()))+"-") {
			t.Errorf("requests' ranges %q, want the second from byte %d", ranges, fi.Size())
		}
		if !strings.Contains(strings.Join(lines, "\n"), "resuming blob") {
			t.Errorf("log %q", lines)
		}
	})
}

func httptestStripRange(r *http.Request) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Header.Del("Range")
	return r2
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestRegistryAuth(t *testing.T) {
	tr := newTestRegistry(t)
	tr.push(t, "test/img:v1", 1)
	tr.setHook(testregistry.BasicAuth("alice", "s3cret"))
	ctx := context.Background()
	_, err := OpenRegistry(ctx, tr.host+"/test/img:v1", t.TempDir(), RegistryOptions{Keychain: anonymous})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "hpcrun login") {
		t.Errorf("no credentials: err = %v", err)
	}
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth.json")
	write := func(user, pass string) {
		b := `{"auths": {"` + tr.host + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}}}`
		if err := os.WriteFile(authFile, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice", "wrong")
	_, err = OpenRegistry(ctx, tr.host+"/test/img:v1", t.TempDir(), RegistryOptions{Keychain: authFileKeychain(authFile)})
	if !errors.Is(err, ErrAuth) {
		t.Errorf("wrong password: err = %v", err)
	}
	write("alice", "s3cret")
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	t.Setenv("HOME", dir) // no ~/.docker/config.json
	src, err := OpenRegistry(ctx, tr.host+"/test/img:v1", t.TempDir(), RegistryOptions{})
	if err == nil {
		_, err = readAllLayers(t, src, unpack.HostPlatform())
	}
	if err != nil {
		t.Errorf("with REGISTRY_AUTH_FILE: %v", err)
	}
}

// hpcrun's own spelling of registry references (what the warm start keys
// the cache with) agrees with go-containerregistry's (what a pull keys it
// with).
func TestNormalizeMatchesGGCR(t *testing.T) {
	for _, ref := range []string{
		"python", "python:3.12", "library/python:3.12", "docker.io/python", "index.docker.io/library/python:3",
		"ghcr.io/org/img:1.0", "ghcr.io/org/team/img", "localhost:5000/img", "127.0.0.1:5000/a/b:c",
		"quay.io/x/y@sha256:" + strings.Repeat("a", 64), "user/repo:tag", "registry.example.org/x",
	} {
		r, err := name.ParseReference(ref, name.WeakValidation)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		got, err := unpack.NormalizeRegistryRef(ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if got != r.Name() {
			t.Errorf("%s: hpcrun says %q, go-containerregistry %q", ref, got, r.Name())
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a:", "a@sha256", "a//b", "-x:1", "a:.tag"} {
		if _, err := unpack.NormalizeRegistryRef(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
