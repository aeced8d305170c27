package authcache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/authsidecar/authsidecar/internal/breaker"
	"github.com/authsidecar/authsidecar/pgsession"
)

// The spans of a validation, children of the request's span: one per layer actually asked,
// so a local hit has one child and a token no cache knows has three. A lookup shared by
// concurrent requests (singleflight) is recorded once, in the trace of the request that
// ran it. No span holds the token, its hash or anything of the session.
const (
	SpanLocal    = "authcache.local"
	SpanRedis    = "authcache.redis"
	SpanPostgres = "authcache.postgres"
)

// AttrResult is the attribute saying what a layer answered: hit, miss or error for the
// caches, found, not_found or error for Postgres.
const AttrResult = attribute.Key("authsidecar.lookup.result")

// layerSpans are the name and start options of each layer's span, in the order of layers.
var layerSpans = [len(layers)]struct {
	name string
	opts []trace.SpanStartOption
}{
	{SpanLocal, []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}},
	{SpanRedis, []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNameRedis)}},
	{SpanPostgres, []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNamePostgreSQL)}},
}

// layerSpan starts the span of layer l under ctx's span, or returns nil when tracing is
// off: the request path then pays this nil check and nothing else.
func (c *Cache) layerSpan(ctx context.Context, l Layer) trace.Span {
	if c.opts.Tracer == nil {
		return nil
	}
	i := slices.Index(layers[:], l)
	_, s := c.opts.Tracer.Start(ctx, layerSpans[i].name, layerSpans[i].opts...)
	return s
}

// endLayer ends s (nil: tracing is off) with a cache's answer.
func endLayer(s trace.Span, r result, err error) {
	if s != nil {
		finish(s, resultNames[r], err)
	}
}

// endSource ends s (nil: tracing is off) with the Source's answer.
func endSource(s trace.Span, err error) {
	if s == nil {
		return
	}
	switch {
	case err == nil:
		finish(s, "found", nil)
	case errors.Is(err, pgsession.ErrNotFound):
		finish(s, "not_found", nil)
	default:
		finish(s, "error", err)
	}
}

func finish(s trace.Span, result string, err error) {
	s.SetAttributes(AttrResult.String(result))
	if err != nil {
		// Never the error's text: a driver's message may quote what it was sent.
		s.SetAttributes(semconv.ErrorTypeKey.String(ErrorType(err)))
		s.SetStatus(codes.Error, "lookup failed")
	}
	s.End()
}

// ErrorType names the kind of err for a span's error.type: timeout, canceled,
// breaker_open, network (the server could not be reached), or the Go type of the innermost
// error (*pgconn.PgError, proto.RedisError). It never holds the error's text.
func ErrorType(err error) string {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case breaker.Refused(err):
		return "breaker_open"
	case errors.As(err, &op):
		return "network"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return fmt.Sprintf("%T", err)
		}
		err = next
	}
}
