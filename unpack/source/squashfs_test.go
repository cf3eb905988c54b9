package source

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/hpcrun/hpcrun/internal/siftest"
)

// treeDir is a small root filesystem with what Apptainer puts in an
// image: a runscript, an environment script and labels.
func treeDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	for p, c := range map[string]string{
		"bin/hello":                            "#!/bin/sh\necho hello\n",
		".singularity.d/runscript":             "#!/bin/sh\nexec echo run \"$@\"\n",
		".singularity.d/env/90-environment.sh": "export PATH=/opt/bin:$PATH\n",
		".singularity.d/labels.json":           "{\"org.label-schema.name\": \"t\"}\n",
		"etc/big":                              strings.Repeat("0123456789abcdef", 1<<14),
	} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/bin/hello", filepath.Join(dir, "bin/abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "bin/hello"), filepath.Join(dir, "bin/hard")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readTree opens ref, resolves it and reads every entry, as the cache
// does: name -> type and content (or link target).
func readTree(t *testing.T, ref string) (*Resolved, map[string]string, error) {
	t.Helper()
	src, err := Open(ref)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	tree, ok := src.(Tree)
	if !ok {
		t.Fatalf("%s opened as %T, not a Tree", ref, src)
	}
	res, err := src.Resolve(Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		return nil, nil, err
	}
	ents, err := tree.Entries()
	if err != nil {
		return res, nil, err
	}
	defer ents.Close()
	got := map[string]string{}
	for {
		hdr, err := ents.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, got, err
		}
		b, err := io.ReadAll(ents)
		if err != nil {
			return res, got, err
		}
		got[hdr.Name] = fmt.Sprintf("%c %s%s", hdr.Typeflag, hdr.Linkname, b)
	}
	return res, got, nil
}

func TestSquashfsAndSIF(t *testing.T) {
	siftest.NeedMksquashfs(t)
	dir := treeDir(t)
	for _, comp := range []string{"gzip", "xz", "zstd", "lzma", "lz4", "lzo"} {
		t.Run(comp, func(t *testing.T) {
			out := t.TempDir()
			sq := filepath.Join(out, "img.squashfs")
			siftest.Squash(t, dir, sq, comp)
			sf := filepath.Join(out, "img.sif")
			siftest.SIF(t, sq, sf, siftest.Options{Signed: comp == "xz"})
			data, err := os.ReadFile(sq)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
			for _, ref := range []string{sq, sf} {
				res, got, err := readTree(t, ref)
				if err != nil {
					t.Fatalf("%s: %v", ref, err)
				}
				// The key is the squashfs's, so a SIF and its squashfs
				// share one cache entry.
				if string(res.ManifestDigest) != want {
					t.Errorf("%s: digest %s, want the squashfs's %s", ref, res.ManifestDigest, want)
				}
				if ep := res.Config.Config.Entrypoint; len(ep) != 1 || ep[0] != Runscript {
					t.Errorf("%s: Entrypoint %q, want the runscript", ref, ep)
				}
				for name, w := range map[string]string{
					"bin/":                                 "5 ",
					"bin/abs":                              "2 /bin/hello",
					".singularity.d/env/90-environment.sh": "0 export PATH=/opt/bin:$PATH\n",
					"etc/big":                              "0 " + strings.Repeat("0123456789abcdef", 1<<14),
				} {
					if got[name] != w {
						t.Errorf("%s: %s is %.40q, want %.40q", ref, name, got[name], w)
					}
				}
				// One of the two names of the hardlinked file is a link to
				// the other.
				const hello = "0 #!/bin/sh\necho hello\n"
				if h, l := got["bin/hard"], got["bin/hello"]; !(h == "1 bin/hello" && l == hello || l == "1 bin/hard" && h == hello) {
					t.Errorf("%s: hardlink lost: hard %q, hello %q", ref, h, l)
				}
			}
		})
	}
}

func TestTreeBadInput(t *testing.T) {
	siftest.NeedMksquashfs(t)
	dir := treeDir(t)
	out := t.TempDir()
	sq := filepath.Join(out, "img.squashfs")
	siftest.Squash(t, dir, sq, "gzip")
	mk := func(name string, o siftest.Options) string {
		p := filepath.Join(out, name)
		siftest.SIF(t, sq, p, o)
		return p
	}
	truncated := func(name string, from string, keep int) string {
		b, _ := os.ReadFile(from)
		p := filepath.Join(out, name)
		os.WriteFile(p, b[:keep], 0o644)
		return p
	}
	// patched is from with the 16-bit superblock field at off set to v.
	patched := func(name, from string, off int, v uint16) string {
		b, _ := os.ReadFile(from)
		b[off], b[off+1] = byte(v), byte(v>>8)
		p := filepath.Join(out, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	good := mk("good.sif", siftest.Options{})
	goodData, _ := os.ReadFile(good)
	for _, tc := range []struct {
		name, ref string
		sentinel  error
		want      string
	}{
		{"encrypted SIF", mk("enc.sif", siftest.Options{FS: sif.FsEncryptedSquashfs}), ErrUnsupported, "is an encrypted SIF image"},
		{"gocryptfs SIF", mk("gc.sif", siftest.Options{FS: sif.FsGocryptfsSquashfs}), ErrUnsupported, "is an encrypted SIF image"},
		{"SIF without a system partition", mk("data.sif", siftest.Options{NoSystem: true}), ErrUnsupported, "without a squashfs system partition (it holds FS)"},
		{"ext3 SIF", mk("ext3.sif", siftest.Options{FS: sif.FsExt3}), ErrUnsupported, "has a Ext3 system partition, not squashfs"},
		{"truncated squashfs", truncated("cut.squashfs", sq, 200), ErrInvalid, "is truncated: its squashfs takes"},
		{"squashfs cut in its superblock", truncated("tiny.squashfs", sq, 40), ErrInvalid, "less than a squashfs superblock"},
		{"truncated SIF", truncated("cut.sif", good, len(goodData)-100), ErrInvalid, "is truncated"},
		{"squashfs 3", patched("v3.squashfs", sq, 28, 3), ErrUnsupported, "a squashfs of version 3"},
		{"unknown compression", patched("c9.squashfs", sq, 20, 9), ErrUnsupported, "unknown squashfs compression 9"},
		{"a tag on a SIF", good + ":latest", ErrNoTag, "holds one image and no tags"},
		{"SIF for another architecture", mk("arm.sif", siftest.Options{Arch: "arm64"}), ErrNoPlatform, "is built for arm64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readTree2(tc.ref)
			if err == nil {
				t.Fatal("read it")
			}
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line with %q (%v)", err, tc.want, tc.sentinel)
			}
		})
	}
}

