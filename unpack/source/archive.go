package source

// Tar archives read in place. indexTar walks the headers once with
// archive/tar on the *os.File itself: after Next, the file offset is where
// the member's data begins, and tar.Reader skips data by seeking, so
// indexing a multi-GB archive reads a few KiB. A member is later served by
// an io.SectionReader over the file, which reads with ReadAt and so can
// serve several blobs at once.
//
// Member names are cleaned ("./blobs/x" is "blobs/x"); an absolute name or
// one that climbs out with ".." makes the archive invalid, and so does a
// name given twice, unless both are directories or both are same-sized
// blobs under blobs/ (whose content the digest checks anyway). Symlinks
// and hardlinks between members are followed inside the archive, which
// `docker save` uses for a layer that appears twice.

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// maxMembers caps how many members an archive may have, so a hostile one
// of millions of empty files cannot use up memory. A real image has a few
// per layer.
const maxMembers = 1 << 16

// maxLinks caps how many links are followed to find a member.
const maxLinks = 16

type member struct {
	typ       byte // tar.TypeReg, TypeDir, TypeSymlink, TypeLink or another
	off, size int64
	link      string // a link's target, as the archive gives it
}

// tarFiles is a tar archive whose members are read in place.
type tarFiles struct {
	ref     string
	f       *os.File
	members map[string]*member
}

// sniffArchive tells a compressed file or an empty one apart from a tar
// before indexing, for a clearer message.
func sniffArchive(ref string, f *os.File) error {
	var head [6]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read image %s: %w", ref, err)
	}
	magic := []struct {
		prefix []byte
		what   string
	}{
		{[]byte{0x1f, 0x8b}, "gzip"},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd"},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz"},
		{[]byte("BZh"), "bzip2"},
	}
	switch {
	case n == 0:
		return newError(ErrNotImage, "%s is an empty file, not an image", ref)
	default:
		for _, m := range magic {
			if bytes.HasPrefix(head[:n], m.prefix) {
				return newError(ErrNotImage, "%s is %s-compressed; hpcrun reads uncompressed image archives, so decompress it first", ref, m.what)
			}
		}
	}
	return nil
}

// indexTar reads the headers of the tar archive f, of size bytes.
func indexTar(ref string, f *os.File, size int64) (*tarFiles, error) {
	t := &tarFiles{ref: ref, f: f, members: map[string]*member{}}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read image %s: %w", ref, err)
	}
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		switch {
		case err == io.EOF && n == 0:
			return nil, newError(ErrNotImage, "%s is an empty tar archive, not an image", ref)
		case err == io.EOF:
			return t, nil
		case err != nil && n == 0:
			return nil, newError(ErrNotImage, "%s is not a tar archive (%w)", ref, err)
		case err != nil:
			return nil, newError(ErrInvalid, "%s: truncated or corrupt tar archive after %d members: %w", ref, n, err)
		case n >= maxMembers:
			return nil, newError(ErrInvalid, "%s has more than %d members; not an image archive", ref, maxMembers)
		}
		name, err := cleanMember(hdr.Name)
		if err != nil {
			return nil, newError(ErrInvalid, "%s: member %.200q %w", ref, hdr.Name, err)
		}
		if name == "" {
			continue // the archive's root directory
		}
		m := &member{typ: hdr.Typeflag, size: hdr.Size}
		switch hdr.Typeflag {
		case tar.TypeReg:
			if isSparse(hdr) {
				return nil, newError(ErrUnsupported, "%s: member %q is a sparse file", ref, name)
			}
			if m.off, err = f.Seek(0, io.SeekCurrent); err != nil {
				return nil, fmt.Errorf("read image %s: %w", ref, err)
			}
			if m.off+m.size > size {
				return nil, newError(ErrInvalid, "%s is truncated: member %q needs %d bytes and the file ends %d bytes after its start",
					ref, name, m.size, size-m.off)
			}
		case tar.TypeSymlink, tar.TypeLink:
			m.link, m.size = hdr.Linkname, 0
		default:
			m.size = 0
		}
		if prev, ok := t.members[name]; ok {
			if conflicts(name, prev, m) {
				return nil, newError(ErrInvalid, "%s: member %q appears twice", ref, name)
			}
			continue
		}
		t.members[name] = m
	}
}

// isSparse reports a PAX-format sparse file, whose data section is not the
// file's content.
func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// conflicts says whether a member given twice makes the archive ambiguous.
func conflicts(name string, a, b *member) bool {
	switch {
	case a.typ == tar.TypeDir && b.typ == tar.TypeDir:
		return false
	case a.typ == tar.TypeReg && b.typ == tar.TypeReg && a.size == b.size && strings.HasPrefix(name, "blobs/"):
		return false // content-addressed: whichever is read, its digest is checked
	}
	return true
}

// cleanMember turns a member name into the slash path it stands for
// relative to the archive's root ("" for the root itself).
func cleanMember(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errors.New("has an absolute name")
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.New("climbs out of the archive")
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (t *tarFiles) has(name string) bool {
	_, ok := t.members[name]
	return ok
}

// lookup finds the regular member name stands for, following links.
func (t *tarFiles) lookup(name string) (*member, error) {
	orig := name
	for range maxLinks {
		m, ok := t.members[name]
		if !ok {
			return nil, fmt.Errorf("no member %q in %s: %w", name, t.ref, fs.ErrNotExist)
		}
		target := m.link
		switch m.typ {
		case tar.TypeReg:
			return m, nil
		case tar.TypeSymlink:
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			target = strings.TrimLeft(target, "/") // the archive's root, never the host's
		case tar.TypeLink:
		default:
			return nil, newError(ErrInvalid, "member %q of %s is not a regular file", name, t.ref)
		}
		var err error
		if name, err = cleanMember(target); err != nil || name == "" {
			return nil, newError(ErrInvalid, "member %q of %s links to %.200q, outside the archive", orig, t.ref, m.link)
		}
	}
	return nil, newError(ErrInvalid, "member %q of %s: more than %d links to follow", orig, t.ref, maxLinks)
}

func (t *tarFiles) open(name string) (io.ReadCloser, int64, error) {
	m, err := t.lookup(name)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(io.NewSectionReader(t.f, m.off, m.size)), m.size, nil
}

func (t *tarFiles) size(name string) (int64, error) {
	m, err := t.lookup(name)
	if err != nil {
		return 0, err
	}
	return m.size, nil
}

func (t *tarFiles) close() error { return t.f.Close() }
