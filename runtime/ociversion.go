package runtime

import (
	"fmt"

	"github.com/blang/semver/v4"
)

// checkOCIVersion refuses a config.json's ociVersion that is not SemVer
// 2.0.0, as the runtime spec requires it to be, or whose major version
// is not 1, the one whose fields hpcrun reads: a bundle of another major
// could mean something else by them.
func checkOCIVersion(v string) error {
	if v == "" {
		return fmt.Errorf("config.json has no ociVersion; set it to the runtime-spec version the bundle follows, such as %q", SpecVersion)
	}
	sv, err := semver.Parse(v)
	if err != nil {
		return fmt.Errorf("config.json: ociVersion %q is not a SemVer version such as %q", v, SpecVersion)
	}
	if sv.Major != 1 {
		return fmt.Errorf("config.json: ociVersion %q is of runtime-spec %d.x; hpcrun runs bundles of 1.x", v, sv.Major)
	}
	return nil
}
