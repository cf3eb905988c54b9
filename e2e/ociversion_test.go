package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A config.json whose ociVersion is not SemVer, or not of runtime-spec
// 1.x, fails create in one line and leaves no container; 1.x runs.
func TestOCIVersion(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, tc := range []struct{ version, want string }{
		{"invalid", `ociVersion "invalid" is not a SemVer version`},
		{"2.0.0", `ociVersion "2.0.0" is of runtime-spec 2.x`},
		{"1.3.0", ""},
	} {
		bundle, root := lifecycleBundle(t, "true")
		var spec map[string]any
		b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatal(err)
		}
		spec["ociVersion"] = tc.version
		b, _ = json.Marshal(spec)
		writeConfig(t, bundle, b)
		if tc.want == "" {
			mustLC(t, root, "run", "--bundle", bundle, "good")
			continue
		}
		failsLC(t, root, tc.want, "create", "--bundle", bundle, "bad")
		if r := lc(t, root, "state", "bad"); r.code == 0 {
			t.Errorf("a refused create left a container: %s", r)
		}
	}
}
