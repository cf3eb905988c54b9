// Command hpcrun-unpack unpacks an image into hpcrun's cache. It is not a
// tool of its own: `make build` embeds it in the hpcrun binary, which runs
// it (from a memfd) when --image names an image that is not in the cache
// yet.
//
// Why a second program: unpacking needs umoci, image-spec, protobuf and
// compressors, whose package initialisation costs every process that links
// them about a millisecond at start-up. hpcrun starts twice per job (the
// command and the container's init), so it links only the cache's lookup
// (package unpack/store) and leaves the unpack to this program.
//
// Usage:
//
//	hpcrun-unpack --cache DIR [--platform OS/ARCH[/VARIANT]] [--progress bar|lines|none] [--max-size BYTES] [--cpuprofile FILE] REF
//	hpcrun-unpack --cache DIR --pull [--output FILE] [--platform P] docker://REF
//	hpcrun-unpack login [--username USER] [--password-stdin] REGISTRY
//	hpcrun-unpack logout REGISTRY
//	hpcrun-unpack inspect --cache DIR [--platform P] REF
//
// With docker://REF and login, --tls-verify=false skips the check of the
// registry's certificate (and allows plain HTTP), and --ca-file FILE
// trusts the CAs in FILE besides the system's.
//
// REF is what --image takes; docker://REF pulls from a registry, its blobs
// kept in the cache's blobs/ directory. --pull resolves the tag again even
// if the cache knows it; --output writes an OCI archive instead of
// unpacking. login checks credentials against the registry and stores
// them where pulls find them, logout removes them (see login.go). inspect
// prints what package inspect says of REF (or of a cached image's digest)
// as one line of JSON, an unpack.ImageInfo, and unpacks nothing.
//
// HPCRUN_UNPACK_UMOCI=1 in the environment makes umoci extract every
// entry, without the fast path of package cache.
//
// Run alone, it is how unpacking is profiled: --cpuprofile writes a pprof
// CPU profile (go tool pprof FILE).
//
// On success it prints the manifest digest of the image, now published in
// the cache, on stdout and exits 0. Otherwise it prints one line,
// "error: <what went wrong>", on stdout, for hpcrun to report, and exits
// 125. Progress goes to stderr. SIGINT, SIGTERM and SIGHUP stop an unpack
// cleanly; hpcrun sends SIGTERM if it dies.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/cache"
	"github.com/hpcrun/hpcrun/unpack/inspect"
	"github.com/hpcrun/hpcrun/unpack/source"
	"github.com/hpcrun/hpcrun/unpack/store"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

func init() {
	// Run from a memfd, the process would be named by its fd number in
	// ps and top: name it. (init runs on the main thread, whose name that is.)
	name := []byte("hpcrun-unpack\x00")
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
}

