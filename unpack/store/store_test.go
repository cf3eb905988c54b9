package store

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testUID = 65534

func TestDefaultDir(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "/var/tmp/hpcrun-1234"},
		{[]string{"HOME=/home/u", "HPCRUN_CACHE="}, "/var/tmp/hpcrun-1234"},
		{[]string{"HPCRUN_CACHE=/scratch/c/"}, "/scratch/c"},
		{[]string{"HPCRUN_CACHE=/a", "HPCRUN_CACHE=/b"}, "/b"},
	} {
		if got := DefaultDir(tc.env, 1234); got != tc.want {
			t.Errorf("DefaultDir(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	old := unix.Umask(0)
	defer unix.Umask(old)
	c, err := Open(filepath.Join(dir, "a/b/cache"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range append([]string{""}, subdirs...) {
		fi, err := os.Stat(filepath.Join(c.Dir, sub))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", sub, fi.Mode(), err)
		}
	}
	if _, err := Open(c.Dir); err != nil {
		t.Errorf("reopen: %v", err)
	}
	os.Symlink(c.Dir, filepath.Join(dir, "link"))
	if _, err := Open(filepath.Join(dir, "link")); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlink: err = %v", err)
	}
	os.Mkdir(filepath.Join(dir, "open"), 0o777)
	if _, err := Open(filepath.Join(dir, "open")); err == nil || !strings.Contains(err.Error(), "written by others") {
		t.Errorf("mode 0777: err = %v", err)
	}
	if os.Getuid() == 0 {
		os.Mkdir(filepath.Join(dir, "theirs"), 0o700)
		os.Chown(filepath.Join(dir, "theirs"), testUID, testUID)
		if _, err := Open(filepath.Join(dir, "theirs")); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("another user's dir: err = %v", err)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{},
		{
			Ref: "/scratch/py3.tar:v1", Digest: Digest("sha256:" + strings.Repeat("ab", 32)), Platform: "linux/arm/v7",
			Unpacked: time.Date(2026, 11, 27, 6, 0, 0, 123, time.UTC),
			Config: ImageConfig{
				User: "1000:1000", WorkingDir: "/work",
				Env:        []string{"PATH=/usr/bin", "MULTI=a\nb=c", "EMPTY="},
				Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"", "echo 'x'"},
			},
		},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %#v\nwant %#v", got, m)
		}
	}
	if _, err := encodeMeta(Meta{Config: ImageConfig{Env: []string{"A=\x00"}}}); err == nil || !strings.Contains(err.Error(), "NUL byte in env") {
		t.Errorf("NUL in env: %v", err)
	}
	for _, bad := range []string{"", "{}", "hpcrun-image=2\x00", "hpcrun-image=1\x00ref=x", "hpcrun-image=1\x00norecord\x00"} {
		if _, err := decodeMeta([]byte(bad)); err == nil {
			t.Errorf("decodeMeta(%q) succeeded", bad)
		}
	}
}

func TestDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("0a", 32)
	for _, tc := range []struct {
		d  string
		ok bool
	}{
		{good, true},
		{"sha512:" + strings.Repeat("f", 128), true},
		{"sha256:" + strings.Repeat("0A", 32), false},
		{"sha256:" + strings.Repeat("0a", 31), false},
		{"md5:" + strings.Repeat("0a", 16), false},
		{strings.Repeat("0a", 32), false},
		{"sha256:../../etc", false},
	} {
		if err := Digest(tc.d).Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v", tc.d, err)
		}
	}
	d := Digest(good)
	if got, ok := ParseName(d.name()); !ok || got != d {
		t.Errorf("ParseName(%q) = %q, %v", d.name(), got, ok)
	}
	if _, ok := ParseName("sha256-../x"); ok {
		t.Error("ParseName accepted a path")
	}
	if d.Short() != "sha256:0a0a0a0a0a0a…" {
		t.Errorf("Short = %q", d.Short())
	}
}
