package unpack

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOpenRootfs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		dir, want string
	}{
		{"", "no root filesystem given"},
		{filepath.Join(dir, "nope"), "does not exist"},
		{file, "not a directory"},
		{"/", "host's /"},
	} {
		// The flag, --rootfs or --image, is the caller's to name.
		if _, err := OpenRootfs(tc.dir, "/"); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "--") {
			t.Errorf("OpenRootfs(%q) = %v, want %q and no flag", tc.dir, err, tc.want)
		}
	}
	im, err := OpenRootfs(filepath.Base(dir), filepath.Dir(dir))
	if err != nil || im.Rootfs != dir {
		t.Fatalf("relative rootfs: %+v, %v", im, err)
	}
}

func TestReadFile(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/real"), []byte("x:1\n"), 0o644)
	// Symlinks resolve inside the rootfs, never to the host's files.
	os.Symlink("/etc/real", filepath.Join(root, "etc/abs"))
	os.Symlink("../../../../etc/real", filepath.Join(root, "etc/climb"))
	if err := syscall.Mkfifo(filepath.Join(root, "etc/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	im := &Image{Rootfs: root}
	for _, p := range []string{"/etc/real", "/etc/abs", "/etc/climb"} {
		if b, err := im.ReadFile(p); err != nil || string(b) != "x:1\n" {
			t.Errorf("ReadFile(%s) = %q, %v", p, b, err)
		}
	}
	if b, err := im.ReadFile("/etc/missing"); b != nil || err != nil {
		t.Errorf("missing file: %q, %v", b, err)
	}
	if _, err := im.ReadFile("/etc/fifo"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO was read or blocked: %v", err)
	}
	if !im.Exists("/etc/abs") || im.Exists("/etc/missing") {
		t.Error("Exists is wrong")
	}
}
