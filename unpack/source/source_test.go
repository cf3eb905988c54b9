package source

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hpcrun/hpcrun/unpack"
)

// checkSourceErr fails unless err wraps sentinel (when given), is one line and
// says each of want.
func checkSourceErr(t testing.TB, err, sentinel error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v", sentinel)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
}

// readImage opens ref, resolves it for p and reads every layer to EOF.
func readImage(ref string, p Platform) (*Resolved, [][]byte, error) {
	src, err := Open(ref)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	res, err := src.Resolve(p)
	if err != nil {
		return nil, nil, err
	}
	var layers [][]byte
	for _, l := range res.Manifest.Layers {
		data, err := readSourceBlob(src, l)
		if err != nil {
			return nil, nil, err
		}
		layers = append(layers, data)
	}
	return res, layers, nil
}

func readSourceBlob(src Source, d ispec.Descriptor) ([]byte, error) {
	r, err := src.Open(d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func mustOpen(t testing.TB, ref string) Source {
	t.Helper()
	src, err := Open(ref)
	if err != nil {
		t.Fatalf("Open(%q): %v", ref, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func mustResolve(t testing.TB, ref string, p Platform) *Resolved {
	t.Helper()
	res, err := mustOpen(t, ref).Resolve(p)
	if err != nil {
		t.Fatalf("Resolve(%s) of %s: %v", p, ref, err)
	}
	return res
}

func imageEnv(res *Resolved) string { return strings.Join(res.Config.Config.Env, " ") }

func TestRoundTrip(t *testing.T) {
	host := unpack.HostPlatform()
	l1 := layerTar(t, "etc/hello", "hello")
	l2 := gzipped(t, layerTar(t, "bin/sh", "#!"))
	for _, f := range sourceFormats {
		t.Run(f.name, func(t *testing.T) {
			b := newBuilder(t)
			m := b.image(host, l1, l2)
			ref := f.make(t, b, taggedImage{m, "latest"})
			for _, r := range []string{ref, ref + ":latest"} {
				src := mustOpen(t, r)
				if src.Ref() != r {
					t.Errorf("Ref() = %q, want %q", src.Ref(), r)
				}
				res, layers, err := readImage(r, host)
				if err != nil {
					t.Fatal(err)
				}
				if f.name != "docker-classic" && res.ManifestDigest != m.Digest {
					t.Errorf("manifest %s, want %s", res.ManifestDigest, m.Digest)
				}
				if got, want := imageEnv(res), "PLATFORM="+host.String(); got != want {
					t.Errorf("config Env %q, want %q", got, want)
				}
				if !slices.EqualFunc(layers, [][]byte{l1, l2}, bytes.Equal) {
					t.Errorf("layers differ from what was written")
				}
				types := []string{res.Manifest.Layers[0].MediaType, res.Manifest.Layers[1].MediaType}
				if !slices.Equal(types, []string{ispec.MediaTypeImageLayer, ispec.MediaTypeImageLayerGzip}) {
					t.Errorf("layer media types %q", types)
				}
				cfg, err := readSourceBlob(src, res.Manifest.Config)
				if err != nil || digest.FromBytes(cfg) != res.ConfigDigest {
					t.Errorf("config blob: %v, digest %s, want %s", err, digest.FromBytes(cfg), res.ConfigDigest)
				}
			}
		})
	}
}

// TestDockerClassic covers what only the classic docker form has: the
// synthesised manifest, symlinked duplicate layers and RepoTags.
func TestDockerClassic(t *testing.T) {
	host := unpack.HostPlatform()
	l1 := layerTar(t, "a", "1")
	l2 := gzipped(t, layerTar(t, "b", "2"))

	b := newBuilder(t)
	m := b.image(host, l1, l2, l1) // l1 twice: docker writes a symlink
	files := b.dockerClassic(dockerImage{manifest: m, tags: []string{"example/img:1", "example/img:latest"}})
	one := writeTar(t, filepath.Join(t.TempDir(), "one.tar"), files, tarOptions{})
	two := writeTar(t, filepath.Join(t.TempDir(), "two.tar"), files, tarOptions{prefix: "./", dirs: true})

	res, layers, err := readImage(one, host)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(layers, [][]byte{l1, l2, l1}, bytes.Equal) {
		t.Error("layers differ from what was written")
	}
	want := b.manifestOf(m)
	for i, l := range res.Manifest.Layers {
		if l.Digest != want.Layers[i].Digest || l.Size != want.Layers[i].Size || l.MediaType != want.Layers[i].MediaType {
			t.Errorf("layer %d: %+v, want %+v", i+1, l, want.Layers[i])
		}
	}
	if res.ConfigDigest != want.Config.Digest || res.Manifest.Config.Digest != want.Config.Digest {
		t.Errorf("config %s, want %s", res.ConfigDigest, want.Config.Digest)
	}
	if res.Manifest.MediaType != ispec.MediaTypeImageManifest || res.Manifest.SchemaVersion != 2 {
		t.Errorf("synthesised manifest %q version %d", res.Manifest.MediaType, res.Manifest.SchemaVersion)
	}
	if got := digest.FromBytes(mustJSON(t, res.Manifest)); got != res.ManifestDigest {
		t.Errorf("ManifestDigest %s is not the digest of the manifest's JSON, %s", res.ManifestDigest, got)
	}

	// The same contents give the same key, whatever the tag or the names.
	for _, ref := range []string{two, one + ":1", one + ":latest", one + ":example/img:1", two + ":img:latest"} {
		if got := mustResolve(t, ref, host).ManifestDigest; got != res.ManifestDigest {
			t.Errorf("%s: manifest digest %s, want %s as for %s", ref, got, res.ManifestDigest, one)
		}
	}
	// Different contents, a different key.
	b2 := newBuilder(t)
	other := writeTar(t, filepath.Join(t.TempDir(), "other.tar"),
		b2.dockerClassic(dockerImage{manifest: b2.image(host, l1, l1)}), tarOptions{})
	if mustResolve(t, other, host).ManifestDigest == res.ManifestDigest {
		t.Error("different archives give one manifest digest")
	}

	// Open works on a fresh source without Resolve first.
	src := mustOpen(t, two)
	for i, l := range res.Manifest.Layers {
		data, err := readSourceBlob(src, l)
		if err != nil || !bytes.Equal(data, [][]byte{l1, l2, l1}[i]) {
			t.Errorf("layer %d on a fresh source: %v", i+1, err)
		}
	}

	// The platform does not matter: a classic archive has one image.
	if _, err := mustOpen(t, one).Resolve(Platform{OS: "linux", Architecture: "s390x"}); err != nil {
		t.Errorf("Resolve for another platform: %v", err)
	}

	t.Run("config name mismatch", func(t *testing.T) {
		files := slices.Clone(files)
		for i, f := range files {
			if strings.HasSuffix(f.name, ".json") && !strings.Contains(f.name, "/") && f.name != "manifest.json" {
				files[i].data = append(bytes.Clone(f.data), ' ')
			}
		}
		ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), files, tarOptions{})
		_, err := mustOpen(t, ref).Resolve(host)
		checkSourceErr(t, err, ErrDigest, "config", ref, "digest mismatch")
	})
	t.Run("diff_ids of another count", func(t *testing.T) {
		// Without usable diff IDs the uncompressed layers are hashed.
		b := newBuilder(t)
		img := testConfig(host)
		m := b.manifest(host, b.json(ispec.MediaTypeImageConfig, img), l1, l2)
		ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.dockerClassic(dockerImage{manifest: m}), tarOptions{})
		if _, _, err := readImage(ref, host); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTags(t *testing.T) {
	host := unpack.HostPlatform()
	for _, f := range sourceFormats {
		t.Run(f.name, func(t *testing.T) {
			b := newBuilder(t)
			one := b.image(host, layerTar(t, "one", "1"))
			two := b.image(host, layerTar(t, "two", "2"))
			ref := f.make(t, b, taggedImage{one, "one"}, taggedImage{two, "two"})

			_, err := Open(ref)
			checkSourceErr(t, err, ErrNoTag, ref, "images; name one as "+ref+":TAG", "one", "two")

			for tag, want := range map[string]string{"one": "1", "two": "2"} {
				_, layers, err := readImage(ref+":"+tag, host)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(layers[0], []byte(want)) {
					t.Errorf("%s:%s gave the wrong image", ref, tag)
				}
			}
			if f.docker {
				if _, _, err := readImage(ref+":example/img:two", host); err != nil {
					t.Errorf("whole name: %v", err)
				}
			}
			_, err = Open(ref + ":three")
			checkSourceErr(t, err, ErrNoTag, `no tag "three" in `+ref, "one", "two")
			_, err = Open(ref + ":")
			checkSourceErr(t, err, ErrNoTag, "empty tag")

			// One image under two tags is not ambiguous.
			b = newBuilder(t)
			m := b.image(host, layerTar(t, "x", "x"))
			ref = f.make(t, b, taggedImage{m, "a"}, taggedImage{m, "b"})
			if _, _, err := readImage(ref, host); err != nil {
				t.Errorf("one image under two tags: %v", err)
			}
		})
	}
	t.Run("docker-classic untagged", func(t *testing.T) {
		b := newBuilder(t)
		one := b.image(host, layerTar(t, "one", "1"))
		two := b.image(host, layerTar(t, "two", "2"))
		ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"),
			b.dockerClassic(dockerImage{manifest: one}, dockerImage{manifest: two}), tarOptions{})
		_, err := Open(ref)
		checkSourceErr(t, err, ErrNoTag, "2 untagged images")
	})
	t.Run("one tag for several platforms", func(t *testing.T) {
		b := newBuilder(t)
		amd := b.image(Platform{OS: "linux", Architecture: "amd64", Variant: ""}, layerTar(t, "amd", "1"))
		arm := b.image(Platform{OS: "linux", Architecture: "arm64", Variant: ""}, layerTar(t, "arm", "2"))
		ref := writeDir(t, t.TempDir(), b.layout(tagged(amd, "v1"), tagged(arm, "v1")))
		for _, r := range []string{ref, ref + ":v1"} {
			if got := imageEnv(mustResolve(t, r, Platform{OS: "linux", Architecture: "arm64", Variant: ""})); got != "PLATFORM=linux/arm64" {
				t.Errorf("%s: got %q", r, got)
			}
		}
	})
	t.Run("path with a colon", func(t *testing.T) {
		b := newBuilder(t)
		m := b.image(host, layerTar(t, "x", "x"))
		dir := filepath.Join(t.TempDir(), "img:v1")
		ref := writeTar(t, dir, b.layout(tagged(m, "latest")), tarOptions{})
		if _, _, err := readImage(ref, host); err != nil {
			t.Errorf("a path with a colon that exists: %v", err)
		}
		if _, _, err := readImage(ref+":latest", host); err != nil {
			t.Errorf("and a tag after it: %v", err)
		}
	})
}

// platformIndex builds an OCI archive whose index offers plats.
func platformIndex(t *testing.T, plats ...Platform) string {
	b := newBuilder(t)
	var entries []ispec.Descriptor
	for _, p := range plats {
		entries = append(entries, b.image(p, layerTar(t, "p", p.String())))
	}
	return writeTar(t, filepath.Join(t.TempDir(), "multi.tar"), b.layout(b.index(entries...)), tarOptions{})
}

func TestPlatforms(t *testing.T) {
	plats := []Platform{
		{OS: "linux", Architecture: "amd64", Variant: ""}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "linux", Architecture: "ppc64le", Variant: ""},
		{OS: "linux", Architecture: "arm", Variant: "v7"}, {OS: "linux", Architecture: "arm", Variant: "v6"},
	}
	ref := platformIndex(t, plats...)
	tests := []struct {
		ask  string
		want string // the image's platform, or the error's text
	}{
		{"linux/amd64", "linux/amd64"},
		{"amd64", "linux/amd64"},
		{"x86_64", "linux/amd64"},
		{"linux/arm64", "linux/arm64/v8"},
		{"linux/arm64/v8", "linux/arm64/v8"},
		{"linux/aarch64", "linux/arm64/v8"},
		{"linux/ppc64le", "linux/ppc64le"},
		{"linux/arm/v7", "linux/arm/v7"},
		{"linux/arm", "linux/arm/v7"},
		{"linux/arm/v6", "linux/arm/v6"},
		{"linux/arm/v5", "no linux/arm/v5 image in " + ref + "; it offers linux/amd64, linux/arm64/v8, linux/ppc64le, linux/arm/v7, linux/arm/v6"},
		{"linux/s390x", "no linux/s390x image in " + ref + "; it offers linux/amd64, linux/arm64/v8, linux/ppc64le, linux/arm/v7, linux/arm/v6"},
		{"windows/amd64", "no windows/amd64 image"},
	}
	for _, tt := range tests {
		t.Run(tt.ask, func(t *testing.T) {
			p, err := unpack.ParsePlatform(tt.ask)
			if err != nil {
				t.Fatal(err)
			}
			res, err := mustOpen(t, ref).Resolve(p)
			if strings.HasPrefix(tt.want, "no ") {
				checkSourceErr(t, err, ErrNoPlatform, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := imageEnv(res); got != "PLATFORM="+tt.want {
				t.Errorf("got %q, want %s", got, tt.want)
			}
		})
	}
	t.Run("host", func(t *testing.T) {
		host := unpack.HostPlatform()
		others := []Platform{{OS: "linux", Architecture: "s390x", Variant: ""}, {OS: "linux", Architecture: "riscv64", Variant: ""}}
		if host.Architecture == "s390x" {
			others[0].Architecture = "mips64le"
		}
		ref := platformIndex(t, others[0], host, others[1])
		if got := imageEnv(mustResolve(t, ref, host)); got != "PLATFORM="+host.String() {
			t.Errorf("host %s got %q", host, got)
		}
	})
	t.Run("arm v7 runs v6", func(t *testing.T) {
		ref := platformIndex(t, Platform{OS: "linux", Architecture: "arm", Variant: "v5"}, Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, Platform{OS: "linux", Architecture: "arm64", Variant: ""})
		if got := imageEnv(mustResolve(t, ref, Platform{OS: "linux", Architecture: "arm", Variant: "v7"})); got != "PLATFORM=linux/arm/v6" {
			t.Errorf("got %q, want the closest older variant", got)
		}
	})
	t.Run("docker manifest list", func(t *testing.T) {
		b := newBuilder(t)
		var entries []ispec.Descriptor
		for _, p := range []Platform{{OS: "linux", Architecture: "amd64", Variant: ""}, {OS: "linux", Architecture: "arm64", Variant: ""}} {
			l := gzipped(t, layerTar(t, "p", p.String()))
			cfg := b.json(mediaTypeDockerConfig, testConfig(p, l))
			m := ispec.Manifest{
				Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mediaTypeDockerManifest, Config: cfg,
				Layers: []ispec.Descriptor{b.blob(mediaTypeDockerLayerGzip, l)},
			}
			d := b.json(mediaTypeDockerManifest, m)
			d.Platform = &ispec.Platform{OS: p.OS, Architecture: p.Architecture}
			entries = append(entries, d)
		}
		list := b.json(mediaTypeDockerList, ispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mediaTypeDockerList, Manifests: entries})
		ref := writeDir(t, t.TempDir(), b.layout(list))
		res, _, err := readImage(ref, Platform{OS: "linux", Architecture: "arm64", Variant: ""})
		if err != nil {
			t.Fatal(err)
		}
		if imageEnv(res) != "PLATFORM=linux/arm64" || res.Manifest.Layers[0].MediaType != mediaTypeDockerLayerGzip {
			t.Errorf("got %q with layer type %q", imageEnv(res), res.Manifest.Layers[0].MediaType)
		}
	})
}

// TestPlatformAbsent covers index entries that give no platform.
func TestPlatformAbsent(t *testing.T) {
	amd, arm := Platform{OS: "linux", Architecture: "amd64", Variant: ""}, Platform{OS: "linux", Architecture: "arm64", Variant: ""}
	t.Run("single entry is taken", func(t *testing.T) {
		b := newBuilder(t)
		m := unplatformed(b.image(Platform{OS: "linux", Architecture: "s390x", Variant: ""}, layerTar(t, "x", "x")))
		ref := writeDir(t, t.TempDir(), b.layout(b.index(m)))
		if got := imageEnv(mustResolve(t, ref, amd)); got != "PLATFORM=linux/s390x" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("several judged by config", func(t *testing.T) {
		b := newBuilder(t)
		ref := writeDir(t, t.TempDir(), b.layout(
			unplatformed(b.image(amd, layerTar(t, "a", "a"))),
			unplatformed(b.image(arm, layerTar(t, "b", "b")))))
		if got := imageEnv(mustResolve(t, ref, arm)); got != "PLATFORM=linux/arm64" {
			t.Errorf("got %q", got)
		}
		_, err := mustOpen(t, ref).Resolve(Platform{OS: "linux", Architecture: "s390x", Variant: ""})
		checkSourceErr(t, err, ErrNoPlatform, "it offers linux/amd64, linux/arm64")
	})
	t.Run("a declared platform that does not fit", func(t *testing.T) {
		b := newBuilder(t)
		ref := writeDir(t, t.TempDir(), b.layout(b.image(arm, layerTar(t, "x", "x"))))
		_, err := mustOpen(t, ref).Resolve(amd)
		checkSourceErr(t, err, ErrNoPlatform, "no linux/amd64 image in "+ref+"; it offers linux/arm64")
	})
	t.Run("attestations are passed over", func(t *testing.T) {
		b := newBuilder(t)
		att := b.image(Platform{OS: "unknown", Architecture: "unknown", Variant: ""}, layerTar(t, "att", "x"))
		sig := b.blob("application/vnd.dev.cosign.simplesigning.v1+json", []byte("{}"))
		ref := writeDir(t, t.TempDir(), b.layout(b.index(b.image(amd, layerTar(t, "a", "a")), att, sig)))
		if got := imageEnv(mustResolve(t, ref, amd)); got != "PLATFORM=linux/amd64" {
			t.Errorf("got %q", got)
		}
		_, err := mustOpen(t, ref).Resolve(arm)
		checkSourceErr(t, err, ErrNoPlatform, "; it offers linux/amd64")
		if strings.Contains(err.Error(), "unknown") {
			t.Errorf("error lists attestations: %v", err)
		}
	})
}

func TestNestedIndex(t *testing.T) {
	host := unpack.HostPlatform()
	for _, n := range []int{1, 2, maxIndexDepth - 1, maxIndexDepth, maxIndexDepth + 1, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := newBuilder(t)
			d := b.image(host, layerTar(t, "x", "x"))
			for range n {
				d = b.index(d)
			}
			ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.layout(d), tarOptions{})
			_, _, err := readImage(ref, host)
			if n <= maxIndexDepth {
				if err != nil {
					t.Fatalf("%d nested indexes: %v", n, err)
				}
				return
			}
			checkSourceErr(t, err, ErrInvalid, "nest more than 8 deep", ref)
		})
	}
	t.Run("platforms offered below", func(t *testing.T) {
		b := newBuilder(t)
		inner := b.index(b.image(Platform{OS: "linux", Architecture: "ppc64le", Variant: ""}, layerTar(t, "x", "x")))
		ref := writeDir(t, t.TempDir(), b.layout(b.index(inner, b.image(Platform{OS: "linux", Architecture: "riscv64", Variant: ""}, layerTar(t, "y", "y")))))
		_, err := mustOpen(t, ref).Resolve(Platform{OS: "linux", Architecture: "s390x", Variant: ""})
		checkSourceErr(t, err, ErrNoPlatform, "it offers linux/riscv64, linux/ppc64le")
		if got := imageEnv(mustResolve(t, ref, Platform{OS: "linux", Architecture: "ppc64le", Variant: ""})); got != "PLATFORM=linux/ppc64le" {
			t.Errorf("got %q from the nested index", got)
		}
	})
}

func TestDigestMismatch(t *testing.T) {
	host := unpack.HostPlatform()
	layer := layerTar(t, "etc/data", strings.Repeat("0123456789", 300))
	for _, f := range sourceFormats {
		t.Run(f.name, func(t *testing.T) {
			b := newBuilder(t)
			m := b.image(host, layer)
			ld := b.manifestOf(m).Layers[0].Digest
			b.flip(ld)
			ref := f.make(t, b, taggedImage{m, ""})
			src := mustOpen(t, ref)
			res, err := src.Resolve(host)
			if err != nil {
				t.Fatalf("Resolve reads no layer data, so it cannot see the flip: %v", err)
			}
			l := res.Manifest.Layers[0]
			if l.Digest != ld {
				t.Fatalf("layer digest %s, want %s", l.Digest, ld)
			}
			r, err := src.Open(l)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
				t.Errorf("a partial read checks nothing, yet: %v", err)
			}
			_, err = io.ReadAll(r)
			checkSourceErr(t, err, ErrDigest, "blob "+shortDigest(ld)+" of "+ref+": digest mismatch")
			if _, err2 := r.Read(make([]byte, 1)); err2 != err {
				t.Errorf("a read after the mismatch gives %v", err2)
			}
		})
	}
	t.Run("manifest", func(t *testing.T) {
		b := newBuilder(t)
		m := b.image(host, layer)
		b.flip(m.Digest)
		ref := writeDir(t, t.TempDir(), b.layout(m))
		_, err := mustOpen(t, ref).Resolve(host)
		checkSourceErr(t, err, ErrDigest, "manifest "+shortDigest(m.Digest)+" of "+ref+": digest mismatch")
	})
	t.Run("config", func(t *testing.T) {
		b := newBuilder(t)
		m := b.image(host, layer)
		cd := b.manifestOf(m).Config.Digest
		b.flip(cd)
		ref := writeDir(t, t.TempDir(), b.layout(m))
		_, err := mustOpen(t, ref).Resolve(host)
		checkSourceErr(t, err, ErrDigest, "config "+shortDigest(cd)+" of "+ref+": digest mismatch")
	})
	t.Run("size", func(t *testing.T) {
		b := newBuilder(t)
		m := b.image(host, layer)
		ld := b.manifestOf(m).Layers[0].Digest
		b.blobs[ld] = append(bytes.Clone(b.blobs[ld]), 0)
		ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.layout(m), tarOptions{})
		_, err := mustOpen(t, ref).Resolve(host)
		checkSourceErr(t, err, ErrDigest, "layer 1 "+shortDigest(ld), "size mismatch")
		_, err = mustOpen(t, ref).Open(b.manifestOf(m).Layers[0])
		checkSourceErr(t, err, ErrDigest, "size mismatch")
	})
	t.Run("sha512", func(t *testing.T) {
		b := newBuilder(t)
		sum := sha512.Sum512(layer)
		d := digest.NewDigestFromBytes(digest.SHA512, sum[:])
		b.blobs[d], b.order = layer, append(b.order, d)
		cfg := b.json(ispec.MediaTypeImageConfig, testConfig(host, layer))
		m := b.json(ispec.MediaTypeImageManifest, ispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, Config: cfg,
			Layers: []ispec.Descriptor{{MediaType: ispec.MediaTypeImageLayer, Digest: d, Size: int64(len(layer))}},
		})
		ref := writeDir(t, t.TempDir(), b.layout(m))
		if _, _, err := readImage(ref, host); err != nil {
			t.Fatalf("sha512 layer: %v", err)
		}
		b.flip(d)
		ref = writeDir(t, t.TempDir(), b.layout(m))
		_, _, err := readImage(ref, host)
		checkSourceErr(t, err, ErrDigest, "blob sha512:")
	})
}

