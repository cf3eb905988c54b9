package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hpcrun/hpcrun/internal/unpacker"
	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// Image is the root filesystem a job runs in, with what its image config
// says.
type Image struct {
	*unpack.Image                   // the rootfs and its Env
	Config        store.ImageConfig // WorkingDir, Entrypoint, Cmd
	Digest        string            // "" for a plain directory
	hold          *os.File          // the cached image's use lock; nil for a plain directory
}

// Release ends this job's use of a cached image.
func (im *Image) Release() {
	if im.hold != nil {
		im.hold.Close()
	}
}

// Hold is the lock that keeps a cached image in use, for a container that
// outlives this process to hold; nil for a plain directory.
func (im *Image) Hold() *os.File { return im.hold }

// OpenImage resolves --image or --rootfs: a plain directory is used in
// place; an image is found in the cache from a stat of its file (the warm
// start), or else unpacked into it by the embedded unpacker.
func OpenImage(ctx context.Context, r *Request, h Host, st *Settings, log *Log) (*Image, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	plain := func(flag, dir string) (*Image, error) {
		im, err := unpack.OpenRootfs(dir, h.Cwd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return &Image{Image: im}, nil
	}
	platform := unpack.HostPlatform()
	if r.Platform != "" {
		var err error
		if platform, err = unpack.ParsePlatform(r.Platform); err != nil {
			return nil, UsageError{err}
		}
	}
	if r.Rootfs != "" {
		return plain("--rootfs", r.Rootfs)
	}
	ref := r.Image
	if !filepath.IsAbs(ref) && !strings.HasPrefix(ref, unpack.RegistryPrefix) {
		ref = filepath.Join(h.Cwd, ref)
	}
	loc, err := unpack.Locate(ref)
	if err != nil {
		return nil, err
	}
	if loc.Kind == unpack.Rootfs {
		return plain("--image", loc.Path)
	}
	dir, err := st.Cache(h)
	if err != nil {
		return nil, err
	}
	log.Debugf("cache: %s (%s)", dir, st.Conf.Cache.From)
	if st.Conf.Scratch.Value != "" {
		log.Debugf("scratch: %s (%s)", st.Conf.Scratch.Value, st.Conf.Scratch.From)
	}
	for _, src := range st.Job.Sources {
		if src.Fact == "tmp dir" && strings.HasPrefix(st.Conf.Cache.From, "default") {
			log.Debugf("cache: $%s=%s not used: it differs between the processes of a job", src.From, src.Value)
		}
	}
	s, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	unpackIt := func() (*store.Image, error) {
		d, err := unpacker.Ensure(ctx, unpacker.Request{
			Ref: ref, Cache: s.Dir, Platform: platform.String(), Progress: Progress(log, h), Stderr: log.W,
			MaxSize: st.Conf.MaxImageSize.Value, Insecure: r.Insecure, CAFile: AbsPath(h, r.CAFile),
		})
		if err != nil {
			return nil, err
		}
		return s.Load(store.Digest(d))
	}
	im, err := s.Lookup(loc.Key, platform.String())
	if err != nil {
		log.Debugf("image %s is not in the cache (%v); unpacking it", ref, err)
		if im, err = unpackIt(); err != nil {
			return nil, err
		}
	}
	log.Phase("found the image in the cache")
	hold, err := s.Hold(im.Digest)
	if errors.Is(err, store.ErrNotCached) {
		// Removed (hpcrun rmi, prune) between the lookup and now: bring
		// it back once.
		if im, err = unpackIt(); err == nil {
			hold, err = s.Hold(im.Digest)
		}
	}
	if err != nil {
		return nil, err
	}
	log.Debugf("image %s: %s in %s", ref, im.Digest, im.Rootfs)
	return &Image{Image: im.Unpacked(), Config: im.Config, Digest: im.Digest.String(), hold: hold}, nil
}

// Progress is how the unpacker shows its progress: a bar at a terminal,
// lines in a log, nothing with -q.
func Progress(log *Log, h Host) string {
	switch {
	case log.Quiet:
		return "none"
	case h.StderrTTY:
		return "bar"
	}
	return "lines"
}

// Command is what the job runs, by the first rule that applies:
//   - --entrypoint E: E with the ARGS; the image's Cmd is dropped, as
//     Docker drops it;
//   - --run: the image's Entrypoint with the ARGS, or with its Cmd when
//     there are none (docker run IMG ARGS, apptainer run IMG ARGS); with
//     no Entrypoint, the ARGS replace the Cmd;
//   - CMD ARGS: the command line's, replacing Entrypoint and Cmd, as
//     `apptainer exec` does;
//   - none: the image's Entrypoint and Cmd.
//
// An image format with a default command of its own chooses it here.
func Command(r *Request, cfg store.ImageConfig) ([]string, error) {
	var cmd []string
	switch {
	case r.Entrypoint != nil:
		cmd = append([]string{*r.Entrypoint}, r.Args...)
	case r.Run && len(r.Args) > 0:
		cmd = append(slices.Clone(cfg.Entrypoint), r.Args...)
	case len(r.Args) > 0:
		return r.Args, nil
	default:
		cmd = append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	}
	if len(cmd) == 0 {
		return nil, usage("no command given, and the image names none; usage: hpcrun --image REF CMD [ARGS...]")
	}
	return cmd, nil
}

// apptainerEnv is where an Apptainer image keeps the scripts that make
// its environment: conda and module-style images set PATH there.
const apptainerEnv = "/.singularity.d/env"

// sourceEnv sources the scripts in order and then runs the command, as
// Apptainer's action scripts do. Its variable is unset before the exec so
// that the job does not see it.
const sourceEnv = `for __hpcrun_env in /.singularity.d/env/*.sh; do if [ -f "$__hpcrun_env" ]; then . "$__hpcrun_env"; fi; done; unset __hpcrun_env; exec "$@"`

// withImageEnv is cmd, run through the image's /bin/sh after its
// Apptainer environment scripts when it has them (a SIF, or an image
// built from one); otherwise cmd as it is.
func withImageEnv(cmd []string, im *unpack.Image) []string {
	if im == nil || !im.Exists(apptainerEnv) || !im.Exists("/bin/sh") {
		return cmd
	}
	return append([]string{"/bin/sh", "-c", sourceEnv, "/bin/sh"}, cmd...)
}
