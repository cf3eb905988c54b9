package cache

import (
	"github.com/hpcrun/hpcrun/unpack/store"

	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ---- building layers ----

// layerEntry is one tar entry of a test layer.
type layerEntry struct {
	hdr  tar.Header
	body string
}

func lFile(name string, mode int64, body string) layerEntry {
	return layerEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body}
}
func lDir(name string, mode int64) layerEntry {
	return layerEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}
func lSymlink(name, target string) layerEntry {
	return layerEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}
func lHardlink(name, target string) layerEntry {
	return layerEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}
func lWhiteout(name string) layerEntry { return lFile(name, 0o644, "") }

// lTar returns the uncompressed tar of entries.
func lTar(t testing.TB, entries ...layerEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func lGzip(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func lZstd(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const (
	mtTar  = "application/vnd.oci.image.layer.v1.tar"
	mtGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
)

// ---- running as an unprivileged user ----

// The uid the rootless tests run as when the test itself runs as root.
const layerTestUID = 65534

const layerHelperEnv = "HPCRUN_UNPACK_TEST_HELPER"

// layerUserDir makes a directory the helper user owns, reachable by it.
func layerUserDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "unpack-test-") // not hpcrun*: e2e checks /tmp for those
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.RemoveTree(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	layerChown(t, dir)
	return dir
}

// layerChown gives p to the helper user when we are root.
func layerChown(t testing.TB, p string) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	if err := os.Lchown(p, layerTestUID, layerTestUID); err != nil {
		t.Fatal(err)
	}
}

// layerHelperCmd re-runs the test binary as the helper user (when root),
// running TestLayerHelperProcess in mode with args as JSON.
func layerHelperCmd(t testing.TB, dir, mode string, args any) *exec.Cmd {
	t.Helper()
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	// /proc/self/exe, because the go-build directory holding the test
	// binary is not searchable by the helper user.
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestLayerHelperProcess$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), layerHelperEnv+"="+mode, layerHelperEnv+"_ARGS="+string(a))
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: layerTestUID, Gid: layerTestUID}}
	}
	return cmd
}

// layerHelper runs a helper to its end and decodes what it wrote to out.
func layerHelper(t testing.TB, dir, mode string, args any, out string, result any) {
	t.Helper()
	cmd := layerHelperCmd(t, dir, mode, args)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, b)
	}
	rb, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("helper %s wrote no result: %v\n%s", mode, err, b)
	}
	if err := json.Unmarshal(rb, result); err != nil {
		t.Fatal(err)
	}
}

type layerApplyArgs struct {
	Root   string
	Layers []layerBlob
	Out    string
	Umoci  bool // umoci alone, without the fast path
}

type layerBlob struct {
	Path      string
	MediaType string
	DiffID    digest.Digest
}

type layerApplyResult struct {
	Errs       []string // one per layer, "" for success
	Unreadable []string // what the user cannot read afterwards
	VmHWM      int64    // the helper's peak RSS, KiB
	Fast       int      // entries the fast path took
	Redone     bool     // the fast path asked for umoci alone
}

