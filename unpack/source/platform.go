package source

// Platforms: which image of an index runs here.
//
// Names are compared after normalising the usual aliases (x86_64 is
// amd64, aarch64 is arm64, arm64/v8 is plain arm64, arm without a variant
// is arm/v7, as containerd does). An empty Variant in the platform asked
// for accepts any variant, preferring an image that gives none; on arm,
// v7 also runs v6 and v5 images, the closest preferred.

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is an OS, an architecture and an optional variant, as in an
// image index ("linux", "arm", "v7").
type Platform struct{ OS, Architecture, Variant string }

// String returns "os/arch" or "os/arch/variant".
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// HostPlatform is the platform hpcrun was built for: runtime.GOOS and
// runtime.GOARCH, and on 32-bit arm the variant from GOARM ("v7" when the
// build does not say), as the image spec names it.
func HostPlatform() Platform {
	p := Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					p.Variant = "v" + s.Value[:1] // "7,softfloat" is v7
				}
			}
		}
	}
	return p
}

// ParsePlatform parses "os/arch[/variant]" ("linux/amd64",
// "linux/arm64/v8") or a bare "arch", which means linux. Architecture
// aliases are normalised: "x86_64" gives amd64.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) == 1 {
		parts = append([]string{"linux"}, parts...)
	}
	bad := len(parts) > 3
	for _, part := range parts {
		bad = bad || part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != ""
	}
	if bad {
		return Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], such as linux/arm64", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	if arch, ok := archAliases[p.Architecture]; ok {
		p.Architecture = arch
	}
	return p, nil
}

var archAliases = map[string]string{
	"x86_64":  "amd64",
	"x86-64":  "amd64",
	"aarch64": "arm64",
	"i386":    "386",
	"i686":    "386",
	"armhf":   "arm",
	"armel":   "arm",
}

// normalize returns os, arch and variant in the form they are compared in.
func normalize(os, arch, variant string) (string, string, string) {
	os, arch, variant = strings.ToLower(os), strings.ToLower(arch), strings.ToLower(variant)
	if a, ok := archAliases[arch]; ok {
		arch = a
	}
	switch {
	case arch == "arm64" && variant == "v8":
		variant = ""
	case arch == "arm" && variant == "":
		variant = "v7"
	}
	return os, arch, variant
}

// score says how well an image for q suits p: 0 not at all, higher
// better.
func (p Platform) score(q *ispec.Platform) int {
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
