package proxy

import (
	"net/http/httputil"
	"sync"
)

// bufferPool recycles the ReverseProxy's 32 KiB copy buffers across requests.
type bufferPool struct{ p sync.Pool }

// NewBufferPool returns the copy-buffer pool the Handler's ReverseProxy uses. It is exported
// for the benchmark's baseline (scripts/benchserver), so that a bare ReverseProxy can be
// measured with exactly the same buffers and the difference is authentication alone.
func NewBufferPool() httputil.BufferPool { return &bufferPool{} }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
