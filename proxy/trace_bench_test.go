package proxy_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/proxy"
)

// Tracing off is BenchmarkHandlerLocalHit itself: its allocs/op and B/op are the same as
// before tracing existed (the request path pays nil checks only). These two measure it on:
// every request sampled and exported in batches (to an exporter that drops them), and a
// sampler that records nothing, which still reads and sends the trace context.

// BenchmarkHandlerLocalHitTraced is BenchmarkHandlerLocalHit with every request traced:
// a server span, the local cache's span and the span of the request to the app.
func BenchmarkHandlerLocalHitTraced(b *testing.B) {
	serveBench(b, tracedBenchHandler(b, sdktrace.AlwaysSample()))
}

// BenchmarkHandlerLocalHitTracedUnsampled traces with a sampler that samples nothing
// (OTEL_TRACES_SAMPLER=always_off): what propagation alone costs.
func BenchmarkHandlerLocalHitTracedUnsampled(b *testing.B) {
	serveBench(b, tracedBenchHandler(b, sdktrace.NeverSample()))
}

func tracedBenchHandler(b *testing.B, sampler sdktrace.Sampler) *proxy.Handler {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("bench")
	cache := authcache.New(benchSource{}, authcache.Options{
		SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: time.Hour, LocalSize: 100000, LookupTimeout: time.Second, Tracer: tracer,
	})
	return proxy.New(proxy.Options{
		Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:3000"}, Auth: cache,
		PublicPaths: []string{"/_next/static"}, LogoutPaths: []string{"/api/auth/logout"},
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis",
		Transport: benchApp{}, Logger: zap.NewNop(), Tracer: tracer,
	})
}
