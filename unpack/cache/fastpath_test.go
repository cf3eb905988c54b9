package cache

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"github.com/hpcrun/hpcrun/internal/treesnap"
)

// The fast path must build the tree umoci builds, entry for entry, and
// must actually take the common entries. Each case is applied as the
// unprivileged user twice, with the fast path and with umoci alone.
func TestFastPathMatchesUmoci(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB: several writes
	owned := func(e layerEntry, uid, gid int) layerEntry { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
	xattr := func(e layerEntry, k, v string) layerEntry {
		e.hdr.PAXRecords = map[string]string{"SCHILY.xattr." + k: v}
		return e
	}
	at := func(e layerEntry, sec int64) layerEntry { e.hdr.ModTime = time.Unix(sec, 0); return e }
	cases := []struct {
		name   string
		layers func() []layerBlobData
		redo   bool // the fast path must ask for umoci alone
		noFast bool // nothing for the fast path to take
		// umoci leaves the mtime of a directory in which it makes a
		// missing parent of an entry at the time of the unpack; the fast
		// path puts back the header's. Directory mtimes are not compared
		// in the cases that have such entries.
		looseDirTimes bool
	}{
		{"every kind of entry", func() []layerBlobData { return semanticsLayers(t) }, false, false, true},
		{"a plain tree", func() []layerBlobData {
			return []layerBlobData{layerGz(t,
				lDir("usr", 0o755), lDir("usr/bin", 0o755), lFile("usr/bin/py", 0o755, big),
				lFile("usr/bin/empty", 0o644, ""), lSymlink("usr/bin/python3", "py"),
				lHardlink("usr/bin/py-hard", "usr/bin/py"), lHardlink("usr/bin/py-hard2", "/usr/bin/py-hard"),
				lDir("usr/lib", 0o755), at(lFile("usr/lib/a.py", 0o644, "a"), 1500000000),
				lFile("usr/lib/noparent/x", 0o644, "its directory has no entry"),
				lFile("usr/lib/noparent/y", 0o644, "y"),
				lFile("/abs/olute", 0o644, "absolute name"), lFile("./dot/../slash", 0o644, "cleaned"),
				lFile("name\nwith newline", 0o644, "nl"),
				lDir("var/tmp", 0o1777), lFile("var/tmp/in-sticky", 0o600, "s"),
				lDir("ro", 0o500), lFile("ro/f", 0o444, "f"), lDir("ro/sub", 0o555),
			)}
		}, false, false, true},
		{"a second layer adds, replaces and deletes", func() []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lDir("usr", 0o755), lDir("usr/lib", 0o755), lFile("usr/lib/old", 0o644, "old"),
					lFile("usr/lib/gone", 0o644, "g"), lDir("usr/lib/pkg", 0o755), lFile("usr/lib/pkg/f", 0o644, "f"),
					lDir("dir2link", 0o755), lFile("dir2link/f", 0o644, "f"), lSymlink("link2dir", "usr")),
				layerGz(t, at(lDir("usr", 0o700), 1400000000), lDir("usr/lib", 0o755),
					lDir("usr/lib/numpy", 0o755), lFile("usr/lib/numpy/core.so", 0o755, big), lDir("usr/lib/numpy/sub", 0o755),
					lFile("usr/lib/numpy/sub/x.py", 0o644, "x"), lHardlink("usr/lib/numpy/old-link", "usr/lib/old"),
					lFile("usr/lib/old", 0o600, "replaced"), lWhiteout("usr/lib/.wh.gone"),
					lWhiteout("usr/lib/pkg/.wh..wh..opq"), lFile("usr/lib/pkg/new", 0o644, "n"),
					lSymlink("dir2link", "usr/lib"), lDir("link2dir", 0o755), lFile("link2dir/f", 0o644, "f")),
			}
		}, false, false, false},
		{"a directory becomes a symlink later in its layer", func() []layerBlobData {
			return []layerBlobData{layerPlain(t, lDir("a", 0o755), lFile("a/f", 0o644, "f"), lDir("b", 0o755),
				lSymlink("a", "b"), lFile("a/g", 0o644, "written through the new link"), lDir("a", 0o755), lFile("a/h", 0o644, "h"))}
		}, false, false, false},
		{"a whiteout after entries of its own layer", func() []layerBlobData {
			return []layerBlobData{layerPlain(t, lDir("d", 0o755), lFile("d/f", 0o644, "f"), lWhiteout("d/.wh.f"),
				lWhiteout("d/.wh..wh..opq"), lDir("e", 0o755), lWhiteout(".wh.e"))}
		}, false, false, false},
		{"an opaque whiteout above a directory the layer made", func() []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lDir("top", 0o755), lFile("top/lower", 0o644, "l"), lDir("top/sub", 0o755), lFile("top/sub/lower", 0o644, "l")),
				layerPlain(t, lDir("top/sub/new", 0o755), lFile("top/sub/new/f", 0o644, "f"), lWhiteout("top/.wh..wh..opq"), lFile("top/after", 0o644, "a")),
			}
		}, true, false, false},
		{"a whiteout through a symlink the layer made", func() []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lDir("lower", 0o755), lFile("lower/x", 0o644, "x")),
				layerPlain(t, lDir("fresh", 0o755), lSymlink("fresh/l", "../lower"), lWhiteout("fresh/l/.wh.x")),
			}
		}, true, false, false},
		{"owners, xattrs and duplicates", func() []layerBlobData {
			return []layerBlobData{layerPlain(t, lDir("d", 0o755),
				owned(lFile("d/owned", 0o644, "o"), 1000, 100), owned(lDir("d/odir", 0o755), 0, 50),
				lFile("d/in-odir-parent", 0o644, "p"), lFile("d/odir/f", 0o644, "f"),
				xattr(lFile("d/xattr", 0o644, "x"), "user.test", "v"),
				lFile("d/dup", 0o644, "first"), lFile("d/dup", 0o755, "second"),
				lDir("d/dupdir", 0o755), lFile("d/dupdir/f", 0o644, "f"), lDir("d/dupdir", 0o700),
				lSymlink("d/sl", "dup"), lHardlink("d/hl-to-symlink", "d/sl"),
			)}
		}, false, false, false},
		{"a hardlink to nothing", func() []layerBlobData {
			return []layerBlobData{layerPlain(t, lDir("d", 0o755), lFile("d/f", 0o644, "f"), lHardlink("d/hl", "d/nothing"))}
		}, false, false, false},
		{"a layer on an image root with an entry for the root", func() []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lFile("f", 0o644, "f")),
				layerPlain(t, at(lDir("./", 0o750), 1300000000), lDir("new", 0o755), lFile("new/f", 0o644, "f")),
			}
		}, false, false, false},
		{"only what the fast path leaves to umoci", func() []layerBlobData {
			return []layerBlobData{layerPlain(t, owned(lDir("a", 0o755), 1, 1), owned(lFile("a/b", 0o644, "b"), 1, 1),
				xattr(lFile("x", 0o644, "x"), "user.a", "b"), lFile("setuid", 0o4755, "s"),
				layerEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o644}})}
		}, false, true, false},
	}
	start := time.Now()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var snaps [2]map[string]string
			var results [2]layerApplyResult
			for i, umoci := range []bool{false, true} {
				base := layerUserDir(t)
				root := filepath.Join(base, "rootfs")
				if err := os.Mkdir(root, 0o700); err != nil {
					t.Fatal(err)
				}
				layerChown(t, root)
				results[i] = layerApplyAsUserWith(t, umoci, base, root, tc.layers()...)
				snap, err := treesnap.Take(root, start)
				if err != nil {
					t.Fatal(err)
				}
				snaps[i] = snap
				failed := strings.Join(results[i].Errs, "") != ""
				for p, s := range snap {
					// A failed layer stops before the fast path puts
					// back the directories' times.
					if failed || tc.looseDirTimes && s[0] == 'd' {
						snap[p] = s[:strings.LastIndex(s, " mtime=")]
					}
				}
			}
			fast, ref := results[0], results[1]
			if strings.Join(fast.Errs, "\n") != strings.Join(ref.Errs, "\n") {
				t.Errorf("errors differ:\nfast path: %q\numoci:     %q", fast.Errs, ref.Errs)
			}
			if d := treesnap.Diff(snaps[1], snaps[0]); len(d) > 0 {
				t.Errorf("the fast path's tree differs from umoci's (first: umoci's, second: the fast path's):\n%s", strings.Join(d, "\n"))
			}
			if fast.Redone != tc.redo {
				t.Errorf("fast path asked for umoci alone: %v, want %v", fast.Redone, tc.redo)
			}
			if ref.Fast != 0 {
				t.Errorf("umoci alone: the fast path took %d entries", ref.Fast)
			}
			if !tc.redo && (fast.Fast > 0) == tc.noFast {
				t.Errorf("the fast path took %d entries", fast.Fast)
			}
			t.Logf("%d entries on the fast path, %d paths", fast.Fast, len(snaps[0]))
		})
	}
}

