// Package proxy is the public HTTP handler: it strips spoofable identity headers, validates
// the request's session, and forwards it to the app with httputil.ReverseProxy, the user's
// identity in X-User-* headers. It also serves the sidecar's own endpoints.
package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
)

// Authenticator validates tokens and evicts sessions; *authcache.Cache is one.
type Authenticator interface {
	Validate(ctx context.Context, token string) (authcache.Result, error)
	Invalidate(ctx context.Context, t authcache.Target, reason string) (int, error)
}

// HealthReporter builds the health document; *authcache.Cache is one.
type HealthReporter interface {
	Health(ctx context.Context) authcache.Health
}

// Options configures a Handler.
type Options struct {
	// Upstream is the app's base URL; every forwarded request goes there.
	Upstream *url.URL
	// Auth validates tokens and evicts logged-out sessions.
	Auth Authenticator
	// Health builds the document served at HealthPath.
	Health HealthReporter
	// PublicPaths are cleaned paths forwarded without validation; each matches itself and
	// its subtree.
	PublicPaths []string
	// LogoutPaths evict the presented session once the app answers them with 2xx.
	LogoutPaths []string
	// TrustedProxies are the peers whose X-Forwarded-* and similar headers are kept.
	TrustedProxies []netip.Prefix
	// SessionCookie names the cookie read when there is no bearer token; "" reads tokens
	// from Authorization only.
	SessionCookie string
	// ValidatePath and HealthPath are answered by the sidecar itself (GET and HEAD).
	ValidatePath, HealthPath string
	// Transport reaches the upstream; nil means NewTransport().
	Transport http.RoundTripper
	// Revalidate is how often a long-lived request (WebSocket, stream) re-checks its
	// session; it is closed once the session is revoked or expires. Zero means one second.
	Revalidate time.Duration
	// Logger receives the access log and upstream errors; nil discards them.
	Logger *zap.Logger
	// Registerer receives the handler's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Handler is the public listener's http.Handler.
type Handler struct {
	opts     Options
	log      *zap.Logger
	proxy    *httputil.ReverseProxy
	m        *httpMetrics
	inflight atomic.Int64 // forwarded requests, upgraded connections included
}

// New returns a Handler forwarding to o.Upstream.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Transport == nil {
		o.Transport = NewTransport()
	}
	if o.Revalidate <= 0 {
		o.Revalidate = time.Second
	}
	h := &Handler{opts: o, log: o.Logger, m: newHTTPMetrics(o.Registerer)}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      o.Transport,
		BufferPool:     &bufferPool{},
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.upstreamError,
		ErrorLog:       zap.NewStdLog(o.Logger.Named("reverseproxy")),
	}
	return h
}

// NewTransport returns a Transport tuned for one plain-HTTP upstream next door: many idle
// connections kept, no HTTP/2 negotiation, and no transparent gzip, which would change the
// response the client gets.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// ServeHTTP routes a request: the sidecar's own paths, public paths, then everything else
// behind a valid session.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &responseWriter{ResponseWriter: w}
	ev := accessEvent{start: time.Now(), requestID: requestID(r.Header)}
	defer h.logAccess(rw, r, &ev)

	stripIdentity(r.Header)
	p := cleanPath(r.URL.Path)
	if p != r.URL.Path {
		// Forward the resolved path, so the app serves exactly what was authorised.
		r.URL.Path, r.URL.RawPath = p, ""
	}
	own := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case ambiguousPath(p):
		writeError(rw, errBadRequest)
	case own && p == h.opts.ValidatePath:
		h.serveValidate(rw, r, &ev)
	case own && p == h.opts.HealthPath:
		h.serveHealth(rw, r)
	case matchesAny(p, h.opts.PublicPaths):
		h.forward(rw, h.markLogout(r, p))
	default:
		h.serveProtected(rw, r, p, &ev)
	}
}

func (h *Handler) serveProtected(w http.ResponseWriter, r *http.Request, p string, ev *accessEvent) {
	token, s, ok := h.authenticate(w, r, ev)
	if !ok {
		return
	}
	setIdentity(r.Header, s)
	r, stop := h.watch(h.markLogout(r, p), token)
	defer stop()
	h.forward(w, r)
}

func (h *Handler) serveValidate(w http.ResponseWriter, r *http.Request, ev *accessEvent) {
	_, s, ok := h.authenticate(w, r, ev)
	if !ok {
		return
	}
	setIdentity(w.Header(), s)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, newValidation(s))
}

