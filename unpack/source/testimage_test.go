package source

// Test helpers that build small images in every format Open reads:
// an OCI layout directory, an OCI archive, and docker save archives in the
// classic and the OCI-layout form, with multi-platform and nested indexes.
// Blobs live in an imageBuilder until written, so a test can corrupt,
// drop or replace one first.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testFile is one file of an image as written to a directory or a tar.
type testFile struct {
	name string
	data []byte
	link string // a symlink to link when set
	dir  bool
}

// layerTar builds an uncompressed layer from name, content pairs.
func layerTar(t testing.TB, pairs ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(pairs); i += 2 {
		hdr := &tar.Header{Name: pairs[i], Mode: 0o644, Size: int64(len(pairs[i+1])), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(pairs[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipped compresses b.
func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageBuilder collects the blobs of the images a test makes.
type imageBuilder struct {
	t       testing.TB
	blobs   map[digest.Digest][]byte
	order   []digest.Digest
	dropped map[digest.Digest]bool // left out when written
}

func newBuilder(t testing.TB) *imageBuilder {
	return &imageBuilder{t: t, blobs: map[digest.Digest][]byte{}, dropped: map[digest.Digest]bool{}}
}

// drop leaves blob d out of what is written.
func (b *imageBuilder) drop(d digest.Digest) { b.dropped[d] = true }

// blob stores data and returns its descriptor.
func (b *imageBuilder) blob(mediaType string, data []byte) ispec.Descriptor {
	d := digest.FromBytes(data)
	if _, ok := b.blobs[d]; !ok {
		b.order = append(b.order, d)
	}
	b.blobs[d] = data
	return ispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// json stores v as JSON.
func (b *imageBuilder) json(mediaType string, v any) ispec.Descriptor {
	data, err := json.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.blob(mediaType, data)
}

// config returns an image config for p whose Env names p, so a test can
// tell which image it got.
func testConfig(p Platform, layers ...[]byte) ispec.Image {
	img := ispec.Image{
		Platform: ispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant},
		Config:   ispec.ImageConfig{Env: []string{"PLATFORM=" + p.String()}},
		RootFS:   ispec.RootFS{Type: "layers"},
	}
	for _, l := range layers {
		diff := l
		if bytes.HasPrefix(l, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(bytes.NewReader(l))
			if err != nil {
				panic(err)
			}
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(zr); err != nil {
				panic(err)
			}
			diff = buf.Bytes()
		}
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.FromBytes(diff))
	}
	return img
}

// image adds an image for p made of layers (tars, gzip'd or not) and
// returns its manifest's descriptor, which names p as its platform.
func (b *imageBuilder) image(p Platform, layers ...[]byte) ispec.Descriptor {
	cfg := b.json(ispec.MediaTypeImageConfig, testConfig(p, layers...))
	return b.manifest(p, cfg, layers...)
}

// manifest adds a manifest with config cfg and layers.
func (b *imageBuilder) manifest(p Platform, cfg ispec.Descriptor, layers ...[]byte) ispec.Descriptor {
	m := ispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ispec.Descriptor{},
	}
	for _, l := range layers {
		mt := ispec.MediaTypeImageLayer
		if bytes.HasPrefix(l, []byte{0x1f, 0x8b}) {
			mt = ispec.MediaTypeImageLayerGzip
		}
		m.Layers = append(m.Layers, b.blob(mt, l))
	}
	d := b.json(ispec.MediaTypeImageManifest, m)
	d.Platform = &ispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	return d
}

// index adds an image index of entries and returns its descriptor.
func (b *imageBuilder) index(entries ...ispec.Descriptor) ispec.Descriptor {
	return b.json(ispec.MediaTypeImageIndex, ispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ispec.MediaTypeImageIndex,
		Manifests: entries,
	})
}

// tagged returns d named tag in index.json.
func tagged(d ispec.Descriptor, tag string) ispec.Descriptor {
	d.Annotations = map[string]string{ispec.AnnotationRefName: tag}
	return d
}

// unplatformed returns d without its platform.
func unplatformed(d ispec.Descriptor) ispec.Descriptor {
	d.Platform = nil
	return d
}

// manifestOf decodes a manifest blob of the builder.
func (b *imageBuilder) manifestOf(d ispec.Descriptor) ispec.Manifest {
	var m ispec.Manifest
	if err := json.Unmarshal(b.blobs[d.Digest], &m); err != nil {
		b.t.Fatal(err)
	}
	return m
}

// flip changes a byte in the middle of a blob, keeping its size.
func (b *imageBuilder) flip(d digest.Digest) {
	data := bytes.Clone(b.blobs[d])
	data[len(data)/2] ^= 0xff
	b.blobs[d] = data
}

// layout returns the files of an OCI layout whose index.json lists top.
func (b *imageBuilder) layout(top ...ispec.Descriptor) []testFile {
	idx := ispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ispec.MediaTypeImageIndex, Manifests: top}
	files := []testFile{
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{name: "index.json", data: mustJSON(b.t, idx)},
	}
	for _, d := range b.order {
		if !b.dropped[d] {
			files = append(files, testFile{name: "blobs/" + d.Algorithm().String() + "/" + d.Encoded(), data: b.blobs[d]})
		}
	}
	return files
}

// dockerImage is an image of the builder under docker tags.
type dockerImage struct {
	manifest ispec.Descriptor
	tags     []string // RepoTags, "example/img:1"
}

// dockerClassic returns the files of a classic docker save archive: a
// <hex>.json config and <id>/layer.tar per layer, manifest.json last. A
// layer that appears twice is a symlink to the first, as docker writes it.
func (b *imageBuilder) dockerClassic(imgs ...dockerImage) []testFile {
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var files []testFile
	var entries []entry
	written := map[digest.Digest]string{}
	repos := map[string]map[string]string{}
	imgs = mergeTags(imgs)
	for _, img := range imgs {
		m := b.manifestOf(img.manifest)
		e := entry{Config: m.Config.Digest.Encoded() + ".json", RepoTags: img.tags}
		if _, ok := written[m.Config.Digest]; !ok {
			if !b.dropped[m.Config.Digest] {
				files = append(files, testFile{name: e.Config, data: b.blobs[m.Config.Digest]})
			}
			written[m.Config.Digest] = e.Config
		}
		for i, l := range m.Layers {
			id := digest.FromString(string(m.Config.Digest) + string(rune(i))).Encoded()
			name := id + "/layer.tar"
			if first, ok := written[l.Digest]; ok {
				files = append(files, testFile{name: id, dir: true}, testFile{name: name, link: "../" + first})
			} else {
				files = append(files, testFile{name: id, dir: true}, testFile{name: id + "/VERSION", data: []byte("1.0")})
				if !b.dropped[l.Digest] {
					files = append(files, testFile{name: name, data: b.blobs[l.Digest]})
				}
				files = append(files, testFile{name: id + "/json", data: []byte(`{"id":"` + id + `"}`)})
				written[l.Digest] = name
			}
			e.Layers = append(e.Layers, name)
		}
		for _, t := range img.tags {
			repo, tag, _ := strings.Cut(t, ":")
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tag] = m.Config.Digest.Encoded()
		}
		entries = append(entries, e)
	}
	files = append(files,
		testFile{name: "repositories", data: mustJSON(b.t, repos)},
		testFile{name: "manifest.json", data: mustJSON(b.t, entries)})
	return files
}

