// Package unpacker runs the hpcrun-unpack program (cmd/hpcrun-unpack),
// which `make build` embeds in hpcrun, to bring an image into the cache.
//
// It runs the embedded program from a memfd, so that nothing is installed
// or left behind; where the kernel forbids executing a memfd
// (vm.memfd_noexec=2), from an unnamed copy (O_TMPFILE) on the cache's
// filesystem.
//
// Either way the program runs from a descriptor, never from a path: a job
// runs as the user and sees /tmp, /var/tmp (the default cache's home) and
// $HOME, so a named copy there, even for a moment, could be swapped by a
// job for its own program, which hpcrun would then run on the host side.
// A memfd or an O_TMPFILE|O_EXCL file has no name in any directory, and
// the descriptors are hpcrun's own (a job cannot reach /proc/PID/fd of a
// process outside its pid namespace).
package unpacker

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/fallback"
)

//go:embed payload
var payload embed.FS

const payloadName = "payload/hpcrun-unpack"

// ErrNotBuiltIn: this hpcrun was built without the unpacker.
var ErrNotBuiltIn = errors.New("this hpcrun was built without its image unpacker, so it runs only --rootfs and images already in the cache; build it with `make build`")

// Request is one image to bring into the cache.
type Request struct {
	Ref      string // what --image names
	Cache    string // the cache directory, which exists
	Platform string // OS/ARCH[/VARIANT]; "" for this node's
	Progress string // "bar", "lines" or "none"
	Stderr   io.Writer
	// Pull resolves a docker:// reference's tag again even when the cache
	// knows it (hpcrun pull).
	Pull bool
	// Output, with Pull, writes the pulled image as an OCI archive there
	// instead of unpacking it.
	Output string
	// MaxSize, when not 0, is the most the image's files may add up to.
	MaxSize int64
	// Of a registry: skip the check of its certificate (and allow plain
	// HTTP), or trust the CAs of a PEM file besides the system's.
	Insecure bool
	CAFile   string
}

// TLSArgs are the unpacker's flags for a registry's certificate.
func TLSArgs(insecure bool, caFile string) []string {
	var args []string
	if insecure {
		args = append(args, "--tls-verify=false")
	}
	if caFile != "" {
		args = append(args, "--ca-file", caFile)
	}
	return args
}

// Ensure unpacks r.Ref into the cache unless it is there, and returns the
// manifest digest it is published under. The unpacker's own failure comes
// back as a one-line error.
func Ensure(ctx context.Context, r Request) (string, error) {
	prog, err := open(r.Cache)
	if err != nil {
		return "", err
	}
	defer prog.close()
	args := []string{"--cache", r.Cache, "--progress", r.Progress}
	if r.Platform != "" {
		args = append(args, "--platform", r.Platform)
	}
	if r.Pull {
		args = append(args, "--pull")
	}
	if r.Output != "" {
		args = append(args, "--output", r.Output)
	}
	if r.MaxSize > 0 {
		args = append(args, "--max-size", strconv.FormatInt(r.MaxSize, 10))
	}
	args = append(args, TLSArgs(r.Insecure, r.CAFile)...)
	args = append(args, "--", r.Ref)
	out, err := prog.run(ctx, args, nil, r.Stderr)
	line := strings.TrimSpace(string(out))
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return "", errors.New(msg)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return "", fmt.Errorf("the image unpacker was killed by signal %d (%v) while it unpacked %s", int(st.Signal()), st.Signal(), r.Ref)
		}
		return "", fmt.Errorf("the image unpacker failed (%v) and said nothing", err)
	case err != nil:
		return "", err
	case line == "" || strings.ContainsAny(line, " \n"):
		return "", fmt.Errorf("the image unpacker gave no digest for %s (it said %q)", r.Ref, line)
	}
	return line, nil
}

// Login runs `hpcrun-unpack login ARGS...` (registry credentials; it holds
// the registry client) with stdin for --password-stdin, and returns what
// it says on success. cacheDir is where a copy of the program may run.
func Login(ctx context.Context, cacheDir string, args []string, stdin io.Reader, stderr io.Writer) (string, error) {
	return account(ctx, cacheDir, "login", args, stdin, stderr)
}

// Logout runs `hpcrun-unpack logout REGISTRY`, which removes what login
// stored, and returns what it says on success.
func Logout(ctx context.Context, cacheDir, registry string, stderr io.Writer) (string, error) {
	return account(ctx, cacheDir, "logout", []string{"--", registry}, nil, stderr)
}

// Inspect runs `hpcrun-unpack inspect ARGS... -- REF`, which describes an
// image without unpacking it, and returns the JSON it prints (an
// unpack.ImageInfo).
func Inspect(ctx context.Context, cacheDir string, args []string, ref string, stderr io.Writer) (string, error) {
	return account(ctx, cacheDir, "inspect", append(append([]string{"--cache", cacheDir}, args...), "--", ref), nil, stderr)
}

