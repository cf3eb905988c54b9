package unpack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// Image is a root filesystem ready to run.
type Image struct {
	Rootfs string   // absolute path of the unpacked tree
	Env    []string // the image config's Env; nil for a plain directory
}

// OpenRootfs checks a plain root filesystem directory and returns it as an
// Image. Relative paths are taken from cwd.
func OpenRootfs(dir, cwd string) (*Image, error) {
	if dir == "" {
		return nil, errors.New("no root filesystem given")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(cwd, dir)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("rootfs %s does not exist; give the directory of an unpacked image", dir)
	case err != nil:
		return nil, fmt.Errorf("rootfs %s: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("rootfs %s is not a directory; give the directory of an unpacked image", dir)
	case dir == "/":
		return nil, errors.New("the host's / cannot be a rootfs; give the directory of an unpacked image")
	}
	return &Image{Rootfs: dir}, nil
}

// ReadFile reads a regular file of the image, resolving symlinks inside
// the rootfs as the container would. A missing file gives nil and no
// error; anything else (a FIFO that would block, a device) is an error.
func (im *Image) ReadFile(path string) ([]byte, error) {
	p, err := securejoin.SecureJoin(im.Rootfs, path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return io.ReadAll(f)
}

// Exists reports whether a path exists inside the image.
func (im *Image) Exists(path string) bool {
	p, err := securejoin.SecureJoin(im.Rootfs, path)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}
