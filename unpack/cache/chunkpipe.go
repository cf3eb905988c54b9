package cache

import (
	"bufio"
	"io"
	"sync"
)

// chunkPipe is io.Pipe with room: the writer hands over whole chunks and
// goes on while up to depth of them wait for the reader. io.Pipe makes
// each Write wait until the reader has taken it, so the decompressor and
// the extractor take turns whenever one of them slows down (a run of
// small files, a big file's writes); with chunks in flight each runs at
// its own pace. Memory: depth+2 chunks.
type chunkPipe struct {
	full chan []byte // chunks written, in order
	free chan []byte // chunks to reuse
	done chan struct{}
	once sync.Once
	werr error // set before full is closed: the writer's error, or nil

	rerrOnce sync.Once
	rerr     error // set before done is closed: why the reader stopped

	chunk []byte // the reader's chunk
	cur   []byte // what is left of it to read
}

func newChunkPipe(size, depth int) *chunkPipe {
	p := &chunkPipe{full: make(chan []byte, depth), free: make(chan []byte, depth+2), done: make(chan struct{})}
	for range depth + 2 {
		p.free <- getBuf(size)[:0]
	}
	return p
}

// release gives the chunks back to the buffer pool, once the reader and
// the writer are done.
func (p *chunkPipe) release() {
	if p.chunk != nil {
		putBuf(p.chunk)
		p.chunk = nil
	}
	for {
		select {
		case c := <-p.free:
			putBuf(c)
		default:
			return
		}
	}
}

// The big buffers of an unpack are reused from one layer to the next, so
// that a many-layer image peaks at the memory of a one-layer one rather
// than leaving each layer's buffers to the garbage collector.
var bufPools sync.Map // capacity -> *sync.Pool of *[]byte

func getBuf(size int) []byte {
	p, _ := bufPools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	return *p.(*sync.Pool).Get().(*[]byte)
}

func putBuf(b []byte) {
	if p, ok := bufPools.Load(cap(b)); ok {
		b = b[:cap(b)]
		p.(*sync.Pool).Put(&b)
	}
}

var bufioPools sync.Map // size -> *sync.Pool of *bufio.Reader

// getReader returns a bufio.Reader of size reading r, from a pool.
func getReader(r io.Reader, size int) *bufio.Reader {
	p, _ := bufioPools.LoadOrStore(size, &sync.Pool{New: func() any { return bufio.NewReaderSize(nil, size) }})
	br := p.(*sync.Pool).Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader, size int) {
	br.Reset(nil)
	if p, ok := bufioPools.Load(size); ok {
		p.(*sync.Pool).Put(br)
	}
}

// Write copies b into chunks; it blocks only while every chunk is taken.
func (p *chunkPipe) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		var c []byte
		select {
		case c = <-p.free:
		case <-p.done:
			return n, p.rerr
		}
		k := copy(c[:cap(c)], b)
		c = c[:k]
		select {
		case p.full <- c:
		case <-p.done:
			return n, p.rerr
		}
		n += k
		b = b[k:]
	}
	return n, nil
}

// ReadFrom fills chunks straight from r until r's EOF, sparing the copy
// through a buffer that Write takes: it is the decompressor's side, the
// slowest stage of an unpack.
func (p *chunkPipe) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		var c []byte
		select {
		case c = <-p.free:
		case <-p.done:
			return n, p.rerr
		}
		c = c[:0]
		var err error
		for len(c) < cap(c) && err == nil {
			var k int
			k, err = r.Read(c[len(c):cap(c)])
			c = c[:len(c)+k]
			n += int64(k)
		}
		if len(c) > 0 {
			select {
			case p.full <- c:
			case <-p.done:
				return n, p.rerr
			}
		} else {
			p.free <- c
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// CloseWrite ends the stream: the reader gets err, or io.EOF for nil.
func (p *chunkPipe) CloseWrite(err error) {
	p.once.Do(func() {
		if err == nil {
			err = io.EOF
		}
		p.werr = err
		close(p.full)
	})
}

// Read reads what was written, in order.
func (p *chunkPipe) Read(b []byte) (int, error) {
	if len(p.cur) == 0 {
		if p.chunk != nil {
			p.free <- p.chunk[:0]
			p.chunk = nil
		}
		c, ok := <-p.full
		if !ok {
			return 0, p.werr
		}
		p.chunk, p.cur = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// CloseRead stops the writer: its Writes fail with err from now on.
func (p *chunkPipe) CloseRead(err error) {
	p.rerrOnce.Do(func() {
		p.rerr = err
		close(p.done)
	})
}
