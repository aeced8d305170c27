package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/authsidecar/authsidecar/authcache"
)

var (
	errUnauthorized = authcache.ErrInvalid
	errBadGateway   = errors.New("proxy: upstream unreachable")
	errBadRequest   = errors.New("proxy: ambiguous request path")
)

// statusClientClosed is logged, never sent, for a client that hung up (nginx's 499).
const statusClientClosed = 499

// retryAfter is what a 503 asks clients to wait, in seconds.
const retryAfter = 2

// statusOf is the one place errors become HTTP statuses. No internal text reaches clients.
func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, authcache.ErrInvalid):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, errBadGateway):
		return http.StatusBadGateway, "bad gateway"
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, "bad request"
	default:
		return http.StatusServiceUnavailable, "session store unavailable"
	}
}

// writeError answers err as JSON with the headers its status needs.
func writeError(w http.ResponseWriter, err error) {
	code, msg := statusOf(err)
	switch code {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", "Bearer")
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// bufferPool recycles the ReverseProxy's 32 KiB copy buffers across requests.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
