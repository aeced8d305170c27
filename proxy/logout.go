package proxy

import (
	"context"
	"net/http"

	"github.com/authsidecar/authsidecar/authcache"
	"go.uber.org/zap"
)

// logoutKey marks a request to a logout path with the presented token's hash.
type logoutKey struct{}

// markLogout remembers, for a request to a LOGOUT_PATHS path, which session to evict once
// the app has answered it with 2xx.
func (h *Handler) markLogout(r *http.Request, p string) *http.Request {
	if !matchesExact(p, h.opts.LogoutPaths) {
		return r
	}
	token, found := tokenFrom(r.Header, h.opts.SessionCookie)
	if !found || !validToken(token) {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), logoutKey{}, authcache.HashToken(token)))
}

// modifyResponse checks a protocol switch (checkHandshake: an error makes it a 502),
// evicts a logged-out session before the app's answer reaches the client, so the client
// cannot race its own logout with a cached token, and watches a long-lived response's
// session (stream.go).
func (h *Handler) modifyResponse(resp *http.Response) error {
	h.traceResponse(resp)
	if err := checkHandshake(resp); err != nil {
		return err
	}
	hash, ok := resp.Request.Context().Value(logoutKey{}).(string)
	if !ok || resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Last: nothing after it may fail the response. A logout's own answer is not
		// watched: its eviction would cut it.
		h.watchLongLived(resp)
		return nil
	}
	if _, err := h.opts.Auth.Invalidate(resp.Request.Context(), authcache.Target{TokenHash: hash}, authcache.ReasonLogout); err != nil {
		// Evicted locally; Redis is retried in the background. The app's answer stands.
		h.log.Warn("logout eviction incomplete", zap.Error(err))
	}
	return nil
}
