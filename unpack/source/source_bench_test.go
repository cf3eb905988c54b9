package source

import (
	"fmt"
	"io"
	"testing"

	"github.com/hpcrun/hpcrun/unpack"
)

// benchArchive writes an archive in format f whose one layer is size
// zero bytes.
func benchArchive(b *testing.B, f sourceFormat, size int) string {
	b.Helper()
	ib := newBuilder(b)
	m := ib.image(unpack.HostPlatform(), make([]byte, size))
	return f.make(b, ib, taggedImage{m, ""})
}

// BenchmarkOpenSourceOCIArchive opens and resolves an OCI archive whose
// layer is small or 64 MiB. The times must match: opening reads the tar
// headers and resolving reads index, manifest and config, never layer
// data.
func BenchmarkOpenSourceOCIArchive(b *testing.B) {
	benchmarkOpenSource(b, sourceFormats[1])
}

// BenchmarkOpenSourceDockerArchive does the same for a classic docker
// save archive, whose manifest is synthesised.
func BenchmarkOpenSourceDockerArchive(b *testing.B) {
	benchmarkOpenSource(b, sourceFormats[3])
}

func benchmarkOpenSource(b *testing.B, f sourceFormat) {
	for _, size := range []int{1 << 10, 64 << 20} {
		b.Run(fmt.Sprintf("layer=%dKiB", size>>10), func(b *testing.B) {
			ref := benchArchive(b, f, size)
			host := unpack.HostPlatform()
			b.ReportAllocs()
			for b.Loop() {
				src, err := Open(ref)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := src.Resolve(host); err != nil {
					b.Fatal(err)
				}
				src.Close()
			}
		})
	}
}

// BenchmarkReadLayer reads a 64 MiB layer through the verifying reader:
// the cost of checking the digest while streaming.
func BenchmarkReadLayer(b *testing.B) {
	const size = 64 << 20
	ref := benchArchive(b, sourceFormats[1], size)
	src, err := Open(ref)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	res, err := src.Resolve(unpack.HostPlatform())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	buf := make([]byte, 1<<20)
	for b.Loop() {
		r, err := src.Open(res.Manifest.Layers[0])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}
