package cache

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
	"time"
)

// What goes in comes out, in order, whatever the sizes of the writes and
// the reads; the writer's error reaches the reader at the end.
func TestChunkPipe(t *testing.T) {
	data := make([]byte, 5<<20+123)
	rand.New(rand.NewSource(1)).Read(data)
	for _, tc := range []struct{ chunk, depth, write, read int }{
		{1 << 20, 6, 1 << 20, 32 << 10}, {1000, 2, 7, 4096}, {64, 1, 1 << 16, 10}, {1 << 16, 3, 1<<16 + 1, 1 << 16},
	} {
		for _, readFrom := range []bool{false, true} {
			p := newChunkPipe(tc.chunk, tc.depth)
			go func() {
				if readFrom {
					// ReadFrom, from a reader giving tc.write bytes a read.
					n, err := p.ReadFrom(io.LimitReader(&pieceReader{data, tc.write}, int64(len(data))))
					if err != nil || n != int64(len(data)) {
						t.Errorf("ReadFrom = %d, %v", n, err)
					}
					p.CloseWrite(nil)
					return
				}
				for b := data; len(b) > 0; {
					n := min(tc.write, len(b))
					if _, err := p.Write(b[:n]); err != nil {
						t.Error(err)
						return
					}
					b = b[n:]
				}
				p.CloseWrite(nil)
			}()
			chunkPipeCheck(t, p, tc.read, data, tc)
			p.release()
		}
	}

	p := newChunkPipe(16, 2)
	boom := errors.New("boom")
	go func() { p.Write([]byte("abc")); p.CloseWrite(boom) }()
	b, err := io.ReadAll(p)
	if string(b) != "abc" || !errors.Is(err, boom) {
		t.Errorf("ReadAll = %q, %v; want abc and the writer's error", b, err)
	}
}

// pieceReader reads data n bytes at a time.
type pieceReader struct {
	data []byte
	n    int
}

func (r *pieceReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), r.n)], r.data)
	r.data = r.data[k:]
	return k, nil
}

// chunkPipeCheck reads p to its end, read bytes at a time, and compares.
func chunkPipeCheck(t *testing.T, p *chunkPipe, read int, data []byte, tc any) {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, read)
	for {
		n, err := p.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Errorf("%+v: got %d bytes, not what was written", tc, got.Len())
	}
}

// A reader that stops unblocks a writer waiting for room, with its error.
func TestChunkPipeReaderStops(t *testing.T) {
	p := newChunkPipe(8, 1)
	stop := errors.New("stopped")
	werr := make(chan error, 1)
	go func() {
		_, err := p.Write(make([]byte, 1<<10)) // far more than fits
		werr <- err
	}()
	time.Sleep(10 * time.Millisecond)
	p.CloseRead(stop)
	select {
	case err := <-werr:
		if !errors.Is(err, stop) {
			t.Errorf("Write after CloseRead: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer stayed blocked")
	}
}
