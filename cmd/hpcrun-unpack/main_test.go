package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every failure is one "error: " line on stdout, for hpcrun to report, and
// exit 125; nothing is left in the cache.
func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	notImage := filepath.Join(dir, "notes.txt")
	os.WriteFile(notImage, []byte("hello\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no ref", []string{"--cache", cache}, "usage: hpcrun-unpack"},
		{"no cache", []string{notImage}, "usage: hpcrun-unpack"},
		{"bad flag", []string{"--nope", "--cache", cache, notImage}, "flag provided but not defined"},
		{"bad progress", []string{"--cache", cache, "--progress", "fancy", notImage}, `--progress "fancy"`},
		{"bad platform", []string{"--cache", cache, "--platform", "a/b/c/d", notImage}, "platform"},
		{"missing image", []string{"--cache", cache, filepath.Join(dir, "nope.tar")}, "nope.tar"},
		{"not an image", []string{"--cache", cache, notImage}, "notes.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			out := stdout.String()
			if code != 125 || !strings.HasPrefix(out, "error: ") || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, stdout %q; want 125 and one error line with %q", code, out, tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr %q, want nothing", stderr.String())
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "images")); len(ents) != 0 {
		t.Errorf("cache images after errors: %v", ents)
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := &progressBar{w: &buf, start: time.Now().Add(-time.Second)}
	p.Phase("layer 1/2", 0, 4<<20)
	p.Phase("layer 1/2", 1<<20, 4<<20) // within 100ms: not drawn
	p.Phase("layer 2/2", 4<<20, 4<<20) // the end is always drawn
	out := buf.String()
	if strings.Count(out, "\r") != 2 || !strings.Contains(out, "layer 1/2   0%") ||
		!strings.Contains(out, "layer 2/2 100% 4.0 MiB / 4.0 MiB") || !strings.HasSuffix(out, "\n") {
		t.Errorf("bar: %q", out)
	}
}
