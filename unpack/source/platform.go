package source

// Platforms: which image of an index runs here.
//
// Names are compared after normalising the usual aliases (x86_64 is
// amd64, aarch64 is arm64, arm64/v8 is plain arm64, arm without a variant
// is arm/v7, as containerd does). An empty Variant in the platform asked
// for accepts any variant, preferring an image that gives none; on arm,
// v7 also runs v6 and v5 images, the closest preferred.

import (
	"strings"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hpcrun/hpcrun/unpack"
)

// Platform is an OS, an architecture and an optional variant.
type Platform = unpack.Platform

// normalize returns os, arch and variant in the form they are compared in.
func normalize(os, arch, variant string) (string, string, string) {
	n := Platform{OS: os, Architecture: arch, Variant: variant}.Normalized()
	return n.OS, n.Architecture, n.Variant
}

// score says how well an image for q suits p: 0 not at all, higher
// better.
func score(p Platform, q *ispec.Platform) int {
	if q == nil {
		return 0
	}
	pos, parch, pvar := normalize(p.OS, p.Architecture, p.Variant)
	qos, qarch, qvar := normalize(q.OS, q.Architecture, q.Variant)
	switch {
	case pos != qos || parch != qarch:
		return 0
	case pvar == qvar:
		return 100
	case p.Variant == "" && qvar == "":
		return 100
	case p.Variant == "":
		return 10
	case parch == "arm" && armLevel(qvar) > 0 && armLevel(qvar) < armLevel(pvar):
		return 50 + armLevel(qvar)
	}
	return 0
}

// armLevel is 7 for "v7"; 0 if v is not an arm variant.
func armLevel(v string) int {
	if len(v) == 2 && v[0] == 'v' && v[1] >= '5' && v[1] <= '8' {
		return int(v[1] - '0')
	}
	return 0
}

// platformString names an index entry's platform in a message.
func platformString(q *ispec.Platform) string {
	return Platform{OS: q.OS, Architecture: q.Architecture, Variant: q.Variant}.String()
}

// errNoPlatform lists what an image offers when nothing fits p.
func errNoPlatform(ref string, p Platform, offered []string) error {
	if len(offered) == 0 {
		return newError(ErrNoPlatform, "no %s image in %s; its index names no platform", p, ref)
	}
	return newError(ErrNoPlatform, "no %s image in %s; it offers %s", p, ref, strings.Join(offered, ", "))
}