// TestLayerHelperProcess is the child side of the tests that must run as
// another user or in another process. It does nothing in a normal run.
func TestLayerHelperProcess(t *testing.T) {
	mode := os.Getenv(layerHelperEnv)
	if mode == "" {
		t.Skip("helper for other tests")
	}
	args := os.Getenv(layerHelperEnv + "_ARGS")
	var err error
	switch mode {
	case "apply":
		err = layerHelperApply(args)
	default:
		err = cacheHelper(mode, args)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func layerHelperApply(args string) error {
	var a layerApplyArgs
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		return err
	}
	var res layerApplyResult
	// As the cache does: the fast path may ask to start again from an
	// empty root with umoci alone.
	umoci := a.Umoci
apply:
	res.Errs, res.Fast = nil, 0
	for _, l := range a.Layers {
		f, err := os.Open(l.Path)
		if err != nil {
			return err
		}
		comp, err := layerCompression(l.MediaType)
		if err == nil {
			var st layerStats
			err = applyLayer(a.Root, f, comp, l.DiffID, !umoci, &st)
			res.Fast += st.fast
		}
		f.Close()
		if IsUmociOnly(err) {
			if err := store.RemoveTree(a.Root); err != nil {
				return err
			}
			if err := os.Mkdir(a.Root, 0o700); err != nil {
				return err
			}
			umoci, res.Redone = true, true
			goto apply
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		res.Errs = append(res.Errs, msg)
	}
	res.VmHWM = layerVmHWM()
	res.Unreadable = layerUnreadable(a.Root)
	b, _ := json.Marshal(res)
	return os.WriteFile(a.Out, b, 0o644)
}

// layerVmHWM is this process's peak RSS in KiB, from /proc/self/status.
func layerVmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// layerUnreadable lists what the caller cannot read under root: files it
// cannot open, directories it cannot list or enter.
func layerUnreadable(root string) []string {
	var bad []string
	filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			bad = append(bad, p+": "+err.Error())
			return nil
		}
		switch {
		case de.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				bad = append(bad, p+": "+err.Error())
				return nil
			}
			f.Close()
		case de.IsDir():
			if err := unix.Access(p, unix.R_OK|unix.X_OK); err != nil {
				bad = append(bad, p+": "+err.Error())
			}
		}
		return nil
	})
	return bad
}

// layerApplyAsUser writes the layers to files and applies them in order, as
// the helper user, into root. It returns each layer's error ("" for none)
// and what the user could not read afterwards.
func layerApplyAsUser(t *testing.T, work, root string, layers ...layerBlobData) layerApplyResult {
	t.Helper()
	return layerApplyAsUserWith(t, false, work, root, layers...)
}

// layerApplyAsUserWith is layerApplyAsUser, with umoci alone when umoci is
// set.
func layerApplyAsUserWith(t *testing.T, umoci bool, work, root string, layers ...layerBlobData) layerApplyResult {
	t.Helper()
	a := layerApplyArgs{Root: root, Out: filepath.Join(work, "result.json"), Umoci: umoci}
	for i, l := range layers {
		p := filepath.Join(work, "layer"+string(rune('0'+i)))
		if err := os.WriteFile(p, l.data, 0o644); err != nil {
			t.Fatal(err)
		}
		a.Layers = append(a.Layers, layerBlob{Path: p, MediaType: l.mediaType, DiffID: l.diffID})
	}
	os.Remove(a.Out)
	var res layerApplyResult
	layerHelper(t, work, "apply", a, a.Out, &res)
	return res
}

type layerBlobData struct {
	data      []byte
	mediaType string
	diffID    digest.Digest
}

func layerPlain(t testing.TB, entries ...layerEntry) layerBlobData {
	b := lTar(t, entries...)
	return layerBlobData{b, mtTar, digest.FromBytes(b)}
}

func layerGz(t testing.TB, entries ...layerEntry) layerBlobData {
	b := lTar(t, entries...)
	return layerBlobData{lGzip(t, b), mtGzip, digest.FromBytes(b)}
}

func layerZst(t testing.TB, entries ...layerEntry) layerBlobData {
	b := lTar(t, entries...)
	return layerBlobData{lZstd(t, b), mtZstd, digest.FromBytes(b)}
}

// ---- what an image needs ----

