package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/store"
)

func put(t *testing.T, dir string, b []byte) (string, int) {
	t.Helper()
	s := sha256.Sum256(b)
	h := hex.EncodeToString(s[:])
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", h), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + h, len(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// layout writes an OCI layout of one uncompressed layer, with labels and
// a creation time; it returns the dir, the manifest digest and the layer.
func layout(t *testing.T) (dir, manifest, layerPath string) {
	t.Helper()
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.Close()
	layer, lsize := put(t, dir, tb.Bytes())
	cfg, csize := put(t, dir, mustJSON(t, map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2024-05-01T12:00:00Z",
		"config": map[string]any{"Env": []string{"A=\x1b[2J"}, "Entrypoint": []string{"/bin/sh"}, "Cmd": []string{"-c", "true"},
			"WorkingDir": "/w", "User": "1000", "Labels": map[string]string{"org.example": "x\x1b]0;t\x07"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layer}},
	}))
	man, msize := put(t, dir, mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": csize},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": lsize}},
	}))
	os.WriteFile(filepath.Join(dir, "index.json"), mustJSON(t, map[string]any{
		"schemaVersion": 2, "manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man, "size": msize}},
	}), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir, man, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))
}

func request(t *testing.T, ref string) Request {
	s, err := store.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return Request{Ref: ref, Cache: s, Platform: unpack.Platform{OS: "linux", Architecture: "amd64"}}
}

// The manifest and config are read, the layer not at all: a layout whose
// layer blob is gone is still described.
func TestInspectLayout(t *testing.T) {
	dir, man, layer := layout(t)
	if err := os.Remove(layer); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(context.Background(), request(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != man || info.Platform != "linux/amd64" || info.Created == nil || info.Created.Year() != 2024 ||
		info.WorkingDir != "/w" || info.User != "1000" || strings.Join(info.Entrypoint, " ") != "/bin/sh" ||
		strings.Join(info.Cmd, " ") != "-c true" || info.Env[0] != "A=\x1b[2J" || info.Labels["org.example"] != "x\x1b]0;t\x07" ||
		info.Cached != nil || info.Partial {
		t.Errorf("Inspect = %+v", info)
	}
	if len(info.Layers) != 1 || info.Layers[0].Uncompressed == nil || *info.Layers[0].Uncompressed != info.Layers[0].Size || info.Size != info.Layers[0].Size {
		t.Errorf("layers: %+v, size %d", info.Layers, info.Size)
	}
}

// What cannot be described gets one line.
func TestInspectBad(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.tar")
	os.WriteFile(junk, []byte("not an image"), 0o644)
	for _, ref := range []string{filepath.Join(dir, "missing.tar"), junk, "abcdef123456", "docker://Bad Ref"} {
		_, err := Inspect(context.Background(), request(t, ref))
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("Inspect(%q) = %v; want one line", ref, err)
		}
	}
}

func TestIsDigest(t *testing.T) {
	for in, want := range map[string]bool{"sha256:abcdef": true, "abcdef12": true, "abcde": false, "py3.tar": false, "md5:abcdef": false} {
		if isDigest(in) != want {
			t.Errorf("isDigest(%q) = %v", in, !want)
		}
	}
}