func TestFastClean(t *testing.T) {
	for _, tc := range []struct{ in, want, dir, base string }{
		{"usr/bin/sh", "usr/bin/sh", "usr/bin", "sh"},
		{"./usr/", "usr", "", "usr"},
		{"/etc/passwd", "etc/passwd", "etc", "passwd"},
		{"../../x", "x", "", "x"},
		{"a/../../b", "b", "", "b"},
		{"./", ".", "", "."},
		{"/", ".", "", "."},
		{"", ".", "", "."},
	} {
		got := fastClean(tc.in)
		if got != tc.want {
			t.Errorf("fastClean(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if d, b := splitPath(got); d != tc.dir || b != tc.base {
			t.Errorf("splitPath(%q) = %q, %q, want %q, %q", got, d, b, tc.dir, tc.base)
		}
	}
}

func TestPathNode(t *testing.T) {
	root := &pathNode{}
	root.node("usr/lib/numpy", true).fresh = true
	root.node("opt", true).fresh = true
	for p, want := range map[string]bool{
		"": false, "usr": false, "usr/lib": false, "usr/lib/numpy": true, "usr/lib/numpy/core/x.py": true,
		"usr/lib/numpyx": false, "opt/a": true, "srv": false,
	} {
		if got := root.freshAt(p); got != want {
			t.Errorf("freshAt(%q) = %v, want %v", p, got, want)
		}
	}
	if root.node("usr/lib", false) == nil || root.node("usr/share", false) != nil {
		t.Error("node(create=false) finds what is not there, or misses what is")
	}
	root.remove("usr/lib")
	if root.freshAt("usr/lib/numpy/x") || root.node("usr/lib", false) != nil {
		t.Error("remove left usr/lib/numpy")
	}
	var seen []string
	root.walk("", func(p string, _ *pathNode) { seen = append(seen, p) })
	if strings.Join(seen, ",") != ",opt,usr" && strings.Join(seen, ",") != ",usr,opt" {
		t.Errorf("walk saw %q", seen)
	}
	root.remove(".")
	if root.freshAt("opt/a") || root.kids != nil {
		t.Error("remove(.) left something")
	}
}

// TestFastPathWithoutOpenat2 runs the differential test against umoci and
// the hostile corpus again, with the fast path resolving one openat per
// component as it does on kernels without openat2 (before Linux 5.6).
func TestFastPathWithoutOpenat2(t *testing.T) {
	if fallback.Forced(fallback.Openat2) {
		t.Skip("this run forces the fallback already")
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.v",
		"-test.run=^(TestFastPathMatchesUmoci|TestApplyLayerHostile|TestApplyLayerSemantics|FuzzApplyLayer)$")
	cmd.Env = append(os.Environ(), fallback.Env+"="+string(fallback.Openat2))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("with %s=%s: %v\n%s", fallback.Env, fallback.Openat2, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestFastPathMatchesUmoci") || !strings.Contains(string(out), "--- PASS: TestApplyLayerHostile") {
		t.Fatalf("with %s=%s the tests did not run:\n%s", fallback.Env, fallback.Openat2, out)
	}
}