func account(ctx context.Context, cacheDir, verb string, args []string, stdin io.Reader, stderr io.Writer) (string, error) {
	prog, err := open(cacheDir)
	if err != nil {
		return "", err
	}
	defer prog.close()
	out, err := prog.run(ctx, append([]string{verb}, args...), stdin, stderr)
	line := strings.TrimSpace(string(out))
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return "", errors.New(msg)
	}
	if err != nil {
		return "", fmt.Errorf("hpcrun %s failed (%v) and said nothing", verb, err)
	}
	return line, nil
}

// program is the unpacker, ready to execute.
type program struct {
	cache string   // the cache directory, for a copy
	memfd *os.File // nil when the copy is a file
	fd    *os.File // the open program: the memfd, or the copy read-only
	path  string   // what to execute: /proc/self/fd/N of fd
}

func open(cacheDir string) (*program, error) {
	src, err := payload.Open(payloadName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotBuiltIn
	}
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if fallback.Forced(fallback.MemfdExec) {
		return copyTo(cacheDir, src)
	}
	if fd, err := unix.MemfdCreate("hpcrun-unpack", unix.MFD_CLOEXEC); err == nil {
		f := os.NewFile(uintptr(fd), "memfd:hpcrun-unpack")
		if _, err := io.Copy(f, src); err != nil {
			f.Close()
			return nil, fmt.Errorf("load the image unpacker: %w", err)
		}
		return &program{cache: cacheDir, memfd: f, fd: f, path: fdPath(f)}, nil
	}
	return copyTo(cacheDir, src)
}

func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// copyTo writes the unpacker into an unnamed file on the cache's
// filesystem (which is checked to allow exec) and returns it opened
// read-only. O_EXCL: the file can never be linked into a directory, so it
// is reachable only through this process's descriptors. The writable
// descriptor is closed before the program runs: the kernel refuses to
// execute a file open for writing (ETXTBSY), and refuses to open a running
// program for writing, so nobody can write it from the start on.
func copyTo(cacheDir string, src io.Reader) (*program, error) {
	dir := filepath.Join(cacheDir, "tmp")
	wfd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o700)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("run the image unpacker: the kernel refuses to execute it from memory (vm.memfd_noexec=2), and %s's filesystem has no unnamed files (O_TMPFILE) to run it from; give --cache (or HPCRUN_CACHE) a directory on a local filesystem, or ask your admins to set vm.memfd_noexec below 2", cacheDir)
		}
		return nil, fmt.Errorf("load the image unpacker: open an unnamed file in %s: %w", dir, err)
	}
	w := os.NewFile(uintptr(wfd), "hpcrun-unpack (unnamed, in "+dir+")")
	defer w.Close()
	if _, err := io.Copy(w, src); err != nil {
		return nil, fmt.Errorf("load the image unpacker: %w", err)
	}
	r, err := os.OpenFile(fdPath(w), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("load the image unpacker: reopen its copy read-only: %w", err)
	}
	return &program{cache: cacheDir, fd: r, path: fdPath(r)}, nil
}

func (p *program) close() {
	if p.fd != nil {
		p.fd.Close()
	}
}

// run executes the unpacker and returns its stdout. Where a memfd may not
// be executed, it retries once from a copy in the cache.
func (p *program) run(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) ([]byte, error) {
	out, err := p.exec(ctx, args, stdin, stderr)
	if p.memfd != nil && (errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EACCES)) {
		cacheDir := p.cache
		if _, serr := p.memfd.Seek(0, io.SeekStart); serr != nil {
			return nil, err
		}
		q, cerr := copyTo(cacheDir, p.memfd)
		if cerr != nil {
			return nil, cerr
		}
		defer q.close()
		out, err = q.exec(ctx, args, stdin, stderr)
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("run the image unpacker: neither memory nor %s may hold programs (noexec); give --cache (or HPCRUN_CACHE) a directory on a filesystem that allows exec", cacheDir)
		}
	}
	return out, err
}

// exec runs the program once. Why the retries on ETXTBSY: a process that
// hpcrun forks at the same moment (the job's early init) holds a copy of
// the copy's writable descriptor until its own exec closes it.
func (p *program) exec(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) ([]byte, error) {
	for wait := time.Millisecond; ; wait *= 2 {
		out, err := p.execOnce(ctx, args, stdin, stderr)
		if !errors.Is(err, unix.ETXTBSY) || wait > 500*time.Millisecond {
			return out, err
		}
		time.Sleep(wait)
	}
}

func (p *program) execOnce(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) ([]byte, error) {
	cmd := exec.CommandContext(ctx, p.path, args...)
	cmd.Args[0] = "hpcrun-unpack"
	cmd.Stdin = stdin
	cmd.Stderr = stderr
	// Why SIGTERM: the unpacker then removes its partial unpack itself.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return []byte(out.String()), err
}