// TestResolveReadsNoLayerData overwrites a layer inside the archive file:
// opening and resolving must not notice, reading the layer must.
func TestResolveReadsNoLayerData(t *testing.T) {
	host := unpack.HostPlatform()
	layer := layerTar(t, "big", strings.Repeat("layer data! ", 1000))
	for _, f := range sourceFormats {
		if f.name == "oci-dir" {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			b := newBuilder(t)
			ref := f.make(t, b, taggedImage{b.image(host, layer), ""})
			data, err := os.ReadFile(ref)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(data, layer)
			if i < 0 || bytes.Contains(data[i+1:], layer) {
				t.Fatal("layer not found once in the archive")
			}
			fh, err := os.OpenFile(ref, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fh.WriteAt(make([]byte, len(layer)), int64(i)); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			src := mustOpen(t, ref)
			res, err := src.Resolve(host)
			if err != nil {
				t.Fatalf("Resolve read layer data: %v", err)
			}
			_, err = readSourceBlob(src, res.Manifest.Layers[0])
			checkSourceErr(t, err, ErrDigest, "digest mismatch")
		})
	}
}

func TestMissingBlob(t *testing.T) {
	host := unpack.HostPlatform()
	which := []struct {
		name string
		pick func(b *imageBuilder, m ispec.Descriptor) digest.Digest
		want string
	}{
		{"layer", func(b *imageBuilder, m ispec.Descriptor) digest.Digest { return b.manifestOf(m).Layers[1].Digest }, "layer 2"},
		{"config", func(b *imageBuilder, m ispec.Descriptor) digest.Digest { return b.manifestOf(m).Config.Digest }, "config"},
		{"manifest", func(b *imageBuilder, m ispec.Descriptor) digest.Digest { return m.Digest }, "manifest"},
	}
	for _, f := range sourceFormats {
		for _, w := range which {
			if w.name == "manifest" && !f.oci {
				continue
			}
			t.Run(f.name+"/"+w.name, func(t *testing.T) {
				b := newBuilder(t)
				m := b.image(host, layerTar(t, "a", "a"), layerTar(t, "b", "b"))
				full := b.manifestOf(m)
				gone := w.pick(b, m)
				b.drop(gone)
				ref := f.make(t, b, taggedImage{m, ""})
				src := mustOpen(t, ref)
				_, err := src.Resolve(host)
				checkSourceErr(t, err, ErrMissingBlob, w.want, ref, "missing")
				if w.name == "layer" {
					_, err := src.Open(full.Layers[1])
					checkSourceErr(t, err, ErrMissingBlob, "blob "+shortDigest(gone), "missing")
				}
			})
		}
	}
}

