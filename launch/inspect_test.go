package launch

import (
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/unpack"
)

// Text from the image reaches the terminal escaped.
func TestWriteImageInfoEscapes(t *testing.T) {
	size := int64(2048)
	info := &unpack.ImageInfo{
		Ref: "x.tar", Digest: "sha256:" + strings.Repeat("a", 64), Platform: "linux/amd64",
		Env: []string{"A=\x1b[2J"}, Cmd: []string{"echo", "\u009b31m"}, Labels: map[string]string{"k\x1b]0;": "v\x07"},
		Layers: []unpack.LayerInfo{{Digest: "sha256:" + strings.Repeat("b", 64), MediaType: "application/vnd.oci.image.layer.v1.tar", Size: size, Uncompressed: &size}},
		Size:   size,
	}
	var b strings.Builder
	if err := WriteImageInfo(&b, info); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\u009b") {
		t.Errorf("control characters printed raw:\n%q", out)
	}
	for _, want := range []string{`A=\x1b[2J`, `k\x1b]0;=v\x07`, `Cmd:        ["echo","\u009b31m"]`, "sha256:bbbbbbbbbbbb  2.0 KiB  2.0 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
