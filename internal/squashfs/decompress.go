package squashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// The superblock's compression ids, as mksquashfs writes them.
const (
	compGzip = 1
	compLzma = 2
	compLzo  = 3
	compXz   = 4
	compLz4  = 5
	compZstd = 6
)

// Compressions names each compression id the reader reads.
var Compressions = map[uint16]string{
	compGzip: "gzip", compLzma: "lzma", compLzo: "lzo",
	compXz: "xz", compLz4: "lz4", compZstd: "zstd",
}

// decompressor inflates one block, metadata or data, into dst (whose
// length is the most the block may hold) and returns how many bytes it
// wrote. A block that would inflate past dst is an error: squashfs blocks
// have a fixed most, and a forged one must not grow without bound.
type decompressor func(src, dst []byte) (int, error)

var errOverrun = errors.New("block inflates past its size")

// newDecompressor returns the decompressor for comp.
func newDecompressor(comp uint16) (decompressor, error) {
	switch comp {
	case compGzip:
		return inflateZlib, nil
	case compLzma:
		return streamed(func(r io.Reader) (io.Reader, error) { return lzma.NewReader(r) }), nil
	case compXz:
		return streamed(func(r io.Reader) (io.Reader, error) {
			return xz.ReaderConfig{SingleStream: true}.NewReader(r)
		}), nil
	case compLzo:
		// Bare LZO1X blocks, as squashfs-tools's lzo wrapper writes
		// them.
		return func(src, dst []byte) (int, error) {
			n, err := lzo.Decompress(src, dst)
			if err != nil {
				return n, fmt.Errorf("lzo: %w", err)
			}
			return n, nil
		}, nil
	case compLz4:
		// Bare LZ4 blocks (no frame), as squashfs-tools's lz4 wrapper
		// writes them.
		return func(src, dst []byte) (int, error) {
			n, err := lz4.UncompressBlock(src, dst)
			if err != nil {
				return n, fmt.Errorf("lz4: %w", err)
			}
			return n, nil
		}, nil
	case compZstd:
		return inflateZstd, nil
	}
	return nil, fmt.Errorf("unknown compression %d", comp)
}

// zlibReaders are reused: a zlib reader's window is most of what
// inflating a block allocates.
var zlibReaders sync.Pool

func inflateZlib(src, dst []byte) (int, error) {
	br := bytes.NewReader(src)
	var zr io.ReadCloser
	if v := zlibReaders.Get(); v != nil {
		zr = v.(io.ReadCloser)
		if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
	} else {
		var err error
		if zr, err = zlib.NewReader(br); err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
	}
	n, err := fill(zr, dst)
	if err == nil {
		zlibReaders.Put(zr)
	}
	if err != nil {
		return n, fmt.Errorf("gzip: %w", err)
	}
	return n, nil
}

// zstdDecoder decodes every zstd block; DecodeAll is safe to call from
// several goroutines at once.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<20+1<<16))
})

func inflateZstd(src, dst []byte) (int, error) {
	d, err := zstdDecoder()
	if err != nil {
		return 0, fmt.Errorf("zstd: %w", err)
	}
	out, err := d.DecodeAll(src, dst[:0:len(dst)])
	switch {
	case err != nil:
		return 0, fmt.Errorf("zstd: %w", err)
	case len(out) > len(dst) || (len(out) > 0 && &out[0] != &dst[0]):
		// DecodeAll grew a new slice: the block is larger than dst.
		return 0, errOverrun
	}
	return len(out), nil
}

// streamed makes a decompressor of a streaming reader.
func streamed(open func(io.Reader) (io.Reader, error)) decompressor {
	return func(src, dst []byte) (int, error) {
		r, err := open(bytes.NewReader(src))
		if err != nil {
			return 0, err
		}
		return fill(r, dst)
	}
}

// fill reads r to its end into dst, and fails if it holds more.
func fill(r io.Reader, dst []byte) (int, error) {
	n, err := io.ReadFull(r, dst)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, nil
	case err != nil:
		return n, err
	}
	// Read on to the stream's end, where its checksum is checked.
	var one [1]byte
	switch m, err := io.ReadFull(r, one[:]); {
	case m > 0:
		return n, errOverrun
	case err != io.EOF:
		return n, err
	}
	return n, nil
}
