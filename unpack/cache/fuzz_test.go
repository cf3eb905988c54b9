package cache

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzApplyLayer applies random tars, with the fast path and with umoci
// alone, into a target beside a canary directory that the attacks of the
// hostile corpus aim at: whatever the tar holds, nothing outside the
// target may appear, change or vanish.
func FuzzApplyLayer(f *testing.F) {
	seeds := [][]layerEntry{
		{lDir("usr", 0o755), lFile("usr/a", 0o644, "a"), lSymlink("usr/l", "a"), lHardlink("usr/h", "usr/a")},
		{lSymlink("rel", "../canary"), lFile("rel/pwn", 0o644, "x"), lDir("rel/sub", 0o777)},
		{lSymlink("abs", "/"), lFile("abs/tmp/pwn", 0o644, "x"), lHardlink("hl", "../canary/keep")},
		{lFile("../canary/pwn", 0o644, "x"), lFile("/abs", 0o644, "x"), lWhiteout("../canary/.wh.keep")},
		{lDir("d", 0o755), lFile("d/f", 0o644, "f"), lWhiteout("d/.wh..wh..opq"), lSymlink("d", "../canary"), lFile("d/g", 0o644, "g")},
		{lWhiteout(".wh.canary"), lWhiteout("x/.wh..wh..opq"), lFile("x/.wh.y", 0o644, "")},
	}
	for _, s := range seeds {
		f.Add(lTar(f, s...), false)
		f.Add(lTar(f, s...), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, umoci bool) {
		// Bounded work: no big or sparse entries (the size limit of a
		// decompression bomb is not what this target is about).
		tr := tar.NewReader(bytes.NewReader(data))
		for n := 0; ; n++ {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if n > 200 || h.Size > 1<<20 || h.Typeflag == tar.TypeGNUSparse || len(h.PAXRecords) > 0 && h.PAXRecords["GNU.sparse.major"] != "" {
				return
			}
		}
		base := t.TempDir()
		arena := filepath.Join(base, "arena")
		root := filepath.Join(arena, "target")
		canary := filepath.Join(arena, "canary")
		for _, d := range []string{arena, root, canary, filepath.Join(canary, "sub")} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Unix(1600000000, 0)
		os.WriteFile(filepath.Join(canary, "keep"), []byte("canary"), 0o644)
		for _, p := range []string{filepath.Join(canary, "keep"), filepath.Join(canary, "sub"), canary, arena} {
			os.Chtimes(p, old, old)
		}
		before := layerSnapshot(t, base, root)
		applyLayer(root, io.NopCloser(bytes.NewReader(data)), uncompressed, "", !umoci, nil)
		after := layerSnapshot(t, base, root)
		for p, s := range after {
			if before[p] != s {
				t.Fatalf("changed outside the target: %s: %q, was %q", p, s, before[p])
			}
		}
		for p := range before {
			if _, ok := after[p]; !ok {
				t.Fatalf("deleted outside the target: %s", p)
			}
		}
	})
}
