package store

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testUID = 65534

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
	// Parents that someone else could swap the cache in.
	os.Mkdir(filepath.Join(dir, "shared"), 0o777)
	if _, err := Open(filepath.Join(dir, "shared/cache")); err == nil || !strings.Contains(err.Error(), "cache parent "+filepath.Join(dir, "shared")+" can be written by others") {
		t.Errorf("cache in a 0777 dir: err = %v", err)
	}
	os.Mkdir(filepath.Join(dir, "sticky"), 0o777|os.ModeSticky)
	os.Chmod(filepath.Join(dir, "sticky"), 0o777|os.ModeSticky)
	if _, err := Open(filepath.Join(dir, "sticky/cache")); err != nil {
		t.Errorf("cache in a sticky dir like /tmp: %v", err)
	}
	os.Symlink(filepath.Join(dir, "shared"), filepath.Join(dir, "via-link"))
	if _, err := Open(filepath.Join(dir, "via-link/cache")); err == nil || !strings.Contains(err.Error(), "can be written by others") {
		t.Errorf("cache under a symlink to a 0777 dir: err = %v", err)
	}
	if os.Getuid() == 0 {
		os.Mkdir(filepath.Join(dir, "their-parent"), 0o755)
		os.Chown(filepath.Join(dir, "their-parent"), testUID, testUID)
		if _, err := Open(filepath.Join(dir, "their-parent/cache")); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("cache in another user's dir: err = %v", err)
		}
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
			Unpacked: time.Date(2026, 11, 27, 6, 0, 0, 123, time.UTC), Boot: "dfa1bc7e-3d39-4362-84ea-568cc8b04a4d",
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

// publish puts an image with an empty rootfs into s, as an unpack does.
func publish(t *testing.T, s *Store, m Meta) {
	t.Helper()
	tmp, err := os.MkdirTemp(s.TmpDir(), TmpPrefix(m.Digest))
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(tmp, "rootfs"), 0o700)
	if err := s.Publish(tmp, m); err != nil {
		t.Fatal(err)
	}
}

// An image from before a reboot is trusted only once it was known to be
// on disk: a Lookup a minute after the unpack syncs and marks it.
func TestSyncedAcrossBoots(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	d := func(c string) Digest { return Digest("sha256:" + strings.Repeat(c, 64)) }
	publish(t, s, Meta{Digest: d("a"), Boot: "an-earlier-boot", Unpacked: time.Now()})
	if _, err := s.Load(d("a")); !errors.Is(err, ErrUnsynced) {
		t.Errorf("an unsynced image of an earlier boot: Load = %v, want ErrUnsynced", err)
	}
	os.WriteFile(filepath.Join(s.ImageDir(d("a")), syncedFile), nil, 0o600)
	if _, err := s.Load(d("a")); err != nil {
		t.Errorf("a synced image of an earlier boot: %v", err)
	}

	// This boot: fresh, then old enough to be synced by a lookup.
	publish(t, s, Meta{Digest: d("b"), Boot: BootID(), Unpacked: time.Now()})
	s.Remember("key", "linux/amd64", d("b"))
	if _, err := s.Lookup("key", "linux/amd64"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.ImageDir(d("b")), syncedFile)); err == nil {
		t.Error("a fresh image was marked synced")
	}
	publish(t, s, Meta{Digest: d("c"), Boot: BootID(), Unpacked: time.Now().Add(-2 * syncAfter)})
	s.Remember("key", "linux/amd64", d("c"))
	if _, err := s.Lookup("key", "linux/amd64"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.ImageDir(d("c")), syncedFile)); err != nil {
		t.Errorf("an image unpacked minutes ago was not marked synced: %v", err)
	}
}

func TestSweepCopies(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	old, fresh, other := filepath.Join(s.TmpDir(), CopyPrefix+"old"), filepath.Join(s.TmpDir(), CopyPrefix+"new"), filepath.Join(s.TmpDir(), "sha256-x.1.2")
	for _, p := range []string{old, fresh, other} {
		os.WriteFile(p, []byte("x"), 0o700)
	}
	then := time.Now().Add(-2 * time.Minute)
	os.Chtimes(old, then, then)
	os.Chtimes(other, then, then)
	if _, err := s.Prune(time.Hour); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// TestSweepTmp: Prune removes what a killed unpack or removal left in tmp/,
// and a damaged tree set aside once its jobs have ended, but never an
// entry that an unpack or removal is working on (its digest's lock is
// held), nor one that jobs may still run on (held shared).
func TestSweepTmp(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	d := func(c string) Digest { return Digest("sha256:" + strings.Repeat(c, 64)) }
	publish(t, s, Meta{Digest: d("c"), Boot: BootID(), Unpacked: time.Now()})
	s.Touch(d("c")) // used just now: Prune keeps it
	publish(t, s, Meta{Digest: d("e"), Boot: BootID(), Unpacked: time.Now()})
	s.Touch(d("e"))
	job, err := s.Hold(d("c")) // a job runs on c, maybe on its tree set aside
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	entry := func(dg Digest, rest string) string {
		p := filepath.Join(s.TmpDir(), dg.name()+"."+rest)
		if err := os.MkdirAll(filepath.Join(p, "rootfs", "ro"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(p, "rootfs", "ro"), 0o500) // RemoveTree copes
		return p
	}
	stale := entry(d("a"), "1.x")
	staleToo := entry(d("a"), "2.y")
	working := entry(d("b"), "3.z")
	published := entry(d("c"), "4.w")
	setAside := entry(d("e"), "6.v") // no job left on it
	other := filepath.Join(s.TmpDir(), "not-a-digest.5")
	os.Mkdir(other, 0o700)
	// An unpack of b is under way: it holds b's lock.
	lock, err := os.OpenFile(s.LockPath(d("b")), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := Flock(lock, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(time.Hour); err != nil {
		t.Fatal(err)
	}
	for p, kept := range map[string]bool{stale: false, staleToo: false, working: true, published: true, setAside: false, other: true} {
		if _, err := os.Stat(p); (err == nil) != kept {
			t.Errorf("%s: there %v, want %v", filepath.Base(p), err == nil, kept)
		}
	}
	// The unpacker of b holds its lock: it clears its own entries.
	s.SweepTmp(d("b"))
	if _, err := os.Stat(working); err == nil {
		t.Errorf("SweepTmp of the held digest left %s", filepath.Base(working))
	}
}
