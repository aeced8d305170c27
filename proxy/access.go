package proxy

import (
	"bufio"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/authcache"
)

// responseWriter records the status for the access log and metrics, and carries the
// forwarded body to upstreamError. Unwrap lets
// http.ResponseController (which ReverseProxy uses) reach Flush and Hijack underneath.
type responseWriter struct {
	http.ResponseWriter
	status int
	body   *bodyReader // the forwarded request's body, if it has one
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack records a protocol switch: ReverseProxy writes the upstream's 101 on the hijacked
// connection itself, so WriteHeader never sees it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// accessEvent collects what the access line says about one request.
type accessEvent struct {
	start     time.Time
	requestID string
	userID    string
	layer     authcache.Layer
	route     string // the route kind, for the trace (Route*)
}

const maxRequestIDLen = 128

// requestID reuses a sane incoming X-Request-Id, or makes one, and forwards it to the app.
func requestID(h http.Header) string {
	if v := h.Get("X-Request-Id"); v != "" && len(v) <= maxRequestIDLen && validToken(v) {
		return v
	}
	id := strconv.FormatUint(rand.Uint64(), 16)
	h["X-Request-Id"] = []string{id}
	return id
}

func (h *Handler) logAccess(w *responseWriter, r *http.Request, ev *accessEvent) {
	status := w.status
	if status == 0 {
		status = statusClientClosed // nothing was written: the client went away first
	}
	h.m.count(status)
	if ce := h.log.Check(zap.InfoLevel, "request"); ce != nil {
		method, cutMethod := clip(r.Method, maxLogMethod)
		path, cutPath := clip(r.URL.Path, maxLogPath)
		agent, cutAgent := clip(r.Header.Get("User-Agent"), maxLogUserAgent)
		fields := accessFields.Get().(*[9]zap.Field)
		*fields = [...]zap.Field{
			zap.String("method", method),
			zap.String("path", path),
			zap.Int("status", status),
			zap.Duration("duration", time.Since(ev.start)),
			zap.String("userId", ev.userID),
			zap.String("source", string(ev.layer)),
			zap.String("requestId", ev.requestID),
			zap.String("userAgent", agent),
			zap.Bool("truncated", true),
		}
		n := len(fields)
		if !cutMethod && !cutPath && !cutAgent {
			n-- // the field appears only on a line that was cut
		}
		ce.Write(fields[:n]...)
		*fields = [9]zap.Field{} // keep no request's strings alive in the pool
		accessFields.Put(fields)
	}
}

// accessFields recycles the access line's fields: passed to the logger's cores (an
// interface), a fresh array would escape to the heap, 576 bytes on every request. The
// process's cores encode the fields before Write returns and keep none of them.
var accessFields = sync.Pool{New: func() any { return new([9]zap.Field) }}

// httpMetrics are the public listener's own metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	upstream prometheus.Histogram
	byCode   [600]atomic.Pointer[prometheus.Counter] // requests' children, by status code
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_http_requests_total",
			Help: "Requests on the public listener by status code (499: client went away).",
		}, []string{"code"}),
		upstream: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authsidecar_upstream_duration_seconds",
			Help:    "Time spent forwarding a request to the app and copying its response.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.upstream)
	}
	return m
}

func (m *httpMetrics) count(status int) {
	if status < 0 || status >= len(m.byCode) {
		m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
		return
	}
	// Bound on first use rather than up front, so /metrics lists only codes that happened;
	// after that a request costs an atomic load instead of a label hash and lookup.
	c := m.byCode[status].Load()
	if c == nil {
		bound := m.requests.WithLabelValues(strconv.Itoa(status))
		m.byCode[status].CompareAndSwap(nil, &bound)
		c = m.byCode[status].Load()
	}
	(*c).Inc()
}
