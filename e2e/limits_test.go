package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// max_image_size stops an unpack that would grow past it: one line, exit
// 125, nothing left in the cache; a larger limit lets the image in.
func TestMaxImageSize(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := busyboxImage(t)
	cache := filepath.Join(tempDirOwned(t), "cache")
	r := run(t, opts{env: []string{"HPCRUN_MAX_IMAGE_SIZE=64K"}}, "--cache", cache, "--image", image, "true")
	if r.code != 125 || !strings.Contains(r.stderr, "max_image_size") || !strings.Contains(r.stderr, "64.0 KiB") && !strings.Contains(r.stderr, "65536") {
		t.Errorf("over the limit: %s", r)
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], "hpcrun: ") || strings.Count(r.stderr, "max_image_size") != 1 {
		t.Errorf("want one error line: %q", r.stderr)
	}
	if images, tmp := cacheEntries(t, cache); len(images) != 0 || len(tmp) != 0 {
		t.Errorf("left in the cache: images %v, tmp %v", images, tmp)
	}
	r = run(t, opts{env: []string{"HPCRUN_MAX_IMAGE_SIZE=nonsense"}}, "--cache", cache, "--image", image, "true")
	if r.code != 125 || !strings.Contains(r.stderr, "HPCRUN_MAX_IMAGE_SIZE") {
		t.Errorf("a bad limit: %s", r)
	}
	mustRun(t, opts{env: []string{"HPCRUN_MAX_IMAGE_SIZE=1G"}}, "--cache", cache, "--image", image, "true")
}