// replaceFile returns files with name's content replaced.
func replaceFile(files []testFile, name string, data []byte) []testFile {
	files = slices.Clone(files)
	for i := range files {
		if files[i].name == name {
			files[i].data = data
		}
	}
	return files
}

func TestInvalidJSON(t *testing.T) {
	host := unpack.HostPlatform()
	layer := layerTar(t, "x", "x")
	tests := []struct {
		name string
		make func(t *testing.T, b *imageBuilder) string
		want string
	}{
		{"index.json", func(t *testing.T, b *imageBuilder) string {
			files := replaceFile(b.layout(b.image(host, layer)), "index.json", []byte(`{"schemaVersion": 2, "manifests": [`))
			return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), files, tarOptions{})
		}, "index.json of "},
		{"oci-layout", func(t *testing.T, b *imageBuilder) string {
			return writeDir(t, t.TempDir(), replaceFile(b.layout(b.image(host, layer)), "oci-layout", []byte("nope")))
		}, "oci-layout of "},
		{"manifest", func(t *testing.T, b *imageBuilder) string {
			return writeDir(t, t.TempDir(), b.layout(b.blob(ispec.MediaTypeImageManifest, []byte(`{"schemaVersion": 2,`))))
		}, "manifest sha256:"},
		{"index", func(t *testing.T, b *imageBuilder) string {
			return writeDir(t, t.TempDir(), b.layout(b.blob(ispec.MediaTypeImageIndex, []byte(`[1, 2]`))))
		}, "index sha256:"},
		{"config", func(t *testing.T, b *imageBuilder) string {
			cfg := b.blob(ispec.MediaTypeImageConfig, []byte(`{"config": {"Env": "not a list"}}`))
			return writeDir(t, t.TempDir(), b.layout(b.manifest(host, cfg, layer)))
		}, "config sha256:"},
		{"docker manifest.json", func(t *testing.T, b *imageBuilder) string {
			files := replaceFile(b.dockerClassic(dockerImage{manifest: b.image(host, layer)}), "manifest.json", []byte(`[{"Config": 1}]`))
			return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), files, tarOptions{})
		}, "manifest.json of "},
		{"docker config", func(t *testing.T, b *imageBuilder) string {
			m := b.image(host, layer)
			name := b.manifestOf(m).Config.Digest.Encoded() + ".json"
			files := replaceFile(b.dockerClassic(dockerImage{manifest: m}), name, []byte(`{`))
			return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), files, tarOptions{})
		}, "config \""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := tt.make(t, newBuilder(t))
			_, _, err := readImage(ref, host)
			if tt.name == "docker config" {
				checkSourceErr(t, err, ErrDigest, tt.want) // its name is its digest, checked first
				return
			}
			checkSourceErr(t, err, ErrInvalid, tt.want, ref, "invalid JSON")
		})
	}
}

