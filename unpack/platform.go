package unpack

// Platforms: which image of an index runs here.
//
// Names are compared after normalising the usual aliases (x86_64 is
// amd64, aarch64 is arm64, arm64/v8 is plain arm64, arm without a variant
// is arm/v7, as containerd does).

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
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

// Normalized returns p in the form platforms are compared in: lower case,
// aliases resolved, arm64/v8 as plain arm64 and a bare arm as arm/v7.
func (p Platform) Normalized() Platform {
	os, arch, variant := strings.ToLower(p.OS), strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	if a, ok := archAliases[arch]; ok {
		arch = a
	}
	switch {
	case arch == "arm64" && variant == "v8":
		variant = ""
	case arch == "arm" && variant == "":
		variant = "v7"
	}
	return Platform{OS: os, Architecture: arch, Variant: variant}
}
