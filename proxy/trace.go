package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (Options.Tracer set): every request on the public listener gets a server span that
// continues the client's W3C trace context, or starts a trace; a forwarded request gets a
// client span under it, whose context is sent to the app in traceparent so the app's spans
// join the trace; authcache adds a span per cache layer asked. The spans carry the method,
// the status, the route kind and the layer that answered, never a path, a query, a header
// value, a token or anything of the session.
//
// Without a Tracer none of this runs, and the client's traceparent and tracestate reach the
// app exactly as sent, like any other header.

// The route kinds of AttrRoute: which of the handler's routes answered a request.
const (
	RouteValidate  = "validate"  // VALIDATE_PATH
	RouteHealth    = "health"    // HEALTH_PATH
	RouteJWKS      = "jwks"      // JWKS_PATH
	RoutePublic    = "public"    // under PUBLIC_PATHS, forwarded without validation
	RouteProtected = "protected" // everything else: validated, then forwarded
	RouteRefused   = "refused"   // an ambiguous path, answered 400 before routing
)

// The attributes the sidecar adds to the standard HTTP ones.
const (
	// AttrRoute is the route kind of a server span.
	AttrRoute = attribute.Key("authsidecar.route")
	// AttrCacheLayer is the layer that answered the validation: local, redis or postgres.
	AttrCacheLayer = attribute.Key("authsidecar.cache.layer")
)

// startServerSpan starts the request's server span, the child of the client's traceparent
// when it sent a valid one, and returns r carrying it.
func (h *Handler) startServerSpan(r *http.Request) (*http.Request, trace.Span) {
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.opts.Tracer.Start(ctx, spanName(r.Method), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(methodAttr(r.Method), semconv.URLScheme("http"),
			semconv.NetworkProtocolVersion(protocolVersion(r))))
	return r.WithContext(ctx), span
}

// endServerSpan records the answer: status (none if the client left first: nothing was
// sent), route kind, the cache layer that answered; a 5xx marks the span as an error.
func endServerSpan(span trace.Span, w *responseWriter, ev *accessEvent) {
	attrs := make([]attribute.KeyValue, 0, 4)
	if ev.route != "" {
		attrs = append(attrs, AttrRoute.String(ev.route))
	}
	if ev.layer != "" {
		attrs = append(attrs, AttrCacheLayer.String(string(ev.layer)))
	}
	if status := w.status; status != 0 && status != statusClientClosed {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	span.SetAttributes(attrs...)
	span.End()
}

// startClientSpan starts the span of the request to the app and returns r carrying it:
// rewrite sends its context to the app.
func (h *Handler) startClientSpan(r *http.Request) (*http.Request, trace.Span) {
	ctx, span := h.opts.Tracer.Start(r.Context(), spanName(r.Method), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(methodAttr(r.Method),
			semconv.ServerAddress(h.opts.Upstream.Hostname()), semconv.ServerPort(urlPort(h.opts.Upstream))))
	return r.WithContext(ctx), span
}

func urlPort(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// injectTraceContext replaces whatever trace context the client sent with the client
// span's, so the app's spans become its children.
func injectTraceContext(out *http.Request) {
	delete(out.Header, "Traceparent")
	delete(out.Header, "Tracestate")
	propagation.TraceContext{}.Inject(out.Context(), propagation.HeaderCarrier(out.Header))
}

// traceResponse records the app's status on the client span; as for any HTTP client span,
// a 4xx or 5xx is an error.
func (h *Handler) traceResponse(resp *http.Response) {
	if h.opts.Tracer == nil {
		return
	}
	span := trace.SpanFromContext(resp.Request.Context())
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
}

// traceUpstreamError marks the client span failed, with a kind of failure rather than the
// error's text (which may quote the request).
func (h *Handler) traceUpstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if h.opts.Tracer == nil {
		return
	}
	kind := "upstream_unreachable"
	var ne net.Error
	switch rw, _ := w.(*responseWriter); {
	case rw != nil && rw.body != nil && rw.body.fault() != nil:
		kind = "request_body"
	case r.Context().Err() != nil:
		kind = "canceled"
	case errors.Is(err, errBadHandshake):
		kind = "bad_handshake"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		kind = "timeout"
	}
	span := trace.SpanFromContext(r.Context())
	span.SetAttributes(semconv.ErrorTypeKey.String(kind))
	span.SetStatus(codes.Error, "forwarding failed")
}

// spanName is the method, as the HTTP conventions name spans without a route template;
// a method outside the standard ones is "HTTP", so clients cannot mint span names.
func spanName(method string) string {
	if standardMethod(method) {
		return method
	}
	return "HTTP"
}

func methodAttr(method string) attribute.KeyValue {
	if standardMethod(method) {
		return semconv.HTTPRequestMethodKey.String(method)
	}
	return semconv.HTTPRequestMethodOther
}

func standardMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch:
		return true
	}
	return false
}

func protocolVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return "1.1"
}
