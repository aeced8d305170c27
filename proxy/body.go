package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/respond"
)

// hasBody reports whether the request announced a body: a Content-Length above zero, or
// chunked. Go's server gives every other request http.NoBody.
func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// refuse answers err for a request the sidecar does not forward, at once and without
// reading its body (see closeUnreadBody).
func refuse(w http.ResponseWriter, r *http.Request, err error) {
	closeUnreadBody(w, r)
	respond.WriteError(w, err)
}

// closeUnreadBody makes an answer the sidecar gives itself independent of the request's
// body, when it announced one: the connection is closed after the answer, and its read
// deadline is moved to now. Connection: close alone is not enough: to keep a connection
// open, Go's server first reads up to 256 KB of an unread body, before the answer (a
// Content-Length under that bound) or after it (chunked) — for as long as a client that
// sends one byte a second likes.
func closeUnreadBody(w http.ResponseWriter, r *http.Request) {
	if !hasBody(r) {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now()) // unsupported only in tests
}

// Client faults while the body is read for the app.
const (
	bodyOK int32 = iota
	bodyStalled
	bodyMalformed
)

// bodyReader is a forwarded request's body. Each read must make progress within idle, or
// the connection's read deadline ends it; a body that reached its end clears the deadline,
// so it never cuts a slow response (Go's server watches for the client closing with a read
// of its own once the body is done). The first read that failed is remembered, so that
// upstreamError can tell the client's fault from the app's.
//
// Upgraded connections are not wrapped: after a 101 the bytes no longer go through here.
type bodyReader struct {
	io.ReadCloser
	rc     *http.ResponseController
	idle   time.Duration
	failed atomic.Int32 // set by the transport's goroutine, read by the handler's
}

func newBodyReader(body io.ReadCloser, w http.ResponseWriter, idle time.Duration) *bodyReader {
	return &bodyReader{ReadCloser: body, rc: http.NewResponseController(w), idle: idle}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.idle > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if b.idle > 0 {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case isTimeout(err):
		b.failed.CompareAndSwap(bodyOK, bodyStalled)
	default:
		// Malformed chunked encoding, fewer bytes than Content-Length, or a client that
		// hung up mid-body: either way not the app's doing.
		b.failed.CompareAndSwap(bodyOK, bodyMalformed)
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// fault is the answer a failed body read calls for, or nil if the body was fine.
func (b *bodyReader) fault() error {
	switch b.failed.Load() {
	case bodyStalled:
		return respond.ErrBodyTimeout
	case bodyMalformed:
		return respond.ErrBadFraming
	}
	return nil
}
