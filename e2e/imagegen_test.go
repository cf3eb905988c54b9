package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"
)

// Small images built in Go, for the formats and the bad inputs that
// examples/mkimage.sh cannot make: an image is a set of named files (an
// OCI layout, or a docker save), written as a directory or a tar.

// tarEntry is one entry of a layer.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tFile(name, body string) tarEntry {
	return tarEntry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func tDir(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
func tSymlink(name, to string) tarEntry {
	return tarEntry{name: name, link: to, typ: tar.TypeSymlink, mode: 0o777}
}
func tHardlink(name, to string) tarEntry {
	return tarEntry{name: name, link: to, typ: tar.TypeLink, mode: 0o644}
}

func tarBytes(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imageFiles is an image as files by name.
type imageFiles map[string][]byte

// genImage describes an image: the layers (uncompressed tars, gzip'd in
// the OCI form) and knobs for breaking it.
type genImage struct {
	layers    [][]byte
	env       []string
	layerType string // the layers' media type; default gzip
	workdir   string // the config's WorkingDir
}

func (g genImage) config(t *testing.T) ([]byte, []string) {
	var diffIDs []string
	for _, l := range g.layers {
		diffIDs = append(diffIDs, sha(l))
	}
	return mustJSON(t, map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Env": g.env, "WorkingDir": g.workdir},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	}), diffIDs
}

// oci returns the image as an OCI layout whose one manifest is tagged tag.
func (g genImage) oci(t *testing.T, tag string) imageFiles {
	t.Helper()
	files := imageFiles{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)}
	blob := func(b []byte) (string, int) {
		d := sha(b)
		files["blobs/sha256/"+d[len("sha256:"):]] = b
		return d, len(b)
	}
	cfg, _ := g.config(t)
	cd, cs := blob(cfg)
	var layers []map[string]any
	for _, l := range g.layers {
		mt := g.layerType
		if mt == "" {
			mt, l = "application/vnd.oci.image.layer.v1.tar+gzip", gzipBytes(t, l)
		}
		d, s := blob(l)
		layers = append(layers, map[string]any{"mediaType": mt, "digest": d, "size": s})
	}
	md, ms := blob(mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
		"layers": layers,
	}))
	files["index.json"] = mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	})
	return files
}

// docker returns the image as a classic `docker save` archive's files.
func (g genImage) docker(t *testing.T, repoTag string) imageFiles {
	t.Helper()
	cfg, diffIDs := g.config(t)
	cfgName := sha(cfg)[len("sha256:"):] + ".json"
	files := imageFiles{cfgName: cfg}
	var layers []string
	for i, l := range g.layers {
		name := diffIDs[i][len("sha256:"):len("sha256:")+16] + "/layer.tar"
		files[name] = l
		layers = append(layers, name)
	}
	files["manifest.json"] = mustJSON(t, []map[string]any{{"Config": cfgName, "RepoTags": []string{repoTag}, "Layers": layers}})
	return files
}

// writeDir writes the files under dir, readable by all.
func (f imageFiles) writeDir(t *testing.T, dir string) string {
	t.Helper()
	for name, b := range f {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeTar writes the files as a tar archive at p, in name order.
func (f imageFiles) writeTar(t *testing.T, p string) string {
	t.Helper()
	var names []string
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(f[n])), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)})
		tw.Write(f[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// busyboxLayer is a layer with a working sh: the busybox binary of the
// shared rootfs and links to it.
func busyboxLayer(t *testing.T) []byte {
	t.Helper()
	bb, err := os.ReadFile(filepath.Join(rootfsDir, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	e := tFile("bin/busybox", string(bb))
	e.mode = 0o755
	return tarBytes(t, tDir("bin"), e, tSymlink("bin/sh", "busybox"), tSymlink("bin/cat", "busybox"),
		tSymlink("bin/echo", "busybox"), tSymlink("bin/ls", "busybox"), tSymlink("bin/true", "busybox"),
		tDir("etc"), tFile("etc/hello", "layer one\n"))
}
