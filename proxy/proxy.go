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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/assertion"
	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/respond"
	"github.com/authsidecar/authsidecar/pgsession"
)

// Authenticator validates tokens and evicts sessions; *authcache.Cache is one.
// ValidateCached is Validate without Postgres: it returns authcache.ErrNotCached when no
// cache knows the token.
type Authenticator interface {
	Validate(ctx context.Context, token string) (authcache.Result, error)
	ValidateCached(ctx context.Context, token string) (authcache.Result, error)
	Invalidate(ctx context.Context, t authcache.Target, reason string) (int, error)
	// Watch registers a long-lived response under session s, presented with the token of
	// hash tokenHash, and calls end once the session is revoked or expired; stop
	// unregisters it (authcache.Cache.Watch).
	Watch(tokenHash string, s pgsession.Session, end func()) (stop func())
}

// Options configures a Handler.
type Options struct {
	// Upstream is the app's base URL; every forwarded request goes there.
	Upstream *url.URL
	// Auth validates tokens and evicts logged-out sessions.
	Auth Authenticator
	// Health answers HealthPath with the health document.
	Health http.Handler
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
	// BodyIdleTimeout cuts a forwarded request whose body makes no progress for this long:
	// the app sees the request aborted, the client gets 408 if nothing was sent yet. Zero
	// lets a body stall forever.
	BodyIdleTimeout time.Duration
	// InvalidTokenRate is how many invalid tokens per second one client address may present
	// (bursts of twice that) before it gets 429, and no lookup, for every token but a cached
	// valid session; 0 is no limit.
	InvalidTokenRate int
	// Assertions, if set, signs the identity of every forwarded authenticated request into
	// X-Auth-Assertion (and into VALIDATE_PATH's answer), and answers JWKSPath (GET, HEAD)
	// with its JWKS.
	Assertions *assertion.Signer
	// JWKSPath is answered by the sidecar when Assertions is set; otherwise it is the app's.
	JWKSPath string
	// Logger receives the access log and upstream errors; nil discards them.
	Logger *zap.Logger
	// Registerer receives the handler's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Now is the limiter's clock; nil means time.Now.
	Now func() time.Time
	// Tracer, if set, traces every request and sends its trace context to the app
	// (trace.go); nil traces nothing and leaves the client's trace headers as they are.
	Tracer trace.Tracer
}

// statusClientClosed is logged, never sent, for a client that hung up (nginx's 499).
const statusClientClosed = 499

// errAmbiguousPath answers a path that other servers may resolve differently (see
// ambiguousPath).
var errAmbiguousPath = respond.BadRequest("bad request")

// Handler is the public listener's http.Handler.
type Handler struct {
	opts     Options
	log      *zap.Logger
	proxy    *httputil.ReverseProxy
	m        *httpMetrics
	limit    *limiter     // nil without INVALID_TOKEN_RATE
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
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{opts: o, log: o.Logger, m: newHTTPMetrics(o.Registerer)}
	if o.InvalidTokenRate > 0 {
		h.limit = newLimiter(o.InvalidTokenRate, o.Now, o.Registerer)
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      o.Transport,
		BufferPool:     NewBufferPool(),
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
// behind a valid session. A protocol upgrade is never anonymous: it needs a session on
// every path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &responseWriter{ResponseWriter: w}
	ev := accessEvent{start: time.Now(), requestID: requestID(r.Header)}
	defer h.logAccess(rw, r, &ev)
	if h.opts.Tracer != nil {
		var span trace.Span
		r, span = h.startServerSpan(r)
		defer endServerSpan(span, rw, &ev)
	}

	stripClientHeaders(r.Header)
	stripH2C(r.Header)
	p := cleanPath(r.URL.Path)
	if p != r.URL.Path {
		// Forward the resolved path, so the app serves exactly what was authorised.
		r.URL.Path, r.URL.RawPath = p, ""
	}
	own := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case ambiguousPath(p):
		ev.route = RouteRefused
		refuse(rw, r, errAmbiguousPath)
	case own && p == h.opts.ValidatePath:
		ev.route = RouteValidate
		h.serveValidate(rw, r, &ev)
	case own && p == h.opts.HealthPath && h.opts.Health != nil:
		ev.route = RouteHealth
		closeUnreadBody(rw, r)
		h.opts.Health.ServeHTTP(rw, r)
	case own && p == h.opts.JWKSPath && h.opts.Assertions != nil:
		ev.route = RouteJWKS
		closeUnreadBody(rw, r)
		h.opts.Assertions.ServeJWKS(rw, r)
	case len(r.Header["Upgrade"]) == 0 && matchesAny(p, h.opts.PublicPaths):
		ev.route = RoutePublic
		h.forward(rw, h.markLogout(r, p))
	default:
		ev.route = RouteProtected
		h.serveProtected(rw, r, p, &ev)
	}
}

