package e2e

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/internal/fallback"
	"github.com/hpcrun/hpcrun/internal/treesnap"
)

// The unpacker's fast path builds, from each real image the suite has,
// the tree umoci builds alone (HPCRUN_UNPACK_UMOCI=1): the same paths,
// types, modes, sizes, contents, link targets, hardlinks, xattrs and
// mtimes. And it takes most entries: otherwise this proves nothing.
func TestUnpackFastPathMatchesUmoci(t *testing.T) {
	t.Parallel()
	needUserns(t)
	images := map[string]func(*testing.T) string{
		"busybox": func(t *testing.T) string { return busyboxImage(t) },
		"python":  pythonImage,
		"mpi":     mpiImage,
	}
	fastRE := regexp.MustCompile(`(\d+) entries, (\d+) on the fast path`)
	for name, image := range images {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			img := image(t)
			start := time.Now()
			var snaps []map[string]string
			// The fast path twice: as the kernel allows, and with the
			// fallback for kernels without openat2 (before Linux 5.6).
			for i, env := range [][]string{{"HPCRUN_UNPACK_UMOCI=1"}, {"HPCRUN_UNPACK_UMOCI=0"},
				{"HPCRUN_UNPACK_UMOCI=0", fallback.Env + "=" + string(fallback.Openat2)}} {
				umoci := env[0][len(env[0])-1:]
				cache := filepath.Join(tempDirOwned(t), "cache")
				r := mustRun(t, opts{timeout: 5 * time.Minute, env: env}, "-v", "--image", img, "--cache", cache, "true")
				entries, fast := 0, 0
				for _, m := range fastRE.FindAllStringSubmatch(r.stderr, -1) {
					e, _ := strconv.Atoi(m[1])
					f, _ := strconv.Atoi(m[2])
					entries, fast = entries+e, fast+f
				}
				t.Logf("%s: %d entries, %d on the fast path", strings.Join(env, " "), entries, fast)
				if umoci == "1" && fast != 0 || umoci == "0" && fast < entries*9/10 {
					t.Errorf("%s: %d of %d entries on the fast path\n%s", strings.Join(env, " "), fast, entries, r.stderr)
				}
				dirs, _ := cacheEntries(t, cache)
				if len(dirs) != 1 {
					t.Fatalf("cache holds %v", dirs)
				}
				snap, err := treesnap.Take(filepath.Join(cache, "images", dirs[0], "rootfs"), start)
				if err != nil {
					t.Fatal(err)
				}
				snaps = append(snaps, snap)
				if i == 0 {
					continue
				}
				if d := treesnap.Diff(snaps[0], snap); len(d) > 0 {
					if len(d) > 40 {
						d = append(d[:40], "...")
					}
					t.Errorf("%s: the fast path's tree differs from umoci's (first: umoci's, second: the fast path's):\n%s", strings.Join(env, " "), strings.Join(d, "\n"))
				}
			}
			t.Logf("%d paths the same", len(snaps[0]))
		})
	}
}
