package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpcrun/hpcrun/cmd/hpcrun/internal/unpacker"
	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// chosenImage is the root filesystem a job runs in, with what its image
// config says.
type chosenImage struct {
	*unpack.Image                   // the rootfs and its Env
	config        store.ImageConfig // WorkingDir, Entrypoint, Cmd
	digest        string            // "" for a plain directory
	hold          *os.File          // the cached image's use lock; nil for a plain directory
}

// release ends this job's use of a cached image.
func (im *chosenImage) release() {
	if im.hold != nil {
		im.hold.Close()
	}
}

// openImage resolves --image or --rootfs: a plain directory is used in
// place; an image is found in the cache from a stat of its file (the warm
// start), or else unpacked into it by the embedded unpacker.
func openImage(ctx context.Context, o *runOptions, h host, st *settings, log *logger) (*chosenImage, error) {
	plain := func(dir string) (*chosenImage, error) {
		im, err := unpack.OpenRootfs(dir, h.cwd)
		if err != nil {
			return nil, err
		}
		return &chosenImage{Image: im}, nil
	}
	platform := unpack.HostPlatform()
	if o.platform != "" {
		var err error
		if platform, err = unpack.ParsePlatform(o.platform); err != nil {
			return nil, usageError{err}
		}
	}
	switch {
	case o.image != "" && o.rootfs != "":
		return nil, usageError{errors.New("--image and --rootfs cannot be used together")}
	case o.rootfs != "":
		return plain(o.rootfs)
	case o.image == "":
		return nil, usageError{errors.New("no image: give --image REF or --rootfs DIR")}
	}
	ref := o.image
	if !filepath.IsAbs(ref) && !strings.HasPrefix(ref, unpack.RegistryPrefix) {
		ref = filepath.Join(h.cwd, ref)
	}
	loc, err := unpack.Locate(ref)
	if err != nil {
		return nil, err
	}
	if loc.Kind == unpack.Rootfs {
		return plain(loc.Path)
	}
	dir, err := st.cache(h)
	if err != nil {
		return nil, err
	}
	log.debugf("cache: %s (%s)", dir, st.conf.Cache.From)
	if st.conf.Scratch.Value != "" {
		log.debugf("scratch: %s (%s)", st.conf.Scratch.Value, st.conf.Scratch.From)
	}
	for _, src := range st.job.Sources {
		if src.Fact == "tmp dir" && strings.HasPrefix(st.conf.Cache.From, "default") {
			log.debugf("cache: $%s=%s not used: it differs between the processes of a job", src.From, src.Value)
		}
	}
	s, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	unpackIt := func() (*store.Image, error) {
		progress := "lines"
		switch {
		case log.quiet:
			progress = "none"
		case h.stderrTTY:
			progress = "bar"
		}
		d, err := unpacker.Ensure(ctx, unpacker.Request{
			Ref: ref, Cache: s.Dir, Platform: platform.String(), Progress: progress, Stderr: log.w,
			MaxSize: st.conf.MaxImageSize.Value,
		})
		if err != nil {
			return nil, err
		}
		return s.Load(store.Digest(d))
	}
	im, err := s.Lookup(loc.Key, platform.String())
	if err != nil {
		log.debugf("image %s is not in the cache (%v); unpacking it", ref, err)
		if im, err = unpackIt(); err != nil {
			return nil, err
		}
	}
	log.phase("found the image in the cache")
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
	log.debugf("image %s: %s in %s", ref, im.Digest, im.Rootfs)
	return &chosenImage{Image: im.Unpacked(), config: im.Config, digest: im.Digest.String(), hold: hold}, nil
}

// command is what the job runs: the command line's, or else the image's
// Entrypoint and Cmd, as Docker runs them. An explicit command replaces
// both, as `apptainer exec` does.
func command(args []string, cfg store.ImageConfig) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	cmd := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	if len(cmd) == 0 {
		return nil, usageError{errors.New("no command given, and the image names none; usage: hpcrun --image REF CMD [ARGS...]")}
	}
	return cmd, nil
}
