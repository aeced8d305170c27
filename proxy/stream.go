package proxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
)

// A long-lived response is one that can outlive its session: the app switched protocols
// (101, a WebSocket), or it streams — an event stream, or any body whose length the app did
// not announce (chunked, or read until the connection closes), which is how streamed React
// Server Components and long polls answer. Only those are watched; an answer with a
// Content-Length (most answers) costs no timer, no goroutine and no registration, however
// long it takes to send.
func longLived(resp *http.Response) bool {
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		return true
	case resp.Request != nil && resp.Request.Method == http.MethodHead,
		resp.StatusCode == http.StatusNoContent, resp.StatusCode == http.StatusNotModified:
		return false // no body
	case resp.ContentLength < 0:
		return true
	}
	return isEventStream(resp.Header.Get("Content-Type"))
}

// isEventStream reports whether a Content-Type is text/event-stream, parameters aside,
// without mime.ParseMediaType's allocations: it runs on every forwarded answer.
func isEventStream(ct string) bool {
	const mt = "text/event-stream"
	ct = strings.TrimLeft(ct, " \t")
	if len(ct) < len(mt) || !strings.EqualFold(ct[:len(mt)], mt) {
		return false
	}
	rest := strings.TrimLeft(ct[len(mt):], " \t")
	return rest == "" || rest[0] == ';'
}

// watchLongLived runs last in ModifyResponse. For a long-lived response to an
// authenticated request it registers the session with the Authenticator, which calls back
// once the session is evicted and no longer valid, or has expired (authcache.Cache.Watch):
// the callback closes the app's side (the upgraded connection or the response body), and
// ReverseProxy then closes the client's. The registration ends when ReverseProxy closes
// the body, as it does at the end of every response and of every upgraded connection.
func (h *Handler) watchLongLived(resp *http.Response) {
	out := resp.Request
	if out == nil || resp.Body == nil || resp.Body == http.NoBody || !longLived(resp) {
		return
	}
	// Only serveProtected sets X-User-Id (clients' copies are stripped on every path): a
	// public path's stream has no session to watch. User ids are UUIDs, which
	// encodeHeaderValue leaves as they are.
	userID := out.Header["X-User-Id"]
	if len(userID) == 0 {
		return
	}
	token, found := tokenFrom(out.Header, h.opts.SessionCookie)
	if !found || !validToken(token) {
		return
	}
	s := pgsession.Session{UserID: userID[0]}
	if v := out.Header["X-Session-Expires-At"]; len(v) > 0 {
		s.ExpiresAt, _ = time.Parse(time.RFC3339, v[0])
	}
	wb := &watchedBody{body: resp.Body}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &watchedConn{watchedBody: wb, rwc: rwc} // ReverseProxy writes to it
	} else {
		resp.Body = wb
	}
	// X-Session-Expires-At is whole seconds, at most one early: the check at expiry then
	// finds the session valid a moment longer and moves its timer to the exact time.
	wb.setStop(h.opts.Auth.Watch(authcache.HashToken(token), s, wb.revoked))

	// The session may have been evicted between its validation and this registration, an
	// eviction the watch never heard of: validate once more. Usually a cache hit; an
	// eviction emptied the caches that held the session.
	if _, err := h.opts.Auth.Validate(out.Context(), token); errors.Is(err, authcache.ErrInvalid) {
		wb.revoked()
	}
}

// watchedBody is a watched response body: Close ends the watch, revoked closes the body
// under ReverseProxy's copy, which then fails and aborts the response.
type watchedBody struct {
	body io.ReadCloser

	mu   sync.Mutex
	stop func()

	closeOnce sync.Once
	closeErr  error
}

func (b *watchedBody) Read(p []byte) (int, error) { return b.body.Read(p) }

func (b *watchedBody) Close() error {
	b.stopWatch()
	b.closeOnce.Do(func() { b.closeErr = b.body.Close() })
	return b.closeErr
}

func (b *watchedBody) setStop(stop func()) {
	b.mu.Lock()
	b.stop = stop
	b.mu.Unlock()
}

func (b *watchedBody) stopWatch() {
	b.mu.Lock()
	stop := b.stop
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// revoked is the Authenticator's callback.
func (b *watchedBody) revoked() { _ = b.Close() }

// watchedConn is a watched 101 body: the upgraded connection to the app.
type watchedConn struct {
	*watchedBody
	rwc io.ReadWriteCloser
}

func (c *watchedConn) Write(p []byte) (int, error) { return c.rwc.Write(p) }
