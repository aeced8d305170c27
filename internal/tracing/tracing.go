// Package tracing builds authsidecar's OpenTelemetry tracer provider from the standard
// OTEL_* variables (env.go), exporting spans in batches over OTLP/HTTP or OTLP/gRPC.
//
// It reads the variables from the map main hands it, never from the process, and gives
// the SDK every setting explicitly. With tracing off there is no provider at all: the
// packages that trace are handed a nil trace.Tracer and skip every span, so a request
// costs exactly what it cost before tracing existed.
package tracing

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/grpc/credentials"
)

// ScopeName is the instrumentation scope of every span authsidecar makes.
const ScopeName = "github.com/authsidecar/authsidecar"

// New returns a tracer provider that samples and exports as s says, or nil when s is not
// Enabled. version becomes service.version unless OTEL_RESOURCE_ATTRIBUTES names one.
// Nothing is dialled yet: a collector that is down costs failed exports, reported to
// otel's error handler, never a failed start. Shutdown flushes what is queued.
func New(ctx context.Context, s Settings, version string) (*sdktrace.TracerProvider, error) {
	if !s.Enabled {
		return nil, nil
	}
	exp, err := newExporter(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	attrs := slices.Clone(s.Resource)
	if !slices.ContainsFunc(attrs, func(kv attribute.KeyValue) bool { return kv.Key == semconv.ServiceVersionKey }) {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	res, err := resource.New(ctx, resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp,
			sdktrace.WithBatchTimeout(s.Batch.ScheduleDelay),
			sdktrace.WithExportTimeout(s.Batch.ExportTimeout),
			sdktrace.WithMaxQueueSize(s.Batch.MaxQueueSize),
			sdktrace.WithMaxExportBatchSize(s.Batch.MaxExportBatchSize)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(s.Sampler),
		// The SDK's defaults, stated so that its own reading of OTEL_SPAN_* does not apply.
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{
			AttributeValueLengthLimit:   sdktrace.DefaultAttributeValueLengthLimit,
			AttributeCountLimit:         sdktrace.DefaultAttributeCountLimit,
			EventCountLimit:             sdktrace.DefaultEventCountLimit,
			LinkCountLimit:              sdktrace.DefaultLinkCountLimit,
			AttributePerEventCountLimit: sdktrace.DefaultAttributePerEventCountLimit,
			AttributePerLinkCountLimit:  sdktrace.DefaultAttributePerLinkCountLimit,
		}),
	), nil
}

// newExporter makes the OTLP exporter of s.Protocol. Every option the variables set is
// passed, overriding what the exporter would read from the environment by itself.
func newExporter(ctx context.Context, s Settings) (sdktrace.SpanExporter, error) {
	if s.Protocol == ProtocolGRPC {
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(s.Endpoint.Host),
			otlptracegrpc.WithHeaders(s.Headers),
			otlptracegrpc.WithTimeout(s.Timeout),
		}
		if s.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsConfig(s.TLS))))
		}
		if s.Gzip {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(s.Endpoint.String()),
		otlptracehttp.WithHeaders(s.Headers),
		otlptracehttp.WithTimeout(s.Timeout),
		otlptracehttp.WithCompression(otlptracehttp.NoCompression),
	}
	if s.Gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	if s.Protocol == ProtocolJSON {
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	}
	if !s.Insecure {
		opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsConfig(s.TLS)))
	}
	return otlptracehttp.New(ctx, opts...)
}

// tlsConfig is c, or the system roots when no certificate variable was set.
func tlsConfig(c *tls.Config) *tls.Config {
	if c == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return c.Clone()
}
