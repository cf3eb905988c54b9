package unpack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Sentinel errors of Locate, shared with package source.
var (
	// ErrNotImage: the file is none of the formats hpcrun reads.
	ErrNotImage = errors.New("not an image")
	// ErrNoTag: the tag asked for is not there, or the source holds several
	// images and none was named.
	ErrNoTag = errors.New("no such tag")
)

// Kind is what an --image reference names.
type Kind int

const (
	Archive  Kind = iota + 1 // a file: an OCI archive, a docker save, a SIF or a squashfs
	Layout                   // an OCI layout directory (it has index.json)
	Rootfs                   // a plain directory, used in place
	Registry                 // docker://REF: an image in a registry
)

// Location is an --image reference, found with stat alone: nothing is
// opened or read, so that a warm start costs a few system calls.
type Location struct {
	Ref  string // as the user gave it
	Path string // the file or directory, without the tag
	Tag  string
	Kind Kind
	// Key identifies the source's content cheaply, for the cache's warm
	// path: the path, device, inode, size, mtime and ctime of the archive
	// (of a layout's index.json) and the tag. Rewriting the file changes
	// it, even if the mtime is set back, since no one can set the ctime.
	Key string
}

// Locate finds the file ref names and the tag after it. A path that exists
// as given is never split at a colon; otherwise the longest prefix ending
// before a colon that exists wins, so "img.tar:alpine:3" is img.tar with
// tag "alpine:3". It returns an *fs.PathError when nothing exists, and
// errors wrapping ErrNoTag or ErrNotImage for a bad tag or file type.
//
// A docker://REF reference is a Registry location, keyed by its full name
// (NormalizeRegistryRef); nothing is looked up on the network.
func Locate(ref string) (*Location, error) {
	if r, ok := strings.CutPrefix(ref, RegistryPrefix); ok {
		full, err := NormalizeRegistryRef(r)
		if err != nil {
			return nil, &locateError{ErrNotImage, err.Error()}
		}
		return &Location{Ref: ref, Path: full, Kind: Registry, Key: RegistryPrefix + full}, nil
	}
	loc := &Location{Ref: ref, Path: ref}
	fi, err := os.Stat(ref)
	if err != nil {
		statErr := err
		for i := strings.LastIndexByte(ref, ':'); i > 0 && fi == nil; i = strings.LastIndexByte(ref[:i], ':') {
			if fi, err = os.Stat(ref[:i]); err == nil {
				loc.Path, loc.Tag = ref[:i], ref[i+1:]
				if loc.Tag == "" {
					return nil, &locateError{ErrNoTag, fmt.Sprintf("%s: empty tag after the colon", ref)}
				}
			}
		}
		if fi == nil {
			var pe *fs.PathError
			if errors.As(statErr, &pe) {
				statErr = pe.Err
			}
			return nil, &fs.PathError{Op: "open image", Path: ref, Err: statErr}
		}
	}
	switch {
	case fi.Mode().IsRegular():
		loc.Kind = Archive
		loc.Key = statKey(loc.Path, fi, loc.Tag)
		return loc, nil
	case !fi.IsDir():
		return nil, &locateError{ErrNotImage, fmt.Sprintf("%s is not a regular file or a directory", ref)}
	}
	index := filepath.Join(loc.Path, "index.json")
	ifi, err := os.Stat(index)
	switch {
	case errors.Is(err, fs.ErrNotExist) && loc.Tag != "":
		return nil, &locateError{ErrNotImage, fmt.Sprintf("%s has no index.json, so it is not an OCI layout and has no tag %q", loc.Path, loc.Tag)}
	case errors.Is(err, fs.ErrNotExist):
		// A root filesystem has /bin (a directory or a link to usr/bin);
		// an empty or junk directory would fail later with "command not
		// found", far from the mistake.
		if _, err := os.Lstat(filepath.Join(loc.Path, "bin")); err != nil {
			return nil, &locateError{ErrNotImage, fmt.Sprintf("%s is no image: it has no index.json (an OCI layout) and no /bin (a root filesystem)", loc.Path)}
		}
		loc.Kind = Rootfs
		return loc, nil
	case err != nil:
		return nil, fmt.Errorf("open image %s: %w", ref, err)
	}
	loc.Kind = Layout
	loc.Key = statKey(index, ifi, loc.Tag)
	return loc, nil
}

// statKey describes a file by what stat says, without reading it.
func statKey(path string, fi os.FileInfo, tag string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	var dev, ino uint64
	var ctime int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev, ino = uint64(st.Dev), st.Ino
		ctime = st.Ctim.Nano()
	}
	return fmt.Sprintf("path=%q dev=%d ino=%d size=%d mtime=%d ctime=%d tag=%q",
		path, dev, ino, fi.Size(), fi.ModTime().UnixNano(), ctime, tag)
}

// locateError is a one-line message tagged with a sentinel for errors.Is.
type locateError struct {
	sentinel error
	msg      string
}

func (e *locateError) Error() string { return e.msg }
func (e *locateError) Unwrap() error { return e.sentinel }