func main() {
	// An unpack's heap is a few big buffers, alive throughout, and a
	// stream of small garbage per tar entry. Collecting that early keeps
	// the peak RSS at the buffers' size, whatever the size of the image:
	// with the default GOGC=100 it grew by half again on a 300 MB image.
	// The buffers hold no pointers, so a collection costs little.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitFailure is hpcrun's own failure status.
const exitFailure = 125

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hpcrun-unpack", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("cache", "", "the cache directory")
	platform := fs.String("platform", "", "the platform to pick from an index")
	progress := fs.String("progress", "lines", "bar, lines or none")
	pull := fs.Bool("pull", false, "resolve a registry reference again even if the cache knows it")
	output := fs.String("output", "", "write the image as an OCI archive to this file instead of unpacking it")
	maxSize := fs.Int64("max-size", 0, "the most an image's files may add up to, in bytes (0: no limit)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the unpack to this file")
	var tc source.TLS
	tlsFlags(fs, &tc)
	var bar *progressBar
	fail := func(err error) int {
		if bar != nil && bar.open {
			fmt.Fprintln(stderr) // hpcrun's error line goes below the bar
		}
		fmt.Fprintf(stdout, "error: %s\n", termsafe.Line(err.Error()))
		return exitFailure
	}
	if len(args) > 0 && args[0] == "login" {
		return runLogin(args[1:], os.Stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "logout" {
		return runLogout(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "inspect" {
		return runInspect(args[1:], stdout)
	}
	if err := fs.Parse(args); err != nil {
		return fail(fmt.Errorf("hpcrun-unpack: %w", err))
	}
	if fs.NArg() != 1 || *dir == "" {
		return fail(errors.New("usage: hpcrun-unpack --cache DIR [--platform P] [--progress bar|lines|none] REF"))
	}
	p := unpack.HostPlatform()
	if *platform != "" {
		var err error
		if p, err = unpack.ParsePlatform(*platform); err != nil {
			return fail(err)
		}
	}
	c, err := cache.OpenCache(*dir)
	if err != nil {
		return fail(err)
	}
	// umoci alone extracts every entry: slower, the reference the fast
	// path is tested against, and a way around it should it ever fail.
	c.UmociOnly = os.Getenv("HPCRUN_UNPACK_UMOCI") == "1"
	c.MaxSize = *maxSize
	log := func(string) {}
	switch *progress {
	case "bar":
		bar = &progressBar{w: stderr, start: time.Now()}
		c.Progress = bar
		fallthrough
	case "lines":
		log = func(msg string) { fmt.Fprintf(stderr, "hpcrun: %s\n", msg) }
	case "none":
	default:
		return fail(fmt.Errorf("--progress %q: want bar, lines or none", *progress))
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ref := fs.Arg(0)
	var src source.Source
	if r, ok := strings.CutPrefix(ref, unpack.RegistryPrefix); ok {
		src, err = source.OpenRegistry(ctx, r, c.BlobsDir(), source.RegistryOptions{Log: log, TLS: tc})
	} else if *pull || *output != "" {
		return fail(fmt.Errorf("%s: --pull and --output take a registry reference (docker://REF)", ref))
	} else {
		src, err = source.Open(ref)
	}
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	if *output != "" {
		res, err := src.Resolve(p)
		if err == nil {
			err = source.WriteArchive(src, res, *output)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, res.ManifestDigest)
		return 0
	}
	ensure := c.Ensure
	if *pull {
		ensure = c.Refresh
	}
	im, err := ensure(ctx, src, p, log)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, im.Digest)
	return 0
}

// progressBar draws the unpack's progress on a terminal: bytes, share and
// rate, redrawn at most ten times a second.
type progressBar struct {
	w     io.Writer
	start time.Time
	last  time.Time
	open  bool // a bar is drawn and its line not ended
}

func (p *progressBar) Phase(name string, done, total int64) {
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	pct := 100
	if total > 0 {
		pct = int(done * 100 / total)
	}
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3) / (1 << 20)
	fmt.Fprintf(p.w, "\rhpcrun: %s %3d%% %s / %s %6.1f MiB/s\x1b[K", name, pct, store.Bytes(done), store.Bytes(total), rate)
	p.open = done < total
	if !p.open {
		fmt.Fprintln(p.w)
	}
}

// tlsFlags registers --tls-verify and --ca-file on fs, into tc.
func tlsFlags(fs *flag.FlagSet, tc *source.TLS) {
	fs.Func("tls-verify", "check the registry's certificate (default true)", func(v string) error {
		b, err := strconv.ParseBool(v)
		tc.Insecure = !b
		return err
	})
	fs.StringVar(&tc.CAFile, "ca-file", "", "a PEM file of CAs to trust besides the system's")
}

// runInspect prints what package inspect says of an image, as one line of
// JSON, for hpcrun inspect to format.
func runInspect(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("hpcrun-unpack inspect", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("cache", "", "the cache directory")
	platform := fs.String("platform", "", "the platform to pick from an index")
	var tc source.TLS
	tlsFlags(fs, &tc)
	fail := func(err error) int {
		fmt.Fprintf(stdout, "error: %s\n", termsafe.Line(err.Error()))
		return exitFailure
	}
	if err := fs.Parse(args); err != nil {
		return fail(fmt.Errorf("hpcrun-unpack inspect: %w", err))
	}
	if fs.NArg() != 1 || *dir == "" {
		return fail(errors.New("usage: hpcrun-unpack inspect --cache DIR [--platform P] REF"))
	}
	p := unpack.HostPlatform()
	if *platform != "" {
		var err error
		if p, err = unpack.ParsePlatform(*platform); err != nil {
			return fail(err)
		}
	}
	s, err := store.Open(*dir)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	info, err := inspect.Inspect(ctx, inspect.Request{Ref: fs.Arg(0), Cache: s, Platform: p, Registry: source.RegistryOptions{TLS: tc}})
	if err != nil {
		return fail(err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}
