package runtime

import (
	"strings"
	"testing"
)

func TestCheckOCIVersion(t *testing.T) {
	for _, tc := range []struct {
		v, want string // want: "" for accepted, else part of the error
	}{
		{"1.0.2", ""},
		{"1.0.0", ""},
		{"1.2.1", ""},
		{"1.3.0", ""},
		{"1.0.0-rc5", ""},
		{"1.1.0+dev", ""},
		{"invalid", `ociVersion "invalid" is not a SemVer version`},
		{"1.0", `ociVersion "1.0" is not a SemVer version`},
		{"v1.0.2", `ociVersion "v1.0.2" is not a SemVer version`},
		{"01.0.2", `is not a SemVer version`},
		{" 1.0.2", `is not a SemVer version`},
		{"2.0.0", `ociVersion "2.0.0" is of runtime-spec 2.x; hpcrun runs bundles of 1.x`},
		{"0.5.0", `is of runtime-spec 0.x`},
		{"", "config.json has no ociVersion"},
	} {
		err := checkOCIVersion(tc.v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want %q", tc.v, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%q: not one line: %q", tc.v, err)
		}
	}
}
