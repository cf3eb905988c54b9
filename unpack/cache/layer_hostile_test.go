package cache

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// layerSnapshot records every path under dir (but skip) with its type,
// mode, size, mtime and content hash.
func layerSnapshot(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			s += " -> " + l
		}
		snap[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestApplyLayerHostile applies layers that try to create, change or
// delete things beside the target, in a canary directory the unpacking
// user may write to (so that an escape would succeed), and checks that the
// canary and everything beside the target are untouched.
func TestApplyLayerHostile(t *testing.T) {
	type hostile struct {
		name    string
		layers  func(canary string) []layerBlobData
		wantErr string // "" when the entry may be neutralised instead
	}
	cases := []hostile{
		{"dotdot and absolute names", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lFile("../canary/pwn", 0o644, "x"),
				lFile("../../../../../"+c+"/pwn", 0o644, "x"),
				lFile(c+"/pwn", 0o644, "x"),
				lFile("../canary/keep", 0o644, "overwritten"),
				lDir("../canary", 0o777),
				lDir("..", 0o777),
				lSymlink("../canary/link", "/"),
			)}
		}, ""},
		{"symlink out then write through it, same layer", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lSymlink("rel", "../canary"),
				lSymlink("abs", c),
				lSymlink("keep", c+"/keep"),
				lFile("rel/pwn", 0o644, "x"),
				lFile("abs/pwn", 0o644, "x"),
				lFile("rel/keep", 0o644, "overwritten"),
				lFile("abs/sub/file", 0o644, "overwritten"),
				lDir("abs/sub", 0o777),
				lFile("keep", 0o644, "overwritten through a file symlink"),
			)}
		}, ""},
		{"symlink out then write through it, next layer", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lSymlink("rel", "../canary"), lSymlink("abs", c), lSymlink("deep", "../../../../../../"+c),
					lSymlink("keep", "../canary/keep"), lSymlink("subdir", c+"/sub")),
				layerGz(t,
					lFile("rel/pwn", 0o644, "x"),
					lFile("abs/pwn", 0o644, "x"),
					lFile("deep/pwn", 0o644, "x"),
					lFile("abs/keep", 0o644, "overwritten"),
					lDir("subdir", 0o777),
					lFile("subdir/file", 0o644, "overwritten"),
					lFile("keep", 0o600, "overwritten"),
					lHardlink("rel/hl", "etc"),
				),
				layerPlain(t,
					lWhiteout("rel/.wh.keep"),
					lWhiteout("abs/.wh.sub"),
					lWhiteout("deep/.wh..wh..opq"),
					lDir("abs", 0o777),
				),
			}
		}, ""},
		{"hardlink to a file outside", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lHardlink("hl", "../canary/keep")),
				layerPlain(t, lHardlink("hl2", c+"/keep")),
				layerPlain(t, lSymlink("s", c+"/keep"), lHardlink("hl3", "s"), lFile("hl3", 0o644, "through a hardlinked symlink")),
				layerPlain(t, lSymlink("d", "../canary"), lHardlink("hl4", "d/keep")),
			}
		}, ""},
		{"whiteout of dot", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lWhiteout(".wh.."))}
		}, "malicious whiteout"},
		{"whiteout of dotdot", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lWhiteout(".wh..."))}
		}, "malicious whiteout"},
		{"whiteout of dotdot in a subdir", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lDir("a", 0o755), lWhiteout("a/.wh..."))}
		}, "malicious whiteout"},
		{"whiteout of empty name", func(string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lWhiteout(".wh."))}
		}, "malicious whiteout"},
		{"climbing whiteout names", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t,
				lWhiteout("../.wh.canary"),
				lWhiteout("../canary/.wh.keep"),
				lWhiteout("../../../../.wh."+filepath.Base(filepath.Dir(c))),
				lWhiteout(c+"/.wh.keep"),
				lWhiteout("../canary/.wh..wh..opq"),
			)}
		}, ""},
		{"whiteout through a symlink that climbs", func(c string) []layerBlobData {
			return []layerBlobData{
				layerPlain(t, lSymlink("up", "../../../.."), lSymlink("c", c), lSymlink("r", "../canary")),
				layerPlain(t,
					lWhiteout("up/.wh."+strings.TrimPrefix(c, "/")),
					lWhiteout("c/.wh.keep"),
					lWhiteout("c/.wh..wh..opq"),
					lWhiteout("r/.wh.sub"),
					lWhiteout(".wh.r"),
				),
			}
		}, ""},
		{"root replaced by a symlink", func(c string) []layerBlobData {
			return []layerBlobData{layerPlain(t, lSymlink(".", c)), layerPlain(t, lFile("pwn", 0o644, "x"))}
		}, "refusing to change type of root"},
	}
	for _, tc := range cases {
		// With the fast path (what the cache does) and with umoci alone:
		// both must hold.
		for _, umoci := range []bool{false, true} {
			name := tc.name
			if umoci {
				name += ", umoci alone"
			}
			t.Run(name, func(t *testing.T) { hostileCase(t, umoci, tc.layers, tc.wantErr) })
		}
	}
}

func hostileCase(t *testing.T, umoci bool, layers func(canary string) []layerBlobData, wantErr string) {
	base := layerUserDir(t)
	work := filepath.Join(base, "work")
	arena := filepath.Join(base, "arena")
	root := filepath.Join(arena, "target")
	canary := filepath.Join(arena, "canary")
	old := time.Unix(1600000000, 0)
	for _, d := range []string{work, arena, root, canary, filepath.Join(canary, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"keep", "sub/file"} {
		if err := os.WriteFile(filepath.Join(canary, f), []byte("canary "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{work, arena, root, canary, filepath.Join(canary, "sub"), filepath.Join(canary, "keep"), filepath.Join(canary, "sub/file")} {
		layerChown(t, p) // writable by the unpacking user: an escape would work
		if p != work && p != arena && p != root {
			os.Chtimes(p, old, old)
		}
	}
	os.Chtimes(arena, old, old)
	before := layerSnapshot(t, base, root)
	delete(before, work)

	res := layerApplyAsUserWith(t, umoci, work, root, layers(canary)...)
	errs := strings.Join(res.Errs, "\n")
	t.Logf("layer errors:\n%s", errs)
	if wantErr != "" && !strings.Contains(errs, wantErr) {
		t.Errorf("want an error containing %q, got %q", wantErr, res.Errs)
	}

	after := layerSnapshot(t, base, root)
	delete(after, work)
	for p, s := range after {
		if strings.HasPrefix(p, work+"/") {
			delete(after, p)
			continue
		}
		if before[p] != s {
			t.Errorf("changed outside the target: %s: %q, was %q", p, s, before[p])
		}
	}
	for p, s := range before {
		if strings.HasPrefix(p, work+"/") {
			continue
		}
		if _, ok := after[p]; !ok {
			t.Errorf("deleted outside the target: %s (%s)", p, s)
		}
	}
	if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
		t.Errorf("the target itself is gone or replaced: %v %v", fi, err)
	}
}
