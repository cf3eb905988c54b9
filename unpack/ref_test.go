package unpack

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLocate(t *testing.T) {
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "img.tar")
	os.WriteFile(tarPath, []byte("x"), 0o644)
	colon := filepath.Join(dir, "odd:name.tar") // a path with a colon that exists as given
	os.WriteFile(colon, []byte("x"), 0o644)
	layout := filepath.Join(dir, "layout")
	os.Mkdir(layout, 0o755)
	os.WriteFile(filepath.Join(layout, "index.json"), []byte("{}"), 0o644)
	rootfs := filepath.Join(dir, "rootfs")
	os.Mkdir(rootfs, 0o755)
	os.Symlink("usr/bin", filepath.Join(rootfs, "bin"))
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	junk := filepath.Join(dir, "junk")
	os.Mkdir(junk, 0o755)
	os.WriteFile(filepath.Join(junk, "notes.txt"), []byte("x"), 0o644)
	for _, tc := range []struct {
		ref        string
		path, tag  string
		kind       Kind
		wantErr    error
		wantPathEr bool
	}{
		{ref: tarPath, path: tarPath, kind: Archive},
		{ref: tarPath + ":v1", path: tarPath, tag: "v1", kind: Archive},
		{ref: tarPath + ":alpine:3", path: tarPath, tag: "alpine:3", kind: Archive},
		{ref: colon, path: colon, kind: Archive},
		{ref: layout + ":latest", path: layout, tag: "latest", kind: Layout},
		{ref: layout, path: layout, kind: Layout},
		{ref: rootfs, path: rootfs, kind: Rootfs},
		{ref: rootfs + ":v1", wantErr: ErrNotImage},
		{ref: empty, wantErr: ErrNotImage},
		{ref: junk, wantErr: ErrNotImage},
		{ref: tarPath + ":", wantErr: ErrNoTag},
		{ref: "/dev/null", wantErr: ErrNotImage},
		{ref: filepath.Join(dir, "nope.tar"), wantPathEr: true},
		{ref: filepath.Join(dir, "nope.tar:v1"), wantPathEr: true},
	} {
		loc, err := Locate(tc.ref)
		var pe *fs.PathError
		switch {
		case tc.wantPathEr:
			if !errors.As(err, &pe) || pe.Path != tc.ref {
				t.Errorf("Locate(%q) = %v, want a PathError naming it", tc.ref, err)
			}
		case tc.wantErr != nil:
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Locate(%q) = %v, want %v", tc.ref, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("Locate(%q): %v", tc.ref, err)
		case loc.Path != tc.path || loc.Tag != tc.tag || loc.Kind != tc.kind || (tc.kind != Rootfs) != (loc.Key != ""):
			t.Errorf("Locate(%q) = %+v, want path %q tag %q kind %d", tc.ref, loc, tc.path, tc.tag, tc.kind)
		}
	}
}

// The key changes whenever the content may have: a new file, a rewrite
// in place even with the mtime set back (the ctime moves), another tag.
func TestLocateKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img.tar")
	os.WriteFile(p, []byte("one"), 0o644)
	key := func(ref string) string {
		t.Helper()
		loc, err := Locate(ref)
		if err != nil {
			t.Fatal(err)
		}
		return loc.Key
	}
	k := key(p)
	if key(p) != k {
		t.Fatal("the key of an unchanged file changed")
	}
	if key(p+":v1") == k {
		t.Error("a tag does not change the key")
	}
	fi, _ := os.Stat(p)
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(p, []byte("two"), 0o644) // same size, same inode
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	if key(p) == k {
		t.Error("a rewrite in place with the mtime set back keeps the key")
	}
	k = key(p)
	os.Rename(p, p+".old")
	os.WriteFile(p, []byte("two"), 0o644)
	if key(p) == k {
		t.Error("a new file under the same name keeps the key")
	}
}