// semanticsLayers are three layers with what images hold: every entry
// type, odd modes, other owners, whiteouts of each kind.
func semanticsLayers(t testing.TB) []layerBlobData {
	other := func(e layerEntry, uid, gid int) layerEntry { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
	l1 := layerPlain(t,
		lDir("./", 0o755),
		lDir("etc", 0o755),
		lFile("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
		lDir("bin", 0o755),
		lFile("bin/sh", 0o755, "#!sh"),
		lFile("bin/su", 0o4755, "su"),
		lFile("bin/sgid", 0o2755, "sgid"),
		lFile("bin/xonly", 0o111, "x"),
		lHardlink("bin/sh-hard", "bin/sh"),
		lSymlink("bin/abs", "/etc/passwd"),
		lSymlink("bin/rel", "../etc/passwd"),
		lSymlink("bin/climb", "../../../../../etc/passwd"),
		lFile("secret", 0o000, "only root reads this"),
		lDir("ro", 0o500),
		lFile("ro/f", 0o644, "in a 0500 dir"),
		lDir("none", 0o000),
		lFile("none/f", 0o600, "in a 0000 dir"),
		other(lDir("home/user", 0o700), 1000, 1000),
		other(lFile("home/user/f", 0o600, "user's"), 1000, 1000),
		layerEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		layerEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8}},
		layerEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o644}},
		lFile("del/keep", 0o644, "k"),
		lFile("del/gone", 0o644, "g"),
		lFile("opq/a", 0o644, "a"),
		lDir("opq/sub", 0o755),
		lFile("opq/sub/b", 0o644, "b"),
		lFile("whole/x", 0o644, "x"),
		lFile("ro2/x", 0o644, "x"),
	)
	l2 := layerGz(t,
		lWhiteout(".wh.whole"),
		lWhiteout("del/.wh.gone"),
		lWhiteout("opq/.wh..wh..opq"),
		lFile("opq/c", 0o644, "c"),
		lFile("etc/passwd", 0o644, "changed\n"),
		lFile("ro/g", 0o400, "added to a 0500 dir"),
		lDir("ro2", 0o500),
	)
	l3 := layerZst(t, lFile("ro2/y", 0o444, "y"), lFile("newfile", 0o644, "new"))
	return []layerBlobData{l1, l2, l3}
}

