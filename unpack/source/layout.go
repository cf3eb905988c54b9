package source

// OCI layouts: a directory, an OCI archive, or a docker save tar that has
// an index.json (Docker 25 and later write one next to manifest.json).
//
// index.json lists images. A :TAG keeps the entries whose
// org.opencontainers.image.ref.name (or containerd's
// io.containerd.image.name) is TAG, or ends in ":TAG" or "/TAG", so both
// "latest" and "alpine:latest" find docker.io/library/alpine:latest.
// Without a tag, index.json may hold one image under several tags, or the
// manifests of one image for several platforms; entries under two tags
// with different digests are ambiguous and need a tag.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// annotationContainerdName is where containerd and Docker put an image's
// full name in index.json.
const annotationContainerdName = "io.containerd.image.name"

// ociSource is an image whose entry point is an index.json.
type ociSource struct {
	*store
	top []ispec.Descriptor // index.json's entries, those of the tag
}

// newOCISource reads the layout's oci-layout and index.json and keeps the
// entries the tag names.
func newOCISource(st *store, tag string) (Source, error) {
	if _, err := st.files.size("oci-layout"); err == nil {
		data, err := st.readFile("oci-layout")
		if err != nil {
			return nil, err
		}
		var l ispec.ImageLayout
		if err := json.Unmarshal(data, &l); err != nil {
			return nil, newError(ErrInvalid, "oci-layout of %s: invalid JSON: %w", st.ref, err)
		}
		if l.Version != ispec.ImageLayoutVersion {
			return nil, newError(ErrUnsupported, "%s is an OCI layout of version %.40q; hpcrun reads %s", st.ref, l.Version, ispec.ImageLayoutVersion)
		}
	}
	data, err := st.readFile("index.json")
	if err != nil {
		return nil, err
	}
	var idx ispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, newError(ErrInvalid, "index.json of %s: invalid JSON: %w", st.ref, err)
	}
	if err := checkIndex(&idx, "index.json of "+st.ref); err != nil {
		return nil, err
	}
	top, err := selectTag(st.file, tag, idx.Manifests)
	if err != nil {
		return nil, err
	}
	return &ociSource{store: st, top: top}, nil
}

// Resolve implements Source.
func (s *ociSource) Resolve(p Platform) (*Resolved, error) {
	return s.resolveIndex(s.top, p)
}

// selectTag keeps the entries of index.json that tag names; file is the
// layout or archive, for messages.
func selectTag(file, tag string, entries []ispec.Descriptor) ([]ispec.Descriptor, error) {
	var tags []string
	for _, e := range entries {
		if n := refName(e); n != "" && !slices.Contains(tags, n) {
			tags = append(tags, n)
		}
	}
	if len(entries) == 0 {
		return nil, newError(ErrInvalid, "index.json of %s lists no images", file)
	}
	if tag == "" {
		if severalImages(entries) {
			return nil, newError(ErrNoTag, "%s holds several images; name one as %s:TAG (it has %s)", file, file, quoteList(tags))
		}
		return entries, nil
	}
	var kept []ispec.Descriptor
	for _, e := range entries {
		if tagMatches(e.Annotations[ispec.AnnotationRefName], tag) || tagMatches(e.Annotations[annotationContainerdName], tag) {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		if len(tags) == 0 {
			return nil, newError(ErrNoTag, "no tag %q in %s; its images have no tags", tag, file)
		}
		return nil, newError(ErrNoTag, "no tag %q in %s; it has %s", tag, file, quoteList(tags))
	}
	if severalImages(kept) {
		var names []string
		for _, e := range kept {
			if n := refName(e); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		return nil, newError(ErrNoTag, "tag %q of %s names several images (%s); give the whole name", tag, file, quoteList(names))
	}
	return kept, nil
}

// severalImages says whether entries are distinct images under different
// names, rather than one image under several names or one name for
// several platforms.
func severalImages(entries []ispec.Descriptor) bool {
	byName := map[string][]string{}
	for _, e := range entries {
		if n := refName(e); n != "" && !slices.Contains(byName[n], string(e.Digest)) {
			byName[n] = append(byName[n], string(e.Digest))
		}
	}
	var first []string
	for _, ds := range byName {
		slices.Sort(ds)
		if first == nil {
			first = ds
		} else if !slices.Equal(first, ds) {
			return true
		}
	}
	return false
}

// refName is the name index.json gives an entry, if any.
func refName(d ispec.Descriptor) string {
	if n := d.Annotations[ispec.AnnotationRefName]; n != "" {
		return n
	}
	return d.Annotations[annotationContainerdName]
}

// tagMatches says whether name ("latest", "alpine:latest",
// "docker.io/library/alpine:latest") is what tag asks for.
func tagMatches(name, tag string) bool {
	return name != "" && (name == tag || strings.HasSuffix(name, ":"+tag) || strings.HasSuffix(name, "/"+tag))
}

// quoteList formats names for a message, at most ten of them.
func quoteList(names []string) string {
	var b strings.Builder
	for i, n := range names {
		if i == 10 {
			fmt.Fprintf(&b, " and %d more", len(names)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.100q", n)
	}
	return b.String()
}

// dirFiles is an OCI layout directory.
type dirFiles string

// open opens a regular file of the layout. O_NONBLOCK keeps a FIFO put
// where a blob should be from blocking the open; it is then refused.
func (d dirFiles) open(name string) (io.ReadCloser, int64, error) {
	f, err := os.OpenFile(filepath.Join(string(d), filepath.FromSlash(name)), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = newError(ErrInvalid, "%s is not a regular file", f.Name())
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (d dirFiles) size(name string) (int64, error) {
	fi, err := os.Stat(filepath.Join(string(d), filepath.FromSlash(name)))
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, newError(ErrInvalid, "%s is not a regular file", filepath.Join(string(d), name))
	}
	return fi.Size(), nil
}

func (dirFiles) close() error { return nil }