func TestUnsupported(t *testing.T) {
	host := unpack.HostPlatform()
	layer := layerTar(t, "x", "x")
	manifestWith := func(b *imageBuilder, mutate func(*ispec.Manifest)) ispec.Descriptor {
		m := b.manifestOf(b.image(host, layer))
		mutate(&m)
		return b.json(ispec.MediaTypeImageManifest, m)
	}
	tests := []struct {
		name     string
		top      func(b *imageBuilder) ispec.Descriptor
		sentinel error
		want     string
	}{
		{"layer media type", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) { m.Layers[0].MediaType = "application/vnd.example.squashfs" })
		}, ErrUnsupported, `layer 1 has unsupported media type "application/vnd.example.squashfs"`},
		{"artifact config", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) { m.Config.MediaType = "application/vnd.cncf.helm.config.v1+json" })
		}, ErrUnsupported, `config media type "application/vnd.cncf.helm.config.v1+json"`},
		{"schema 1 descriptor", func(b *imageBuilder) ispec.Descriptor {
			return b.blob("application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion": 1}`))
		}, ErrUnsupported, `"application/vnd.docker.distribution.manifest.v1+prettyjws"`},
		{"schema 1 content", func(b *imageBuilder) ispec.Descriptor {
			return b.blob("", []byte(`{"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+json"}`))
		}, ErrUnsupported, `"application/vnd.docker.distribution.manifest.v1+json"`},
		{"schemaVersion 3", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) { m.SchemaVersion = 3 })
		}, ErrUnsupported, "schemaVersion 3"},
		{"index says manifest", func(b *imageBuilder) ispec.Descriptor {
			d := b.index(b.image(host, layer))
			d.MediaType = ispec.MediaTypeImageManifest
			return d
		}, ErrInvalid, "its descriptor says"},
		{"md5 digest", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) { m.Layers[0].Digest = "md5:d41d8cd98f00b204e9800998ecf8427e" })
		}, ErrUnsupported, "only sha256 and sha512"},
		{"sha384 digest", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) {
				m.Layers[0].Digest = digest.SHA384.FromBytes(layer)
			})
		}, ErrUnsupported, "only sha256 and sha512"},
		{"malformed digest", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) { m.Layers[0].Digest = "sha256:../../../etc/passwd" })
		}, ErrInvalid, "malformed digest"},
		{"empty digest", func(b *imageBuilder) ispec.Descriptor {
			d := b.image(host, layer)
			d.Digest = ""
			return d
		}, ErrInvalid, "empty digest"},
		{"negative size", func(b *imageBuilder) ispec.Descriptor {
			return manifestWith(b, func(m *ispec.Manifest) { m.Config.Size = -1 })
		}, ErrInvalid, "negative size"},
		{"huge manifest", func(b *imageBuilder) ispec.Descriptor {
			d := b.image(host, layer)
			d.Size = 5 << 20
			return d
		}, ErrInvalid, "more than the 4 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuilder(t)
			ref := writeDir(t, t.TempDir(), b.layout(tt.top(b)))
			_, _, err := readImage(ref, host)
			checkSourceErr(t, err, tt.sentinel, tt.want, ref)
		})
	}
	t.Run("layout version", func(t *testing.T) {
		b := newBuilder(t)
		files := replaceFile(b.layout(b.image(host, layer)), "oci-layout", []byte(`{"imageLayoutVersion":"2.0.0"}`))
		_, err := Open(writeDir(t, t.TempDir(), files))
		checkSourceErr(t, err, ErrUnsupported, `"2.0.0"`)
	})
	t.Run("huge index.json", func(t *testing.T) {
		b := newBuilder(t)
		idx := append([]byte(`{"schemaVersion": 2, "manifests": []}`), bytes.Repeat([]byte(" "), maxJSONSize)...)
		files := replaceFile(b.layout(b.image(host, layer)), "index.json", idx)
		_, err := Open(writeTar(t, filepath.Join(t.TempDir(), "img.tar"), files, tarOptions{}))
		checkSourceErr(t, err, ErrInvalid, "index.json of", "more than the 4 MiB")
	})
	t.Run("compressed docker layer.tar", func(t *testing.T) {
		b := newBuilder(t)
		m := b.image(host, append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, layer...))
		ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.dockerClassic(dockerImage{manifest: m}), tarOptions{})
		_, err := mustOpen(t, ref).Resolve(host)
		checkSourceErr(t, err, ErrUnsupported, "xz-compressed")
	})
	t.Run("layer types pass through", func(t *testing.T) {
		for mt := range layerTypes {
			b := newBuilder(t)
			ref := writeDir(t, t.TempDir(), b.layout(manifestWith(b, func(m *ispec.Manifest) { m.Layers[0].MediaType = mt })))
			res, _, err := readImage(ref, host)
			if err != nil {
				t.Fatalf("%s: %v", mt, err)
			}
			if got := res.Manifest.Layers[0].MediaType; got != mt {
				t.Errorf("layer type %q came out as %q", mt, got)
			}
		}
	})
}

func TestTruncatedArchive(t *testing.T) {
	host := unpack.HostPlatform()
	b := newBuilder(t)
	m := b.image(host, layerTar(t, "a", strings.Repeat("a", 3000)), gzipped(t, layerTar(t, "b", "b")))
	archives := map[string][]byte{
		"oci-archive":    tarBytes(t, b.layout(m), tarOptions{}),
		"docker-classic": tarBytes(t, b.dockerClassic(dockerImage{manifest: m}), tarOptions{}),
		"docker-oci":     tarBytes(t, b.dockerOCI(dockerImage{manifest: m}), tarOptions{}),
	}
	for name, data := range archives {
		t.Run(name, func(t *testing.T) {
			ref := filepath.Join(t.TempDir(), "img.tar")
			// Every cut before the end of the last member's data loses
			// something the image needs. (A cut in the padding or the
			// end-of-archive blocks after it loses nothing.)
			// docker-oci's manifest.json comes last and is not needed.
			for cut := 0; cut < lastDataEnd(t, data, name == "docker-oci"); cut += 53 {
				if err := os.WriteFile(ref, data[:cut], 0o644); err != nil {
					t.Fatal(err)
				}
				if _, _, err := readImage(ref, host); err == nil {
					t.Fatalf("cut at %d of %d bytes: no error", cut, len(data))
				} else if strings.ContainsAny(err.Error(), "\n\r") {
					t.Errorf("cut at %d: error not one line: %q", cut, err)
				}
			}
		})
	}
	t.Run("mid-blob", func(t *testing.T) {
		data := archives["oci-archive"]
		i := bytes.Index(data, []byte(strings.Repeat("a", 3000)))
		ref := filepath.Join(t.TempDir(), "img.tar")
		if err := os.WriteFile(ref, data[:i+1500], 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := readImage(ref, host)
		checkSourceErr(t, err, ErrInvalid, ref, "truncated")
	})
	t.Run("shrunk after opening", func(t *testing.T) {
		ref := filepath.Join(t.TempDir(), "img.tar")
		data := archives["oci-archive"]
		if err := os.WriteFile(ref, data, 0o644); err != nil {
			t.Fatal(err)
		}
		src := mustOpen(t, ref)
		res, err := src.Resolve(host)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(ref, int64(bytes.Index(data, []byte(strings.Repeat("a", 3000))))); err != nil {
			t.Fatal(err)
		}
		_, err = readSourceBlob(src, res.Manifest.Layers[0])
		checkSourceErr(t, err, ErrDigest, "truncated")
	})
}

// lastDataEnd is the offset where the data of an archive's last member
// (or the last but one) ends.
func lastDataEnd(t *testing.T, data []byte, butOne bool) int {
	r := bytes.NewReader(data)
	tr := tar.NewReader(r)
	var ends []int
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if butOne {
				return ends[len(ends)-2]
			}
			return ends[len(ends)-1]
		}
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, len(data)-r.Len()+int(hdr.Size))
	}
}

func TestNotImage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)
	plain := filepath.Join(dir, "rootfs")
	writeDir(t, plain, []testFile{{name: "bin/sh", data: []byte("#!")}, {name: "etc", dir: true}})
	files := []testFile{{name: "hello.txt", data: []byte("hi")}}
	tests := []struct {
		name     string
		ref      string
		sentinel error
		want     string
	}{
		{"random", write("random", random), ErrNotImage, "is not a tar archive"},
		{"text", write("text", []byte("hello, world\n")), ErrNotImage, "is not a tar archive"},
		{"empty", write("empty", nil), ErrNotImage, "empty file"},
		{"gzip", write("img.tar.gz", gzipped(t, tarBytes(t, files, tarOptions{}))), ErrNotImage, "gzip-compressed"},
		{"zstd", write("img.tar.zst", []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}), ErrNotImage, "zstd-compressed"},
		{"empty tar", write("empty.tar", tarBytes(t, nil, tarOptions{})), ErrNotImage, "empty tar archive"},
		{"other tar", write("other.tar", tarBytes(t, files, tarOptions{})), ErrNotImage, "without index.json or manifest.json"},
		{"device", "/dev/null", ErrNotImage, "not a regular file or a directory"},
		{"missing", filepath.Join(dir, "nope.tar"), fs.ErrNotExist, "open image " + filepath.Join(dir, "nope.tar")},
		{"missing with tag", filepath.Join(dir, "nope.tar:v1"), fs.ErrNotExist, "nope.tar:v1"},
		{"plain dir", plain, ErrPlainRootfs, "no index.json"},
		{"plain dir with tag", plain + ":v1", ErrNotImage, `no tag "v1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Open(tt.ref)
			if err == nil {
				src.Close()
			}
			checkSourceErr(t, err, tt.sentinel, tt.want)
			if tt.sentinel != ErrNotImage && errors.Is(err, ErrNotImage) {
				t.Errorf("%v is also ErrNotImage", err)
			}
		})
	}
}

