package gpu

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/hpcrun/hpcrun/internal/envlist"
)

// Host is the machine Find looks at. A Host with only Env set is the
// machine this program runs on; tests point Root at a fake tree.
type Host struct {
	Root    string   // host paths are read below it: "" or "/" for the machine itself
	LdCache string   // glibc's library cache, below Root; default /etc/ld.so.cache
	BinDirs []string // where executables are looked up, below Root, in order; default DefaultBinDirs
	Arch    string   // the GOARCH whose libraries are taken; default this program's
	Env     []string // the caller's environment, K=V, which holds the GPU binding
}

// File is one host file that a job sees.
type File struct {
	Source string // the host path of the real file, symlinks resolved
	Name   string // its name inside: a soname (libcuda.so.1), an unversioned link (libcuda.so), an executable's name
}

// Driver is a GPU driver's user space on the host, as Find found it.
type Driver struct {
	Vendor  Vendor
	Version string   // from the file name of libcuda.so.1's real file (550.54.15); "" when it has none, and for ROCm
	Libs    []File   // the libraries, sorted by Name
	Bins    []File   // the executables found, in the vendor's order
	Devices []string // the device nodes present, which a job sees at the same paths in the host's /dev
	Binding []string // the GPU binding variables that Host.Env sets, K=V, empty values included; see the package doc
	Skipped []string // libraries passed over, and why, for a verbose log
	Dir     string   // where Binds puts the files inside the container: Dir/lib, Dir/bin
}

// DefaultDir holds the drivers' files inside the container, one directory
// per vendor. The image has no such path, so it is made in hpcrun's tmpfs
// underlay and the image stays unmodified.
const DefaultDir = "/.hpcrun"

// ErrNoDriver is in the chain of Find's error when the node lacks the
// driver, or its parts do not belong together.
var ErrNoDriver = errors.New("no GPU driver")

type noDriverError struct{ msg string }

func (e *noDriverError) Error() string { return e.msg }
func (e *noDriverError) Unwrap() error { return ErrNoDriver }

// Find looks for a vendor's driver on a host: its 64-bit libraries of the
// host's architecture in glibc's ld.so.cache, its executables in the bin
// dirs, and its device nodes in /dev. Without the driver's core library
// (libcuda.so.1, libhsa-runtime64.so.1) or control device (/dev/nvidiactl,
// /dev/kfd), or with an NVIDIA kernel module of another version than
// libcuda, the error wraps ErrNoDriver and says what is missing and how to
// check. Libraries of another driver version than libcuda's, and
// libraries that the cache lists but the disk lacks, are left out and noted
// in Skipped.
func Find(v Vendor, h Host) (Driver, error) {
	spec, ok := vendors[v]
	if !ok {
		return Driver{}, fmt.Errorf("unknown GPU vendor %q: use %q or %q", v, NVIDIA, ROCm)
	}
	h = h.withDefaults()
	want, ok := archFlags[h.Arch]
	if !ok {
		return Driver{}, fmt.Errorf("GPU drivers on %s are not supported: hpcrun knows the library cache of %s", h.Arch, knownArchs())
	}
	data, err := os.ReadFile(h.path(h.LdCache))
	if err != nil {
		return Driver{}, fmt.Errorf("read glibc's library cache, where hpcrun finds the %s driver: %w", spec.name, err)
	}
	entries, err := ParseLdCache(data)
	if err != nil {
		return Driver{}, fmt.Errorf("%s: %w", h.LdCache, err)
	}

	d := Driver{Vendor: v, Dir: path.Join(DefaultDir, string(v))}
	d.Libs, d.Skipped = h.libraries(pick(entries, want, spec.libs))
	if lib := d.lib(spec.version); lib != nil {
		d.Version = versionOf(spec.version, filepath.Base(lib.Source))
	}
	if d.Version != "" {
		d.Libs, d.Skipped = ofVersion(d.Libs, d.Version, d.Skipped)
	}
	d.Bins = h.executables(spec.bins)
	d.Devices = h.devices(spec.devices)
	d.Binding = binding(h.Env, spec.binding)

	var missing []string
	if d.lib(spec.needLib) == nil {
		missing = append(missing, libMissing(spec.needLib, want, entries, h.LdCache))
	}
	if !slices.Contains(d.Devices, spec.needDev) {
		missing = append(missing, spec.needDev+" is missing (no GPU on this node, or its kernel module is not loaded)")
	}
	if len(missing) > 0 {
		return Driver{}, &noDriverError{fmt.Sprintf("no %s driver on this node: %s; %s",
			spec.name, strings.Join(missing, ", and "), spec.noDriver)}
	}
	if spec.module != "" && d.Version != "" {
		if b, err := os.ReadFile(h.path(spec.module)); err == nil {
			if mod := strings.TrimSpace(string(b)); mod != d.Version {
				return Driver{}, &noDriverError{fmt.Sprintf("the %s kernel module is version %s, but its libraries (%s) are %s: "+
					"the driver was upgraded without a reboot, or the library cache is stale; "+
					"`nvidia-smi` on the node says \"Driver/library version mismatch\"; ask the node's admins",
					spec.name, mod, spec.version, d.Version)}
			}
		}
	}
	return d, nil
}

func (h Host) withDefaults() Host {
	if h.Root == "" {
		h.Root = "/"
	}
	if h.LdCache == "" {
		h.LdCache = "/etc/ld.so.cache"
	}
	if len(h.BinDirs) == 0 {
		h.BinDirs = DefaultBinDirs
	}
	if h.Arch == "" {
		h.Arch = goruntime.GOARCH
	}
	return h
}

// path is the host path of p, a path below Root, symlinks not resolved.
func (h Host) path(p string) string { return filepath.Join(h.Root, p) }

