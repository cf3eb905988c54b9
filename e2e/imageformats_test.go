package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every format --image reads runs: an OCI archive, an OCI layout
// directory with DIR:TAG, a classic docker save, several layers with a
// whiteout, an opaque directory and a hardlink, and a plain rootfs dir.
func TestImageFormats(t *testing.T) {
	t.Parallel()
	needUserns(t)
	g := genImage{
		env: []string{"PATH=/bin", "FROM=generated"},
		layers: [][]byte{
			busyboxLayer(t),
			tarBytes(t, tFile("etc/.wh.hello", ""), tDir("opq"), tFile("opq/old", "old"), tFile("etc/second", "layer two\n"), tHardlink("etc/linked", "etc/second")),
			tarBytes(t, tDir("opq"), tFile("opq/.wh..wh..opq", ""), tFile("opq/new", "new\n")),
		},
	}
	dir := tempDirOwned(t)
	script := `echo $FROM; ls /opq; cat /etc/second /etc/linked; test -e /etc/hello && echo whiteout-failed; true`
	want := "generated\nnew\nlayer two\nlayer two\n"
	for _, tc := range []struct{ name, ref string }{
		{"oci archive", g.oci(t, "v1").writeTar(t, filepath.Join(dir, "oci.tar"))},
		{"oci archive with tag", g.oci(t, "v1").writeTar(t, filepath.Join(dir, "oci-tag.tar")) + ":v1"},
		{"oci layout dir with tag", g.oci(t, "v1").writeDir(t, filepath.Join(dir, "layout")) + ":v1"},
		{"docker save", g.docker(t, "gen:latest").writeTar(t, filepath.Join(dir, "docker.tar"))},
		{"docker save with tag", g.docker(t, "gen:latest").writeTar(t, filepath.Join(dir, "docker-tag.tar")) + ":gen:latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(tempDirOwned(t), "cache")
			r := mustRun(t, opts{}, "-q", "--cache", cache, "--image", tc.ref, "sh", "-c", script)
			if r.stdout != want {
				t.Errorf("got %q, want %q\n%s", r.stdout, want, r)
			}
		})
	}
	t.Run("plain rootfs dir", func(t *testing.T) {
		r := mustRun(t, opts{}, "-q", "--image", rootfsDir, "sh", "-c", "echo plain")
		if r.stdout != "plain\n" {
			t.Errorf("%s", r)
		}
	})
}

// Broken and hostile images: one line, exit 125, no cache entry, and
// nothing written outside the cache.
func TestHostileImages(t *testing.T) {
	t.Parallel()
	needUserns(t)
	dir := tempDirOwned(t)
	canary := filepath.Join(tempDirOwned(t), "canary")
	if err := os.Mkdir(canary, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(canary, 0o777)
	good := genImage{env: []string{"PATH=/bin"}, layers: [][]byte{busyboxLayer(t)}}
	oci := func(name string, g genImage, breakIt func(imageFiles)) string {
		f := g.oci(t, "v1")
		if breakIt != nil {
			breakIt(f)
		}
		return f.writeTar(t, filepath.Join(dir, name))
	}
	layerOf := func(f imageFiles) string { // the one gzip layer's blob name
		for n, b := range f {
			if strings.HasPrefix(n, "blobs/") && len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
				return n
			}
		}
		t.Fatal("no layer")
		return ""
	}
	for _, tc := range []struct {
		name, ref, want string
	}{
		{"missing blob", oci("missing.tar", good, func(f imageFiles) { delete(f, layerOf(f)) }), "missing"},
		{"invalid json", oci("badjson.tar", good, func(f imageFiles) { f["index.json"] = []byte(`{"manifests": [`) }), "index.json"},
		{"unsupported media type", oci("mediatype.tar", genImage{layers: good.layers, layerType: "application/vnd.example.layer.v1+rar"}, nil), "application/vnd.example.layer.v1+rar"},
		{"digest mismatch", oci("flipped.tar", genImage{layers: good.layers, layerType: "application/vnd.oci.image.layer.v1.tar"}, func(f imageFiles) {
			for n, b := range f { // the layer: the one blob that is a tar
				if len(b) > 512 && string(b[257:262]) == "ustar" {
					f[n] = append([]byte(nil), b...)
					f[n][len(b)/2] ^= 0xff // inside busybox's bytes: the tar still reads
				}
			}
		}), "digest mismatch"},
		{"whiteout climbing out", oci("whiteout.tar", genImage{layers: [][]byte{busyboxLayer(t), tarBytes(t, tFile(".wh...", ""))}}, nil), "whiteout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(tempDirOwned(t), "cache")
			checkRefused(t, run(t, opts{}, "-q", "--cache", cache, "--image", tc.ref, "true"), tc.want, cache)
		})
	}

	// Escapes that umoci neutralises: the image runs, the host is untouched.
	escape := genImage{env: []string{"PATH=/bin"}, layers: [][]byte{
		busyboxLayer(t),
		tarBytes(t, tFile("../../../../.."+canary+"/dotdot", "x"), tFile(canary+"/absolute", "x"),
			tSymlink("out", canary), tSymlink("rel", "../../../../../../.."+canary)),
		tarBytes(t, tFile("out/through-symlink", "x"), tFile("rel/through-relative", "x")),
	}}
	cache := filepath.Join(tempDirOwned(t), "cache")
	r := mustRun(t, opts{}, "-q", "--cache", cache, "--image", oci("escape.tar", escape, nil), "true")
	if ents, _ := os.ReadDir(canary); len(ents) != 0 {
		t.Errorf("the image wrote outside the cache: %v (%s)", ents, r)
	}
	// They land under the rootfs instead, where the names lead once
	// clamped to it.
	images, _ := cacheEntries(t, cache)
	if len(images) != 1 {
		t.Fatalf("cache images: %v", images)
	}
	inside := filepath.Join(cache, "images", images[0], "rootfs", canary)
	for _, name := range []string{"dotdot", "absolute", "through-symlink", "through-relative"} {
		if _, err := os.Lstat(filepath.Join(inside, name)); err != nil {
			t.Errorf("%s is not under the rootfs: %v", name, err)
		}
	}
}

