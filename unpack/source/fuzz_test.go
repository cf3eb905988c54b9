package source

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hpcrun/hpcrun/unpack"
)

// fuzzSeeds are archives of every kind the tests build: OCI, docker
// classic and docker's OCI form, gzip and plain layers, an index.
func fuzzSeeds(f *testing.F) [][]byte {
	b := newBuilder(f)
	layer := layerTar(f, "etc/os-release", "ID=fuzz\n", "bin/sh", "#!")
	img := b.image(unpack.HostPlatform(), gzipped(f, layer))
	other, _ := unpack.ParsePlatform("linux/arm64")
	idx := b.index(img, b.image(other, layer))
	oci := tarBytes(f, b.layout(tagged(idx, "v1")), tarOptions{})
	classic := tarBytes(f, b.dockerClassic(dockerImage{manifest: img, tags: []string{"fuzz/img:1"}}), tarOptions{prefix: "./", dirs: true})
	dockerOCI := tarBytes(f, b.dockerOCI(dockerImage{manifest: img, tags: []string{"fuzz/img:1"}}), tarOptions{})
	return [][]byte{oci, classic, dockerOCI}
}

// FuzzOpenArchive: whatever a file holds, opening it as an image, resolving
// it and reading its layers ends in an image or an error, never a panic
// or a hang, and an error says which sentinel it is.
func FuzzOpenArchive(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte("not a tar"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "img-"+strconv.Itoa(os.Getpid())+".tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := Open(p)
		if err != nil {
			return
		}
		defer src.Close()
		res, err := src.Resolve(unpack.HostPlatform())
		if err != nil {
			return
		}
		for _, l := range res.Manifest.Layers {
			r, err := src.Open(l)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, io.LimitReader(r, 64<<20))
			r.Close()
		}
	})
}

// FuzzResolve fuzzes the JSON an image is made of: index.json's entry
// point (an index or a manifest), a manifest and a config, written under
// their true digests. In the fuzzed text, MANIFEST_DIGEST, MANIFEST_SIZE,
// CONFIG_DIGEST and CONFIG_SIZE become the real values, so that the
// fuzzer gets past the digest checks to the parsers.
func FuzzResolve(f *testing.F) {
	cfg := mustJSON(f, testConfig(unpack.HostPlatform()))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"MANIFEST_DIGEST","size":MANIFEST_SIZE,"platform":{"os":"linux","architecture":"amd64"}}]}`),
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"CONFIG_DIGEST","size":CONFIG_SIZE},"layers":[]}`),
		cfg, true)
	f.Add([]byte(`{}`), []byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"CONFIG_DIGEST","size":CONFIG_SIZE},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:`+digest.FromString("").Encoded()+`","size":0}]}`), cfg, false)
	f.Fuzz(func(t *testing.T, top, manifest, config []byte, topIsIndex bool) {
		dir := t.TempDir()
		put := func(b []byte) digest.Digest {
			d := digest.FromBytes(b)
			p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return d
		}
		cd := put(config)
		manifest = bytes.ReplaceAll(manifest, []byte("CONFIG_DIGEST"), []byte(cd))
		manifest = bytes.ReplaceAll(manifest, []byte("CONFIG_SIZE"), []byte(strconv.Itoa(len(config))))
		md := put(manifest)
		entry := ispec.Descriptor{MediaType: ispec.MediaTypeImageManifest, Digest: md, Size: int64(len(manifest))}
		if topIsIndex {
			top = bytes.ReplaceAll(top, []byte("MANIFEST_DIGEST"), []byte(md))
			top = bytes.ReplaceAll(top, []byte("MANIFEST_SIZE"), []byte(strconv.Itoa(len(manifest))))
			entry = ispec.Descriptor{MediaType: ispec.MediaTypeImageIndex, Digest: put(top), Size: int64(len(top))}
		}
		idx, _ := json.Marshal(ispec.Index{Versioned: ispecVersioned(), Manifests: []ispec.Descriptor{entry}})
		if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := Open(dir)
		if err != nil {
			return
		}
		defer src.Close()
		src.Resolve(unpack.HostPlatform())
	})
}