func TestHostileArchive(t *testing.T) {
	host := unpack.HostPlatform()
	b := newBuilder(t)
	m := b.image(host, layerTar(t, "x", "x"))
	good := b.layout(m)
	layerName := "blobs/sha256/" + b.manifestOf(m).Layers[0].Digest.Encoded()
	with := func(extra ...testFile) []testFile { return append(slices.Clone(good), extra...) }
	withLayer := func(f ...testFile) []testFile {
		var out []testFile
		for _, g := range good {
			if g.name != layerName {
				out = append(out, g)
			}
		}
		return append(out, f...)
	}
	tests := []struct {
		name  string
		files []testFile
		want  string // "" when the image must still work
	}{
		{"dot-dot member", with(testFile{name: "../evil", data: []byte("x")}), "climbs out of the archive"},
		{"dot-dot inside", with(testFile{name: "blobs/../../evil", data: []byte("x")}), "climbs out of the archive"},
		{"absolute member", with(testFile{name: "/etc/evil", data: []byte("x")}), "absolute name"},
		{"duplicate index.json", with(testFile{name: "index.json", data: []byte("{}")}), `"index.json" appears twice`},
		{"blob and directory", with(testFile{name: layerName, dir: true}), "appears twice"},
		{"duplicate blob", with(testFile{name: layerName, data: b.blobs[b.manifestOf(m).Layers[0].Digest]}), ""},
		{"layer symlinked out", withLayer(testFile{name: layerName, link: "../../../../etc/passwd"}), "outside the archive"},
		{"layer symlinked in", withLayer(
			testFile{name: "elsewhere", data: b.blobs[b.manifestOf(m).Layers[0].Digest]},
			testFile{name: layerName, link: "/elsewhere"}), ""},
		{"symlink loop", withLayer(testFile{name: layerName, link: "a"}, testFile{name: "blobs/sha256/a", link: path0(layerName)}), "more than 16 links"},
		{"layer is a directory", withLayer(testFile{name: layerName, dir: true}), "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), tt.files, tarOptions{})
			_, _, err := readImage(ref, host)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkSourceErr(t, err, ErrInvalid, tt.want, ref)
		})
	}
}

