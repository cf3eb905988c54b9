package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/internal/unpacker"
	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// InspectRequest is what hpcrun inspect asks for.
type InspectRequest struct {
	Ref      string // as --image takes it, or a cached image's digest
	Cache    string // --cache
	Platform string // --platform; "" for this node's
	Format   string // "table" or "json"
	Insecure bool   // --tls-verify=false, --insecure
	CAFile   string // --ca-file
}

// Inspect describes r.Ref, through the unpacker (which reads images), and
// writes it to w in r.Format. Nothing is unpacked.
func Inspect(ctx context.Context, r InspectRequest, h Host, w io.Writer, log *Log) error {
	if r.Format != "table" && r.Format != "json" {
		return usage("--format %q: want table or json", r.Format)
	}
	if r.Ref == "" {
		return usage("no image given; usage: hpcrun inspect [--format table|json] REF")
	}
	var args []string
	if r.Platform != "" {
		p, err := unpack.ParsePlatform(r.Platform)
		if err != nil {
			return UsageError{err}
		}
		args = append(args, "--platform", p.String())
	}
	if strings.HasPrefix(r.Ref, unpack.RegistryPrefix) {
		if _, err := unpack.Locate(r.Ref); err != nil {
			return UsageError{err}
		}
	}
	s, _, err := OpenStore(h, r.Cache)
	if err != nil {
		return err
	}
	args = append(args, unpacker.TLSArgs(r.Insecure, AbsPath(h, r.CAFile))...)
	out, err := unpacker.Inspect(ctx, s.Dir, args, r.Ref, log.W)
	if err != nil {
		return err
	}
	var info unpack.ImageInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return fmt.Errorf("the image unpacker described %s in a form this hpcrun does not read: %v", r.Ref, err)
	}
	if r.Format == "json" {
		b, err := json.MarshalIndent(&info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return WriteImageInfo(w, &info)
}

// WriteImageInfo writes info as hpcrun inspect's table: a field a line,
// then the layers. Whatever the image says is escaped (termsafe).
func WriteImageInfo(w io.Writer, info *unpack.ImageInfo) error {
	q := termsafe.Escape
	row := func(k, v string) { fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-12s%s", k+":", v), " ")) }
	list := func(v []string) string {
		if len(v) == 0 {
			return "-"
		}
		// As JSON, as Docker shows them: the words stay apart, and
		// control characters come out as \u escapes.
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(v)
		return q(strings.TrimSpace(b.String()))
	}
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return q(s)
	}
	row("Image", q(info.Ref))
	row("Digest", q(info.Digest))
	row("Platform", q(info.Platform))
	created := "-"
	if info.Created != nil {
		created = info.Created.Local().Format(time.DateTime)
	}
	row("Created", created)
	row("Entrypoint", list(info.Entrypoint))
	row("Cmd", list(info.Cmd))
	row("WorkingDir", orDash(info.WorkingDir))
	row("User", orDash(info.User))
	switch c := info.Cached; {
	case c == nil:
		row("Cached", "no (unpacked by its first run on this node)")
	case c.Damaged:
		row("Cached", q(c.Dir)+" (damaged: a temp cleaner removed files from it; unpacked again at its next use)")
	default:
		row("Cached", fmt.Sprintf("%s/rootfs, %s on disk", q(c.Dir), store.Bytes(c.Size)))
	}
	if len(info.Env) == 0 {
		row("Env", "-")
	} else {
		row("Env", "")
	}
	for _, e := range info.Env {
		fmt.Fprintf(w, "  %s\n", q(e))
	}
	if len(info.Labels) == 0 {
		row("Labels", "-")
	} else {
		row("Labels", "")
	}
	for _, k := range slices.Sorted(maps.Keys(info.Labels)) {
		fmt.Fprintf(w, "  %s=%s\n", q(k), q(info.Labels[k]))
	}
	if info.Partial {
		row("Layers", "unknown: the file it was unpacked from is gone or changed; this is the cache's record")
		return nil
	}
	row("Layers", fmt.Sprintf("%d, %s", len(info.Layers), store.Bytes(info.Size)))
	if len(info.Layers) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DIGEST\tSIZE\tUNCOMPRESSED\tMEDIA TYPE")
	for _, l := range info.Layers {
		u := "-"
		if l.Uncompressed != nil {
			u = store.Bytes(*l.Uncompressed)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", q(store.Digest(l.Digest).Abbrev()), store.Bytes(l.Size), u, q(l.MediaType))
	}
	return tw.Flush()
}
