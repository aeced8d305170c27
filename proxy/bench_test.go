package proxy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/assertion"
	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
	"github.com/authsidecar/authsidecar/proxy"
)

// The handler benchmarks forward to a RoundTripper that answers 1 KB without a network, so
// they measure what the sidecar adds per request (and allocates) next to a bare
// httputil.ReverseProxy driven the same way: compare BenchmarkHandlerLocalHit with
// BenchmarkBareReverseProxy.

var benchBody = bytes.Repeat([]byte("a"), 1024)

// benchApp is the upstream: a fixed 1 KB answer.
type benchApp struct{}

func (benchApp) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {"1024"}},
		Body:          io.NopCloser(bytes.NewReader(benchBody)),
		ContentLength: int64(len(benchBody)), Request: r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing but its header map, reused.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// benchSource is Postgres for the benchmark: one valid session for every token.
type benchSource struct{}

func (b benchSource) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return b.Lookup(ctx, h)
}

func (benchSource) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	now := time.Now()
	return pgsession.Session{
		TokenHash: h, ID: "2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01", UserID: "7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01",
		Email: "jose.muller@example.com", FirstName: "José", LastName: "Müller", Username: "jose.muller",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0",
		ExpiresAt: now.Add(24 * time.Hour), LastActivityAt: now, CreatedAt: now.Add(-time.Hour),
	}, nil
}

// serveBench drives h with one reused request, its headers reset to what a browser sends.
func serveBench(b *testing.B, h http.Handler) {
	b.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/dashboard?tab=1", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	w := &discardWriter{h: make(http.Header)}
	reset := func() {
		clear(r.Header)
		clear(w.h)
		r.Header["Authorization"] = []string{"Bearer bench-hot-token-0123456789abcdef"}
		r.Header["User-Agent"] = []string{"wrk"}
		r.Header["Accept"] = []string{"*/*"}
	}
	reset()
	h.ServeHTTP(w, r) // fill the caches
	if w.code != http.StatusOK {
		b.Fatalf("status %d, want 200", w.code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		reset()
		h.ServeHTTP(w, r)
	}
}

func benchHandler(log *zap.Logger) *proxy.Handler { return benchHandlerWith(log, nil) }

// benchHandlerWith is benchHandler with mod applied to its options.
func benchHandlerWith(log *zap.Logger, mod func(*proxy.Options)) *proxy.Handler {
	cache := authcache.New(benchSource{}, authcache.Options{
		SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: time.Hour, LocalSize: 100000, LookupTimeout: time.Second,
	})
	o := proxy.Options{
		Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:3000"}, Auth: cache,
		PublicPaths: []string{"/_next/static"}, LogoutPaths: []string{"/api/auth/logout"},
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis",
		Transport: benchApp{}, Logger: log,
	}
	if mod != nil {
		mod(&o)
	}
	return proxy.New(o)
}

// benchAssertions is the handler with IDENTITY_JWT_KEY (Ed25519) and INVALID_TOKEN_RATE at
// its default, keeping up to cacheSize signed assertions (0: signing every request).
func benchAssertions(b *testing.B, cacheSize int) *proxy.Handler {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := assertion.New(assertion.Options{Key: key, Issuer: "authsidecar", Audience: "http://127.0.0.1:3000", CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	return benchHandlerWith(zap.NewNop(), func(o *proxy.Options) {
		o.Assertions, o.JWKSPath, o.InvalidTokenRate = signer, "/.well-known/authsidecar/jwks.json", 20
	})
}

// BenchmarkHandlerLocalHitAssertion is BenchmarkHandlerLocalHit with a signed
// X-Auth-Assertion on every request, reused for the session as in production.
func BenchmarkHandlerLocalHitAssertion(b *testing.B) {
	serveBench(b, benchAssertions(b, 1000))
}

// BenchmarkHandlerLocalHitAssertionNoReuse signs the assertion on every request: the cost
// reuse saves.
func BenchmarkHandlerLocalHitAssertionNoReuse(b *testing.B) {
	serveBench(b, benchAssertions(b, 0))
}

// BenchmarkHandlerLocalHit is a protected request answered by the in-process cache, access
// log off.
func BenchmarkHandlerLocalHit(b *testing.B) {
	serveBench(b, benchHandler(zap.NewNop()))
}

// BenchmarkHandlerLocalHitAccessLog is the same with the default info access line, JSON
// encoded as the sidecar's logger does, written to io.Discard.
func BenchmarkHandlerLocalHitAccessLog(b *testing.B) {
	enc := zap.NewProductionEncoderConfig()
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	serveBench(b, benchHandler(zap.New(core)))
}

// BenchmarkBareReverseProxy is httputil.ReverseProxy as shipped, with Rewrite and nothing
// else, over the same RoundTripper.
func BenchmarkBareReverseProxy(b *testing.B) { benchBare(b, nil) }

// BenchmarkBareReverseProxyPooled is the fair baseline: the bare ReverseProxy with the
// sidecar's copy-buffer pool, so that next to BenchmarkHandlerLocalHit the difference is
// authentication alone.
func BenchmarkBareReverseProxyPooled(b *testing.B) { benchBare(b, proxy.NewBufferPool()) }

func benchBare(b *testing.B, pool httputil.BufferPool) {
	u := &url.URL{Scheme: "http", Host: "127.0.0.1:3000"}
	serveBench(b, &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  benchApp{},
		BufferPool: pool,
	})
}