// regular resolves p's symlinks below Root, as the machine under Root sees
// them, and returns the host path of the regular file it leads to.
func (h Host) regular(p string) (string, os.FileInfo, error) {
	real, err := securejoin.SecureJoin(h.Root, p)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%s is not a regular file", p)
	}
	return real, fi, nil
}

// pick chooses the cache entries of the wanted libraries: NAME.so and
// NAME.so.* of the host's 64-bit ABI, the first of each name in the
// cache's order, as the dynamic loader would. Variants in glibc-hwcaps
// subdirectories are passed over; drivers ship none.
func pick(entries []Entry, want Flags, names []string) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Flags != want || e.Hwcap != 0 || seen[e.Name] || !matchesLib(e.Name, names) {
			continue
		}
		seen[e.Name] = true
		out = append(out, e)
	}
	return out
}

func matchesLib(soname string, names []string) bool {
	for _, n := range names {
		if soname == n+".so" || strings.HasPrefix(soname, n+".so.") {
			return true
		}
	}
	return false
}

// libraries resolves the picked entries to their real files. Where the
// soname's directory also holds the unversioned link (libcuda.so), to the
// same file, that name is added: some programs dlopen it, and nvcc -lcuda
// links against it.
func (h Host) libraries(picked []Entry) (libs []File, skipped []string) {
	have := map[string]bool{}
	for _, e := range picked {
		have[e.Name] = true
	}
	for _, e := range picked {
		real, _, err := h.regular(e.Path)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: the library cache lists %s, which is not there (%v); `ldconfig` as root rebuilds the cache", e.Name, e.Path, err))
			continue
		}
		libs = append(libs, File{Source: real, Name: e.Name})
		i := strings.Index(e.Name, ".so.")
		if i < 0 || have[e.Name[:i+3]] {
			continue
		}
		link := e.Name[:i+3]
		if r, _, err := h.regular(path.Join(path.Dir(e.Path), link)); err == nil && r == real {
			libs = append(libs, File{Source: real, Name: link})
			have[link] = true
		}
	}
	sort.Slice(libs, func(i, j int) bool { return libs[i].Name < libs[j].Name })
	return libs, skipped
}

// versionOf reads the driver's version from the real file name of its core
// library: libcuda.so.550.54.15 for libcuda.so.1 gives 550.54.15. A name
// with no dotted version (libcuda.so.1 itself) gives "".
func versionOf(soname, realName string) string {
	i := strings.Index(soname, ".so")
	if i < 0 {
		return ""
	}
	v, ok := strings.CutPrefix(realName, soname[:i+3]+".")
	if !ok || !strings.Contains(v, ".") {
		return ""
	}
	for _, c := range v {
		if c != '.' && (c < '0' || c > '9') {
			return ""
		}
	}
	return v
}

// ofVersion keeps the libraries whose real file carries the driver's
// version, as libnvidia-container does: a leftover of an older driver
// would not work with the kernel module.
func ofVersion(libs []File, version string, skipped []string) ([]File, []string) {
	var kept []File
	for _, l := range libs {
		if strings.HasSuffix(filepath.Base(l.Source), ".so."+version) {
			kept = append(kept, l)
			continue
		}
		skipped = append(skipped, fmt.Sprintf("%s: %s is not of driver version %s", l.Name, l.Source, version))
	}
	return kept, skipped
}

func (d Driver) lib(name string) *File {
	for i := range d.Libs {
		if d.Libs[i].Name == name {
			return &d.Libs[i]
		}
	}
	return nil
}

// libMissing says why a required library is not in the driver.
func libMissing(soname string, want Flags, entries []Entry, cache string) string {
	var other []string
	for _, e := range entries {
		if e.Name != soname {
			continue
		}
		if e.Flags == want {
			return fmt.Sprintf("%s is listed in %s but %s is not there (a stale cache: `ldconfig` as root rebuilds it)", soname, cache, e.Path)
		}
		other = append(other, e.Flags.String())
	}
	if len(other) > 0 {
		return fmt.Sprintf("%s is in %s only as %s, not as %s", soname, cache, strings.Join(other, " and "), want)
	}
	return fmt.Sprintf("%s (%s) is not in %s", soname, want, cache)
}

// executables finds each name in the first bin dir that holds it as an
// executable regular file.
func (h Host) executables(names []string) []File {
	var bins []File
	for _, n := range names {
		for _, dir := range h.BinDirs {
			if real, fi, err := h.regular(path.Join(dir, n)); err == nil && fi.Mode()&0o111 != 0 {
				bins = append(bins, File{Source: real, Name: n})
				break
			}
		}
	}
	return bins
}

// devices lists the device nodes that match the globs, in order. Only the
// last element of a glob may hold a pattern.
func (h Host) devices(globs []string) []string {
	var devs []string
	for _, g := range globs {
		dir, pat := path.Split(g)
		ents, err := os.ReadDir(h.path(dir))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if ok, _ := path.Match(pat, e.Name()); ok && !e.IsDir() {
				devs = append(devs, path.Join(dir, e.Name()))
			}
		}
	}
	return devs
}

// binding returns the variables among names that env sets, K=V, in the
// order of names; an empty value (CUDA_VISIBLE_DEVICES= hides every GPU)
// counts. The last of repeated entries wins.
func binding(env, names []string) []string {
	var out []string
	for _, n := range names {
		if v, ok := envlist.Get(env, n); ok {
			out = append(out, n+"="+v)
		}
	}
	return out
}

func knownArchs() string {
	var a []string
	for k := range archFlags {
		a = append(a, k)
	}
	sort.Strings(a)
	return strings.Join(a, ", ")
}