// mergeTags makes one image of those with one manifest, as docker save
// writes one manifest.json entry per image with all its tags.
func mergeTags(imgs []dockerImage) []dockerImage {
	var out []dockerImage
	for _, img := range imgs {
		i := slices.IndexFunc(out, func(o dockerImage) bool { return o.manifest.Digest == img.manifest.Digest })
		if i < 0 {
			out = append(out, dockerImage{manifest: img.manifest, tags: slices.Clone(img.tags)})
		} else {
			out[i].tags = append(out[i].tags, img.tags...)
		}
	}
	return out
}

// dockerOCI returns the files of a docker save archive from Docker 25 or
// later: an OCI layout whose index.json names each image, plus a
// manifest.json pointing into blobs/.
func (b *imageBuilder) dockerOCI(imgs ...dockerImage) []testFile {
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var top []ispec.Descriptor
	var entries []entry
	for _, img := range imgs {
		m := b.manifestOf(img.manifest)
		e := entry{Config: "blobs/sha256/" + m.Config.Digest.Encoded(), RepoTags: img.tags}
		for _, l := range m.Layers {
			e.Layers = append(e.Layers, "blobs/sha256/"+l.Digest.Encoded())
		}
		entries = append(entries, e)
		if len(img.tags) == 0 {
			top = append(top, unplatformed(img.manifest))
		}
		for _, t := range img.tags {
			d := unplatformed(img.manifest)
			_, tag, _ := strings.Cut(t, ":")
			d.Annotations = map[string]string{
				annotationContainerdName: "docker.io/" + t,
				ispec.AnnotationRefName:  tag,
			}
			top = append(top, d)
		}
	}
	return append(b.layout(top...), testFile{name: "manifest.json", data: mustJSON(b.t, entries)})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeDir writes files under dir.
func writeDir(t testing.TB, dir string, files []testFile) string {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case f.dir:
			err = os.MkdirAll(p, 0o755)
		case f.link != "":
			err = os.Symlink(f.link, p)
		default:
			err = os.WriteFile(p, f.data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tarOptions say how tarBytes writes an archive.
type tarOptions struct {
	prefix string // "./" as GNU tar writes from inside a directory
	dirs   bool   // write the parent directories as members
}

// tarBytes returns files as a tar archive.
func tarBytes(t testing.TB, files []testFile, opt tarOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	write := func(hdr *tar.Header, data []byte) {
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if opt.dirs && opt.prefix != "" {
		write(&tar.Header{Name: opt.prefix, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	for _, f := range files {
		if opt.dirs {
			var parents []string
			for d := path.Dir(f.name); d != "."; d = path.Dir(d) {
				parents = append([]string{d}, parents...)
			}
			for _, d := range parents {
				if !seen[d] {
					seen[d] = true
					write(&tar.Header{Name: opt.prefix + d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
				}
			}
		}
		switch {
		case f.dir:
			if !seen[f.name] {
				seen[f.name] = true
				write(&tar.Header{Name: opt.prefix + f.name + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
			}
		case f.link != "":
			write(&tar.Header{Name: opt.prefix + f.name, Typeflag: tar.TypeSymlink, Linkname: f.link, Mode: 0o777}, nil)
		default:
			write(&tar.Header{Name: opt.prefix + f.name, Typeflag: tar.TypeReg, Size: int64(len(f.data)), Mode: 0o644}, f.data)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeTar writes files as a tar archive at p.
func writeTar(t testing.TB, p string, files []testFile, opt tarOptions) string {
	t.Helper()
	if err := os.WriteFile(p, tarBytes(t, files, opt), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sourceFormat makes a source of one kind from a builder's images. Each image
// is a manifest descriptor (or, for the OCI kinds, an index) with the tag
// it goes by, "" for none.
type sourceFormat struct {
	name   string
	oci    bool // has an index.json, so indexes and platforms apply
	docker bool // tags are docker RepoTags
	make   func(t testing.TB, b *imageBuilder, imgs ...taggedImage) string
}

type taggedImage struct {
	desc ispec.Descriptor
	tag  string
}

// ociTop turns tagged images into index.json entries.
func ociTop(imgs []taggedImage) []ispec.Descriptor {
	var top []ispec.Descriptor
	for _, img := range imgs {
		d := img.desc
		if img.tag != "" {
			d = tagged(d, img.tag)
		}
		top = append(top, d)
	}
	return top
}

// dockerImages turns tagged images into docker ones, "example/img:TAG".
func dockerImages(imgs []taggedImage) []dockerImage {
	var out []dockerImage
	for _, img := range imgs {
		di := dockerImage{manifest: img.desc}
		if img.tag != "" {
			di.tags = []string{"example/img:" + img.tag}
		}
		out = append(out, di)
	}
	return out
}

var sourceFormats = []sourceFormat{
	{name: "oci-dir", oci: true, make: func(t testing.TB, b *imageBuilder, imgs ...taggedImage) string {
		return writeDir(t, filepath.Join(t.TempDir(), "layout"), b.layout(ociTop(imgs)...))
	}},
	{name: "oci-archive", oci: true, make: func(t testing.TB, b *imageBuilder, imgs ...taggedImage) string {
		return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.layout(ociTop(imgs)...), tarOptions{})
	}},
	{name: "oci-archive-dot", oci: true, make: func(t testing.TB, b *imageBuilder, imgs ...taggedImage) string {
		return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.layout(ociTop(imgs)...), tarOptions{prefix: "./", dirs: true})
	}},
	{name: "docker-classic", docker: true, make: func(t testing.TB, b *imageBuilder, imgs ...taggedImage) string {
		return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.dockerClassic(dockerImages(imgs)...), tarOptions{})
	}},
	{name: "docker-oci", oci: true, docker: true, make: func(t testing.TB, b *imageBuilder, imgs ...taggedImage) string {
		return writeTar(t, filepath.Join(t.TempDir(), "img.tar"), b.dockerOCI(dockerImages(imgs)...), tarOptions{dirs: true})
	}},
}