// readTree2 is readTree for a source that may not open as a tree.
func readTree2(ref string) (*Resolved, int, error) {
	src, err := Open(ref)
	if err != nil {
		return nil, 0, err
	}
	defer src.Close()
	res, err := src.Resolve(Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		return nil, 0, err
	}
	ents, err := src.(Tree).Entries()
	if err != nil {
		return res, 0, err
	}
	defer ents.Close()
	n := 0
	for {
		_, err := ents.Next()
		if err == io.EOF {
			return res, n, nil
		}
		if err != nil {
			return res, n, err
		}
		if _, err := io.Copy(io.Discard, ents); err != nil {
			return res, n, err
		}
		n++
	}
}

// TestTreeForged: a squashfs cannot hold "../" names, a name twice in a
// directory or a layer's whiteouts; one that does is forged, and is
// refused before anything is read.
func TestTreeForged(t *testing.T) {
	siftest.NeedMksquashfs(t)
	for _, tc := range []struct {
		name        string
		make        func(dir string)
		placeholder string
		hostile     string
		want        string
	}{
		{"dotdot", func(d string) { os.WriteFile(filepath.Join(d, "QQ"), nil, 0o644) }, "QQ", "..", `entry named ".."`},
		{"slashes", func(d string) { os.WriteFile(filepath.Join(d, "QQQQQQQQQQQQQQ"), nil, 0o644) }, "QQQQQQQQQQQQQQ", "../../../x/pwn", `which is no file name`},
		{"a name twice", func(d string) {
			os.Symlink("/tmp", filepath.Join(d, "linkA"))
			os.Mkdir(filepath.Join(d, "linkQ"), 0o755)
			os.WriteFile(filepath.Join(d, "linkQ", "pwn"), nil, 0o644)
		}, "linkQ", "linkA", `"linkA" twice`},
		{"a whiteout", func(d string) { os.WriteFile(filepath.Join(d, ".wh.etc"), nil, 0o644) }, "", "", "layers use for deletions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "root")
			os.Mkdir(dir, 0o755)
			tc.make(dir)
			sq := filepath.Join(t.TempDir(), "x.squashfs")
			siftest.Squash(t, dir, sq, "gzip", "-noI")
			if tc.placeholder != "" {
				siftest.Patch(t, sq, tc.placeholder, tc.hostile)
			}
			_, n, err := readTree2(sq)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid image, %q", err, tc.want)
			}
			if n != 0 {
				t.Errorf("%d entries read before the error", n)
			}
		})
	}
}

// TestTreeReadAhead: the entries read ahead come out in order whatever
// the caller reads of each (all, part, nothing), and Close stops the
// reading midway.
func TestTreeReadAhead(t *testing.T) {
	siftest.NeedMksquashfs(t)
	dir := filepath.Join(t.TempDir(), "root")
	os.Mkdir(dir, 0o755)
	content := func(i int) string { return strings.Repeat(fmt.Sprintf("file %d;", i), 100000*(i%3)+i) }
	const n = 12
	for i := range n {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), []byte(content(i)), 0o644)
	}
	sq := filepath.Join(t.TempDir(), "x.squashfs")
	siftest.Squash(t, dir, sq, "zstd")
	src, err := Open(sq)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Resolve(Platform{OS: "linux", Architecture: "amd64"}); err != nil {
		t.Fatal(err)
	}
	ents, err := src.(Tree).Entries()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		hdr, err := ents.Next()
		if err != nil || hdr.Name != fmt.Sprintf("f%02d", i) {
			t.Fatalf("entry %d: %v %v", i, hdr, err)
		}
		switch i % 4 {
		case 0, 1: // all of it
			b, err := io.ReadAll(ents)
			if err != nil || string(b) != content(i) {
				t.Fatalf("f%02d: %d bytes, %v; want %d", i, len(b), err, len(content(i)))
			}
		case 2: // part of it
			b := make([]byte, 1000)
			if k, err := io.ReadFull(ents, b); k != min(1000, len(content(i))) || (err != nil && err != io.ErrUnexpectedEOF) {
				t.Fatalf("f%02d: %d bytes, %v", i, k, err)
			}
		}
	}
	if _, err := ents.Next(); err != io.EOF {
		t.Errorf("after the last: %v", err)
	}
	ents.Close()

	// Closed midway, with the reading goroutine blocked on a full queue.
	ents, err = src.(Tree).Entries()
	if err != nil {
		t.Fatal(err)
	}
	ents.Next()
	done := make(chan struct{})
	go func() { ents.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
}