// path0 is the base name of p.
func path0(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func TestFIFOBlob(t *testing.T) {
	host := unpack.HostPlatform()
	b := newBuilder(t)
	m := b.image(host, layerTar(t, "x", "x"))
	ld := b.manifestOf(m).Layers[0]
	b.drop(ld.Digest)
	dir := writeDir(t, t.TempDir(), b.layout(m))
	if err := syscall.Mkfifo(filepath.Join(dir, "blobs", "sha256", ld.Digest.Encoded()), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 2)
	go func() {
		src, err := Open(dir)
		if err != nil {
			done <- err
			return
		}
		defer src.Close()
		_, err = src.Resolve(host)
		done <- err
		_, err = src.Open(ld)
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			checkSourceErr(t, err, ErrInvalid, "not a regular file")
		case <-time.After(10 * time.Second):
			t.Fatal("a FIFO where a blob should be blocks")
		}
	}
}

func TestKey(t *testing.T) {
	host := unpack.HostPlatform()
	b := newBuilder(t)
	m := b.image(host, layerTar(t, "x", "x"))
	dir := t.TempDir()
	archive := writeTar(t, filepath.Join(dir, "img.tar"), b.layout(tagged(m, "v1")), tarOptions{})
	layout := writeDir(t, filepath.Join(dir, "layout"), b.layout(tagged(m, "v1")))

	for _, ref := range []string{archive, layout} {
		t.Run(filepath.Base(ref), func(t *testing.T) {
			key := mustOpen(t, ref).Key()
			if _, _, err := readImage(ref, host); err != nil {
				t.Fatal(err)
			}
			if got := mustOpen(t, ref).Key(); got != key {
				t.Errorf("reading changed the key: %q, then %q", key, got)
			}
			if got := mustOpen(t, ref+":v1").Key(); got == key {
				t.Error("the tag is not in the key")
			}
			// Rewrite in place: same inode, new mtime.
			file := ref
			if ref == layout {
				file = filepath.Join(ref, "index.json")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(file, later, later); err != nil {
				t.Fatal(err)
			}
			rewritten := mustOpen(t, ref).Key()
			if rewritten == key {
				t.Error("rewriting the file kept the key")
			}
			// Replace by rename: a new inode, even with the same mtime.
			tmp := file + ".new"
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tmp, later, later); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
			if got := mustOpen(t, ref).Key(); got == rewritten {
				t.Error("replacing the file kept the key")
			}
		})
	}
}