func TestApplyLayerSemantics(t *testing.T) {
	base := layerUserDir(t)
	root := filepath.Join(base, "rootfs")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	layerChown(t, root)

	res := layerApplyAsUser(t, base, root, semanticsLayers(t)...)
	for i, e := range res.Errs {
		if e != "" {
			t.Errorf("layer %d: %s", i+1, e)
		}
	}
	if len(res.Unreadable) > 0 {
		t.Errorf("the user cannot read: %q", res.Unreadable)
	}

	p := func(s string) string { return filepath.Join(root, s) }
	exists := func(s string) bool { _, err := os.Lstat(p(s)); return err == nil }
	for _, s := range []string{"whole", "del/gone", "opq/a", "opq/sub"} {
		if exists(s) {
			t.Errorf("%s survived its whiteout", s)
		}
	}
	for _, s := range []string{"del/keep", "opq/c", "opq", "newfile", "ro/f", "ro/g", "ro2/x", "ro2/y"} {
		if !exists(s) {
			t.Errorf("%s is missing", s)
		}
	}
	if b, _ := os.ReadFile(p("etc/passwd")); string(b) != "changed\n" {
		t.Errorf("etc/passwd = %q", b)
	}
	var a, b unix.Stat_t
	unix.Lstat(p("bin/sh"), &a)
	unix.Lstat(p("bin/sh-hard"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("bin/sh-hard is not a hardlink of bin/sh (inodes %d %d, nlink %d)", a.Ino, b.Ino, a.Nlink)
	}
	for name, want := range map[string]string{"bin/abs": "/etc/passwd", "bin/rel": "../etc/passwd", "bin/climb": "../../../../../etc/passwd"} {
		if got, err := os.Readlink(p(name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", name, got, err, want)
		}
	}
	mode := func(s string) fs.FileMode {
		fi, err := os.Lstat(p(s))
		if err != nil {
			t.Error(err)
			return 0
		}
		return fi.Mode()
	}
	if m := mode("bin/su"); m&fs.ModeSetuid == 0 || m.Perm() != 0o755 {
		t.Errorf("bin/su mode %v, want setuid 0755", m)
	}
	if m := mode("bin/sgid"); m&fs.ModeSetgid == 0 {
		t.Errorf("bin/sgid mode %v, want setgid", m)
	}
	if m := mode("bin/xonly"); m.Perm() != 0o511 {
		t.Errorf("bin/xonly mode %v, want 0511 (u+r added)", m)
	}
	if m := mode("secret"); m.Perm() != 0o400 {
		t.Errorf("secret mode %v, want 0400", m)
	}
	if m := mode("ro"); m.Perm() != 0o700 {
		t.Errorf("ro mode %v, want 0700", m)
	}
	if m := mode("dev/null"); !m.IsRegular() {
		t.Errorf("dev/null mode %v, want a regular placeholder", m)
	}
	if m := mode("dev/sda"); !m.IsRegular() {
		t.Errorf("dev/sda mode %v, want a regular placeholder", m)
	}
	if m := mode("fifo"); m&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo mode %v", m)
	}
	// Rootless: everything belongs to the caller, the image's owner is in
	// an xattr.
	var st unix.Stat_t
	if err := unix.Lstat(p("home/user/f"), &st); err != nil {
		t.Fatal(err)
	}
	wantUID := uint32(os.Getuid())
	if wantUID == 0 {
		wantUID = layerTestUID
	}
	if st.Uid != wantUID {
		t.Errorf("home/user/f owned by %d, want the caller %d", st.Uid, wantUID)
	}
	if _, err := unix.Lgetxattr(p("home/user/f"), "user.rootlesscontainers", make([]byte, 64)); err != nil {
		t.Errorf("home/user/f has no user.rootlesscontainers xattr: %v", err)
	}
	if _, err := unix.Lgetxattr(p("etc/passwd"), "user.rootlesscontainers", make([]byte, 64)); err == nil {
		t.Errorf("etc/passwd, owned by root, got a user.rootlesscontainers xattr")
	}
	// The tree can be deleted by its owner (the cache's Remove does that).
	if err := store.RemoveTree(root); err != nil {
		t.Error(err)
	}
}

func TestApplyLayerDigests(t *testing.T) {
	root := t.TempDir()
	tarb := lTar(t, lFile("a", 0o644, "a"))
	// Padding after the end-of-archive marker is part of the diff_id: the
	// check passes only if the stream is drained.
	padded := append(append([]byte{}, tarb...), make([]byte, 64<<10)...)
	for _, tc := range []struct {
		name, mt string
		blob     []byte
		diffID   digest.Digest
		wantErr  string
	}{
		{"padded tar", mtTar, padded, digest.FromBytes(padded), ""},
		{"padded gzip", mtGzip, lGzip(t, padded), digest.FromBytes(padded), ""},
		{"padded zstd", mtZstd, lZstd(t, padded), digest.FromBytes(padded), ""},
		{"docker gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip", lGzip(t, tarb), digest.FromBytes(tarb), ""},
		{"wrong diff_id", mtGzip, lGzip(t, tarb), digest.FromString("x"), "diff_id"},
		{"gzip as tar", mtTar, lGzip(t, tarb), "", "read tar"},
		{"tar as gzip", mtGzip, tarb, "", "gzip"},
		{"truncated gzip", mtGzip, lGzip(t, tarb)[:40], "", "unexpected EOF"},
		{"garbage after gzip", mtGzip, append(lGzip(t, tarb), "garbage"...), "", "gzip"},
		{"unknown media type", "application/vnd.oci.image.layer.v1.tar+bzip2", tarb, "", "unsupported layer media type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ApplyLayer(filepath.Join(root, strings.ReplaceAll(tc.name, " ", "-")), bytes.NewReader(tc.blob), tc.mt, tc.diffID)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// layerEOFErrReader fails at EOF, as a source.Source's blob reader does on a
// digest mismatch.
type layerEOFErrReader struct {
	r   io.Reader
	err error
}

func (r *layerEOFErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		return n, r.err
	}
	return n, err
}

func TestApplyLayerBlobErrorAtEOF(t *testing.T) {
	tarb := lTar(t, lFile("a", 0o644, "a"))
	blobErr := errors.New("layer sha256:0123 of img.tar: digest mismatch")
	for _, mt := range []string{mtTar, mtGzip} {
		blob := tarb
		if mt == mtGzip {
			blob = lGzip(t, tarb)
		}
		// The tar reader stops at the end-of-archive marker, before the
		// EOF: only the drain reaches the error.
		err := ApplyLayer(t.TempDir(), &layerEOFErrReader{bytes.NewReader(blob), blobErr}, mt, digest.FromBytes(tarb))
		if !errors.Is(err, blobErr) {
			t.Errorf("%s: err = %v, want the blob's digest error", mt, err)
		}
	}
}

// layerBenchTar is a 64 MiB layer: 6144 files of 4 KiB in 96 directories
// and five of 8 MiB, of text that gzip compresses to about 3/4.
func layerBenchTar(b *testing.B) []byte {
	rng := mrand.New(mrand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n"
	text := func(n int) string {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(buf)
	}
	var es []layerEntry
	for d := range 96 {
		dir := fmt.Sprintf("usr/lib/d%02d", d)
		es = append(es, lDir(dir, 0o755))
		for f := range 64 {
			es = append(es, lFile(fmt.Sprintf("%s/f%02d.py", dir, f), 0o644, text(4<<10)))
		}
	}
	for f := range 5 {
		es = append(es, lFile(fmt.Sprintf("usr/share/big%d", f), 0o644, text(8<<20)))
	}
	return lTar(b, es...)
}

// BenchmarkUnpackGzipLayer reports the throughput of ApplyLayer (MB/s of
// uncompressed layer), beside one `tar -xzf` of the same blob, and the
// peak RSS of a process that does nothing but one such unpack.
func BenchmarkUnpackGzipLayer(b *testing.B) {
	tarb := layerBenchTar(b)
	gz := lGzip(b, tarb)
	diffID := digest.FromBytes(tarb)
	dir := layerUserDir(b)
	blob := filepath.Join(dir, "layer.tar.gz")
	if err := os.WriteFile(blob, gz, 0o644); err != nil {
		b.Fatal(err)
	}
	// The floor: GNU tar, which runs gzip in a second process. It runs
	// before each of our unpacks, with the timer stopped, because this
	// disk's speed drifts (see the unpack notes in DESIGN.md).
	_, tarErr := exec.LookPath("tar")
	var tarTime time.Duration
	b.SetBytes(int64(len(tarb)))
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		if tarErr == nil {
			b.StopTimer()
			root := filepath.Join(dir, fmt.Sprint("tar", i))
			os.Mkdir(root, 0o755)
			start := time.Now()
			if out, err := exec.Command("tar", "-xzf", blob, "-C", root).CombinedOutput(); err != nil {
				b.Fatalf("tar: %v\n%s", err, out)
			}
			tarTime += time.Since(start)
			b.StartTimer()
		}
		f, err := os.Open(blob)
		if err != nil {
			b.Fatal(err)
		}
		if err := ApplyLayer(filepath.Join(dir, fmt.Sprint("root", i)), f, mtGzip, diffID); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	b.StopTimer()
	if tarErr == nil {
		b.ReportMetric(float64(len(tarb))*float64(i)/1e6/tarTime.Seconds(), "tar-xzf-MB/s")
	}

	// Peak RSS: one unpack in a fresh process (as the helper user when
	// root), read from its rusage.
	work := filepath.Join(dir, "rss")
	os.Mkdir(work, 0o755)
	layerChown(b, work)
	a := layerApplyArgs{Root: filepath.Join(work, "root"), Out: filepath.Join(work, "out.json"),
		Layers: []layerBlob{{Path: blob, MediaType: mtGzip, DiffID: diffID}}}
	cmd := layerHelperCmd(b, work, "apply", a)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("helper: %v\n%s", err, out)
	}
	var res layerApplyResult
	rb, _ := os.ReadFile(a.Out)
	json.Unmarshal(rb, &res)
	if len(res.Errs) != 1 || res.Errs[0] != "" {
		b.Fatalf("helper unpack: %q", res.Errs)
	}
	// Not the child's rusage: Go starts it with CLONE_VM, so its ru_maxrss
	// is this process's peak.
	b.ReportMetric(float64(res.VmHWM)/1024, "peak-RSS-MiB")
}
