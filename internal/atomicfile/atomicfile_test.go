package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{{"one", 0o600}, {"two", 0o644}} {
		if err := Write(p, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != tc.data || fi.Mode().Perm() != tc.perm {
			t.Errorf("after Write(%q, %o): %q %v, mode %v", tc.data, tc.perm, b, err, fi.Mode())
		}
	}
	// A link planted at the name is replaced, not written through.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if err := Write(link, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("written through the link: %q", b)
	}
	// A failure leaves nothing behind.
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("dir holds %d entries, want 3 (f, target, link)", len(ents))
	}
}