func (h *Handler) serveProtected(w http.ResponseWriter, r *http.Request, p string, ev *accessEvent) {
	_, s, ok := h.authenticate(w, r, ev)
	if !ok {
		return
	}
	setIdentity(r.Header, s, h.assertion(s, ev.start))
	h.forward(w, h.markLogout(r, p))
}

func (h *Handler) serveValidate(w http.ResponseWriter, r *http.Request, ev *accessEvent) {
	_, s, ok := h.authenticate(w, r, ev)
	if !ok {
		return
	}
	closeUnreadBody(w, r)
	// The assertion goes on the answer too, for nginx auth_request and Traefik forwardAuth
	// to pass on to the app.
	setIdentity(w.Header(), s, h.assertion(s, ev.start))
	w.Header().Set("Cache-Control", "no-store")
	respond.WriteJSON(w, http.StatusOK, newValidation(s))
}

// authenticate validates the request's token; when it cannot, it has answered the request.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, ev *accessEvent) (string, pgsession.Session, bool) {
	token, found := tokenFrom(r.Header, h.opts.SessionCookie)
	if !found || !validToken(token) {
		refuse(w, r, authcache.ErrInvalid)
		return "", pgsession.Session{}, false
	}
	res, err := h.validate(r, token)
	ev.layer = res.Layer
	if err != nil {
		h.fail(w, r, err)
		return "", pgsession.Session{}, false
	}
	ev.userID = res.Session.UserID
	return token, res.Session, true
}

// fail answers a validation error; a client that went away gets nothing. Only a store that
// could not decide is worth a log line: invalid tokens and refused floods are counted.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	var decided *respond.Error
	if !errors.Is(err, authcache.ErrInvalid) && !errors.As(err, &decided) {
		h.log.Warn("session store unavailable", zap.Error(err))
	}
	refuse(w, r, err)
}

// assertion is the signed X-Auth-Assertion of s, or "" without IDENTITY_JWT_KEY (or if
// signing failed, which the app that verifies assertions then refuses).
func (h *Handler) assertion(s pgsession.Session, now time.Time) string {
	if h.opts.Assertions == nil {
		return ""
	}
	tok, err := h.opts.Assertions.Assertion(assertion.Identity{
		UserID: s.UserID, SessionID: s.ID, Email: s.Email, FirstName: s.FirstName,
		LastName: s.LastName, Username: s.Username, SessionExpiresAt: s.ExpiresAt,
	}, now)
	if err != nil {
		h.log.Error("cannot sign the identity assertion; forwarding without it", zap.Error(err))
	}
	return tok
}

func (h *Handler) forward(w http.ResponseWriter, r *http.Request) {
	if rw, ok := w.(*responseWriter); ok && hasBody(r) && len(r.Header["Upgrade"]) == 0 {
		// upstreamError finds the body through rw: ReverseProxy hands it a request whose
		// Body is its own wrapper.
		rw.body = newBodyReader(r.Body, w, h.opts.BodyIdleTimeout)
		r.Body = rw.body
	}
	if h.opts.Tracer != nil {
		var span trace.Span
		r, span = h.startClientSpan(r)
		defer span.End()
	}
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
	if h.opts.Tracer != nil {
		injectTraceContext(pr.Out)
	}
	if h.trusted(pr.In.RemoteAddr) {
		in := pr.In.Header
		if v := in["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
		if v := in["Forwarded"]; len(v) > 0 {
			pr.Out.Header["Forwarded"] = v // Rewrite removed it; a trusted proxy's stands
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

func (h *Handler) trusted(remoteAddr string) bool {
	if len(h.opts.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	return err == nil && h.trustedAddr(ap.Addr().Unmap())
}

func (h *Handler) trustedAddr(ip netip.Addr) bool {
	for _, p := range h.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// upstreamError answers when the request could not be forwarded. A request body that
// stalled or was malformed is the client's fault: 408 or 400, however the transport
// reported it (the read that failed also cancelled the request). Otherwise nothing if the
// client left, else 502. (A long-lived answer whose session is revoked never comes here:
// its watch closes the app's side, and ReverseProxy aborts the copy.)
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	h.traceUpstreamError(w, r, err)
	rw, _ := w.(*responseWriter)
	if rw != nil && rw.body != nil {
		if fault := rw.body.fault(); fault != nil {
			refuse(w, r, fault)
			return
		}
	}
	if r.Context().Err() != nil {
		if rw != nil {
			rw.status = statusClientClosed
		}
		return
	}
	if errors.Is(err, errBadHandshake) {
		h.log.Warn("the app's WebSocket handshake is invalid", zap.Error(err))
	} else {
		h.log.Warn("upstream unreachable", zap.String("error", clipped(err.Error(), maxLogError)))
	}
	refuse(w, r, respond.ErrBadGateway)
}