// authenticate validates the request's token; when it cannot, it has answered the request.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, ev *accessEvent) (string, pgsession.Session, bool) {
	token, found := tokenFrom(r.Header, h.opts.SessionCookie)
	if !found || !validToken(token) {
		writeError(w, errUnauthorized)
		return "", pgsession.Session{}, false
	}
	res, err := h.opts.Auth.Validate(r.Context(), token)
	ev.layer = res.Layer
	if err != nil {
		h.fail(w, r, err)
		return "", pgsession.Session{}, false
	}
	ev.userID = res.Session.UserID
	return token, res.Session, true
}

func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	doc := h.opts.Health.Health(r.Context())
	code := http.StatusOK
	if doc.Status == authcache.StatusUnhealthy {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, doc)
}

// fail answers a validation error; a client that went away gets nothing.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	if !errors.Is(err, authcache.ErrInvalid) {
		h.log.Warn("session store unavailable", zap.Error(err))
	}
	writeError(w, err)
}

func (h *Handler) forward(w http.ResponseWriter, r *http.Request) {
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	start := time.Now()
	defer func() { h.m.upstream.Observe(time.Since(start).Seconds()) }()
	h.proxy.ServeHTTP(w, r)
}

// Wait returns once no forwarded request is in flight, WebSockets and streams included, or
// with ctx's error. It polls: it runs once, at shutdown, and a counter keeps the request
// path free of any lock.
func (h *Handler) Wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// rewrite builds the outbound request: the upstream URL and X-Forwarded-*. The inbound
// X-Forwarded-For chain (and -Proto, -Host) is kept only from a trusted proxy.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(h.opts.Upstream)
	pr.Out.Host = pr.In.Host
	if h.trusted(pr.In.RemoteAddr) {
		in := pr.In.Header
		if v := in["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
		pr.SetXForwarded()
		for _, k := range [...]string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := in.Get(k); v != "" {
				pr.Out.Header.Set(k, v)
			}
		}
		return
	}
	pr.SetXForwarded()
	for k := range pr.Out.Header {
		if isProxyHeader(k) {
			delete(pr.Out.Header, k)
		}
	}
}

// isProxyHeader reports headers that only a proxy in front should set: the app may read
// them as the client's address or as the path to serve (X-Original-URL), so they are kept
// only from TRUSTED_PROXIES. Rewrite has already replaced the standard X-Forwarded-* trio.
// Names are compared like identity headers: any case, '_' read as '-'.
func isProxyHeader(k string) bool {
	switch k {
	case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
		return false // exactly what SetXForwarded wrote; a client's X_Forwarded_For is not
	}
	for _, name := range [...]string{"x-real-ip", "x-client-ip", "x-cluster-client-ip", "true-client-ip",
		"cf-connecting-ip", "fastly-client-ip", "x-original-url", "x-original-uri", "x-rewrite-url"} {
		if foldEqual(k, name) {
			return true
		}
	}
	return hasFoldPrefix(k, "x-forwarded-")
}

func foldEqual(k, lower string) bool { return len(k) == len(lower) && hasFoldPrefix(k, lower) }

// ambiguousPath reports a path that other servers may resolve differently from path.Clean:
// a dot-segment carrying ";" parameters (Tomcat and Spring read "/public/..;/api" as "/api")
// or a backslash (read as "/" by some). It is refused rather than guessed.
func ambiguousPath(p string) bool {
	return strings.ContainsRune(p, '\\') || strings.Contains(p, "/..;") || strings.Contains(p, "/.;")
}

func (h *Handler) trusted(remoteAddr string) bool {
	if len(h.opts.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range h.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// upstreamError answers when the app cannot be reached: 502, or nothing if the client left
// (or its session was revoked mid-stream, which cancels the request the same way).
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		if rw, ok := w.(*responseWriter); ok {
			rw.status = statusClientClosed
		}
		return
	}
	h.log.Warn("upstream unreachable", zap.Error(err))
	writeError(w, errBadGateway)
}

// cleanPath resolves dot-segments and repeated slashes, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, "/.") && !strings.Contains(p, "//") && p[0] == '/' {
		return p // the common case, without allocating
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// matchesAny reports whether p is one of prefixes or lies in its subtree: "/login" matches
// "/login" and "/login/x", never "/login2".
func matchesAny(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if pre == "/" || p == pre || (strings.HasPrefix(p, pre) && p[len(pre)] == '/') {
			return true
		}
	}
	return false
}
