package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/unpack"
)

// The image.meta file of a published image: a sequence of NUL-terminated
// "key=value" records, the first "hpcrun-image=1". A list (env, entrypoint,
// cmd) is its key repeated, in order; an empty list is no records.
//
// Why not JSON: a job start reads this file, and the first json.Unmarshal
// of a process costs 150-300µs of reflection and page faults, a twentieth
// of hpcrun's whole start-up.

// ErrNewerFormat: the image was unpacked by a newer hpcrun, whose entries
// this one must neither use nor replace.
var ErrNewerFormat = errors.New("unpacked by a newer hpcrun, in a format this one does not know")

const (
	metaFile   = "image.meta"
	metaHeader = "hpcrun-image=1"
)

// encodeMeta writes m. A NUL byte in any value is refused: no record could
// hold it, and execve could not pass it on anyway.
func encodeMeta(m Meta) ([]byte, error) {
	var b bytes.Buffer
	var bad []string
	put := func(k, v string) {
		if strings.IndexByte(v, 0) >= 0 {
			bad = append(bad, k)
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteByte(0)
	}
	b.WriteString(metaHeader)
	b.WriteByte(0)
	put("ref", m.Ref)
	put("digest", m.Digest.String())
	put("platform", m.Platform)
	put("unpacked", m.Unpacked.UTC().Format(time.RFC3339Nano))
	put("boot", m.Boot)
	if m.Sentinel {
		put("sentinel", "1")
	}
	put("user", m.Config.User)
	put("workdir", m.Config.WorkingDir)
	for _, v := range m.Config.Env {
		put("env", v)
	}
	for _, v := range m.Config.Entrypoint {
		put("entrypoint", v)
	}
	for _, v := range m.Config.Cmd {
		put("cmd", v)
	}
	if bad != nil {
		return nil, fmt.Errorf("the image config has a NUL byte in %s", strings.Join(bad, ", "))
	}
	return b.Bytes(), nil
}

// decodeMeta reads what encodeMeta wrote. Unknown keys are skipped, so
// that a newer hpcrun may add some.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if !bytes.HasPrefix(b, []byte(metaHeader+"\x00")) {
		if bytes.HasPrefix(b, []byte("hpcrun-image=")) {
			return m, ErrNewerFormat
		}
		return m, errors.New("not an hpcrun image.meta")
	}
	b = b[len(metaHeader)+1:]
	if len(b) > 0 && b[len(b)-1] != 0 {
		return m, errors.New("truncated")
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		rec := string(b[:i])
		b = b[i+1:]
		k, v, ok := strings.Cut(rec, "=")
		if !ok {
			return m, fmt.Errorf("bad record %q", rec)
		}
		switch k {
		case "ref":
			m.Ref = v
		case "digest":
			m.Digest = Digest(v)
		case "platform":
			m.Platform = v
		case "unpacked":
			m.Unpacked, _ = time.Parse(time.RFC3339Nano, v)
		case "boot":
			m.Boot = v
		case "sentinel":
			m.Sentinel = v == "1"
		case "user":
			m.Config.User = v
		case "workdir":
			m.Config.WorkingDir = v
		case "env":
			m.Config.Env = append(m.Config.Env, v)
		case "entrypoint":
			m.Config.Entrypoint = append(m.Config.Entrypoint, v)
		case "cmd":
			m.Config.Cmd = append(m.Config.Cmd, v)
		}
	}
	return m, nil
}

// Pick finds the one entry that name names: its digest, at least 6 hex
// digits of it (with or without "sha256:"), or the ref it was unpacked
// from, relative to cwd or absolute, or as pulled (REGISTRY/REPO:TAG, with
// or without docker://).
func Pick(entries []Entry, name, cwd string) (Entry, error) {
	ref := name
	if !filepath.IsAbs(ref) {
		ref = filepath.Join(cwd, ref)
	}
	alg, hex, ok := strings.Cut(name, ":")
	if !ok {
		alg, hex = "", name
	}
	byHex := len(hex) >= 6 && strings.Trim(hex, "0123456789abcdef") == ""
	// A pulled image's ref is docker://REF: it is named as pulled, with or
	// without docker://, in any spelling of the same reference.
	pulled := registryName(unpack.RegistryPrefix + strings.TrimPrefix(name, unpack.RegistryPrefix))
	var hits []Entry
	for _, e := range entries {
		if e.Ref == ref || e.Ref == name || (pulled != "" && registryName(e.Ref) == pulled) ||
			(byHex && (alg == "" || alg == e.Digest.Algorithm()) && strings.HasPrefix(e.Digest.Encoded(), hex)) {
			hits = append(hits, e)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return Entry{}, fmt.Errorf("no cached image %q: give its digest (6 hex digits or more) or the ref it was unpacked from (see hpcrun images)", name)
	}
	return Entry{}, fmt.Errorf("%s names %d cached images; give more of the digest", name, len(hits))
}

// registryName is ref's full registry name when ref is docker://REF, else "".
func registryName(ref string) string {
	r, ok := strings.CutPrefix(ref, unpack.RegistryPrefix)
	if !ok {
		return ""
	}
	full, err := unpack.NormalizeRegistryRef(r)
	if err != nil {
		return ""
	}
	return full
}

// WriteEntries writes the cached images as hpcrun images shows them: a
// table of digest, size, the pulled blobs' size, last use and the ref,
// which comes from the user's command line and so is made safe to print.
func WriteEntries(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIGEST\tSIZE\tBLOBS\tLAST USE\tREF")
	for _, e := range entries {
		ref, blobs := e.Ref, "-"
		if e.Damaged {
			ref = "(damaged: a temp cleaner removed files from it; unpacked again at its next use)"
		}
		if e.Blobs > 0 {
			blobs = Bytes(e.Blobs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Digest.Abbrev(), Bytes(e.Size), blobs,
			e.LastUse.Local().Format(time.DateTime), termsafe.Line(ref))
	}
	return tw.Flush()
}

// WriteEntriesJSON writes the cached images as one JSON array, sizes in
// bytes, for scripts.
func WriteEntriesJSON(w io.Writer, entries []Entry) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(append([]Entry{}, entries...))
}