// On a terminal, an unpack draws a progress bar (bytes, layer and rate);
// in a batch log (TestPythonImage) it writes a line per phase instead.
func TestUnpackProgressBar(t *testing.T) {
	t.Parallel()
	needUserns(t)
	g := genImage{env: []string{"PATH=/bin"}, layers: [][]byte{busyboxLayer(t), tarBytes(t, tFile("etc/two", "2"))}}
	image := g.oci(t, "v1").writeTar(t, filepath.Join(tempDirOwned(t), "bar.tar"))
	cache := filepath.Join(tempDirOwned(t), "cache")
	ctx, cancel := context.WithTimeout(context.Background(), defaultCmdTimeout)
	defer cancel()
	term := startOnTerminal(t, command(ctx, opts{}, binPath, "--cache", cache, "--image", image, "sh", "-c", "echo job-ran"))
	term.waitFor("job-ran")
	if code, err := term.wait(); code != 0 {
		t.Fatalf("exit %d (%v): %q", code, err, term.out.String())
	}
	out := term.out.String()
	for _, want := range []string{"\rhpcrun: layer 1/2", "\rhpcrun: layer 2/2 100%", "MiB/s", "unpacking " + image} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q on the terminal: %q", want, out)
		}
	}
	if strings.Contains(out, "layer 1/2 sha256:") {
		t.Errorf("the per-layer lines of a batch log reached the terminal: %q", out)
	}
}

// spec --image unpacks the image (or finds it) and prints a config whose
// root is the cached rootfs and whose args and env come from the image.
func TestSpecImage(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t, `MKIMAGE_ENTRYPOINT=["sh","-c"]`, `MKIMAGE_CMD=["echo from-spec"]`)
	cache := filepath.Join(tempDirOwned(t), "cache")
	r := mustRun(t, opts{}, "spec", "-q", "--cache", cache, "--image", image)
	var spec struct {
		Process struct {
			Args []string `json:"args"`
			Env  []string `json:"env"`
		} `json:"process"`
		Root struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	images, _ := cacheEntries(t, cache)
	if len(images) != 1 || spec.Root.Path != filepath.Join(cache, "images", images[0], "rootfs") {
		t.Errorf("root.path %q, cache images %v", spec.Root.Path, images)
	}
	if strings.Join(spec.Process.Args, " ") != "sh -c echo from-spec" {
		t.Errorf("args %q, want the image's Entrypoint and Cmd", spec.Process.Args)
	}
	if !slices.Contains(spec.Process.Env, "IMAGE_VAR=from-image") {
		t.Errorf("env %q lacks the image's IMAGE_VAR", spec.Process.Env)
	}
}