// TestConcurrentReads reads every blob of an archive from several
// goroutines at once through one Source.
func TestConcurrentReads(t *testing.T) {
	host := unpack.HostPlatform()
	b := newBuilder(t)
	var layers [][]byte
	for i := range 6 {
		layers = append(layers, layerTar(t, fmt.Sprint(i), strings.Repeat(fmt.Sprint(i), 10000)))
	}
	for _, f := range sourceFormats[1:] {
		t.Run(f.name, func(t *testing.T) {
			src := mustOpen(t, f.make(t, b, taggedImage{b.image(host, layers...), ""}))
			res, err := src.Resolve(host)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i, l := range res.Manifest.Layers {
				wg.Go(func() {
					if data, err := readSourceBlob(src, l); err != nil || !bytes.Equal(data, layers[i]) {
						t.Errorf("layer %d: %v", i+1, err)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestVerifier(t *testing.T) {
	blob := []byte("the content of a blob")
	d := ispec.Descriptor{Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	tests := []struct {
		name    string
		content []byte
		desc    ispec.Descriptor
		want    string // "" for success
	}{
		{"exact", blob, d, ""},
		{"empty", nil, ispec.Descriptor{Digest: digest.FromBytes(nil)}, ""},
		{"short", blob[:5], d, "truncated: read 5 of 21 bytes"},
		{"flipped", bytes.ToUpper(blob), d, "digest mismatch"},
		{"longer is cut at the size", append(bytes.Clone(blob), "more"...), d, ""},
		{"wrong size", blob, ispec.Descriptor{Digest: d.Digest, Size: 3}, "digest mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(io.NopCloser(bytes.NewReader(tt.content)), tt.desc, "blob x")
			got, err := io.ReadAll(iotestHalfReader{v})
			if tt.want == "" {
				if err != nil || !bytes.Equal(got, tt.content[:tt.desc.Size]) {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			checkSourceErr(t, err, ErrDigest, "blob x: "+tt.want)
		})
	}
}

// iotestHalfReader reads in small pieces, to cross buffer boundaries.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	return h.r.Read(p[:min(len(p), 4)])
}

func TestPlatformScore(t *testing.T) {
	tests := []struct {
		ask, image string
		fits       bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/amd64/v3", true},
		{"linux/amd64/v3", "linux/amd64", false},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm/v7", "linux/arm", true},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/x86_64", "linux/amd64", true},
	}
	for _, tt := range tests {
		p, err := unpack.ParsePlatform(tt.ask)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := unpack.ParsePlatform(tt.image)
		if got := score(p, &ispec.Platform{OS: q.OS, Architecture: q.Architecture, Variant: q.Variant}) > 0; got != tt.fits {
			t.Errorf("%s on %s: fits %v, want %v", tt.image, tt.ask, got, tt.fits)
		}
	}
}

// TestOddIndexes covers index.json and tag corner cases.
func TestOddIndexes(t *testing.T) {
	host := unpack.HostPlatform()
	layer := layerTar(t, "x", "x")
	t.Run("one tag in two repositories", func(t *testing.T) {
		b := newBuilder(t)
		one, two := b.image(host, layerTar(t, "1", "1")), b.image(host, layerTar(t, "2", "2"))
		ref := writeDir(t, t.TempDir(), b.layout(tagged(one, "a/x:latest"), tagged(two, "b/y:latest")))
		_, err := Open(ref + ":latest")
		checkSourceErr(t, err, ErrNoTag, `tag "latest"`, "names several images", `"a/x:latest", "b/y:latest"`)
		if _, _, err := readImage(ref+":b/y:latest", host); err != nil {
			t.Errorf("whole name: %v", err)
		}
		dref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.dockerClassic(
			dockerImage{manifest: one, tags: []string{"a/x:latest"}},
			dockerImage{manifest: two, tags: []string{"b/y:latest"}}), tarOptions{})
		_, err = Open(dref + ":latest")
		checkSourceErr(t, err, ErrNoTag, "names several images")
		if _, _, err := readImage(dref+":y:latest", host); err != nil {
			t.Errorf("docker whole name: %v", err)
		}
	})
	for _, tt := range []struct {
		name, index string
		sentinel    error
		want        string
	}{
		{"schemaVersion 1", `{"schemaVersion": 1, "manifests": []}`, ErrUnsupported, "schemaVersion 1"},
		{"a manifest as index.json", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}`, ErrUnsupported, "not an image index"},
		{"no images", `{"schemaVersion": 2, "manifests": []}`, ErrInvalid, "lists no images"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuilder(t)
			ref := writeDir(t, t.TempDir(), replaceFile(b.layout(b.image(host, layer)), "index.json", []byte(tt.index)))
			_, err := Open(ref)
			checkSourceErr(t, err, tt.sentinel, tt.want, "index.json of "+ref)
		})
	}
	t.Run("no media type in the descriptor", func(t *testing.T) {
		b := newBuilder(t)
		m := b.image(host, layer)
		m.MediaType = ""
		idx := b.index(m)
		idx.MediaType = ""
		ref := writeDir(t, t.TempDir(), b.layout(idx))
		if res := mustResolve(t, ref, host); res.ManifestDigest != m.Digest {
			t.Errorf("got %s, want %s", res.ManifestDigest, m.Digest)
		}
	})
	t.Run("zstd docker layer.tar", func(t *testing.T) {
		b := newBuilder(t)
		zst := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, layer...) // only sniffed, never decompressed here
		m := b.image(host, zst)
		ref := writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.dockerClassic(dockerImage{manifest: m}), tarOptions{})
		res, layers, err := readImage(ref, host)
		if err != nil {
			t.Fatal(err)
		}
		if l := res.Manifest.Layers[0]; l.MediaType != ispec.MediaTypeImageLayerZstd || l.Digest != digest.FromBytes(zst) || !bytes.Equal(layers[0], zst) {
			t.Errorf("zstd layer came out as %+v", l)
		}
	})
}
