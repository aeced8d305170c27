package proxy

import (
	"net/http/httputil"
	"sync"
)

const copyBufferSize = 32 << 10

// bufferPool recycles the ReverseProxy's 32 KiB copy buffers across requests. It pools array
// pointers: a slice converts back to one without allocating, where pooling a *[]byte would
// allocate a new slice header on every Put.
type bufferPool struct{ p sync.Pool }

// NewBufferPool returns the copy-buffer pool the Handler's ReverseProxy uses. It is exported
// for the benchmark's baseline (scripts/benchserver), so that a bare ReverseProxy can be
// measured with exactly the same buffers and the difference is authentication alone.
func NewBufferPool() httputil.BufferPool { return &bufferPool{} }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
