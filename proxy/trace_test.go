package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authsidecar/authsidecar/pgsession"
)

// A client's trace context, sampled: 4bf92f35… is the trace, 00f067aa… its span.
const (
	clientTrace       = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent      = "00f067aa0ba902b7"
	clientTraceparent = "00-" + clientTrace + "-" + clientParent + "-01"
)

// traceRig is the handler with a Tracer whose spans are recorded, driven synchronously:
// once ServeHTTP returns, every span of the request has ended.
type traceRig struct {
	h   *Handler
	app *upstream
	rec *tracetest.SpanRecorder
}

func newTraceRig(tb testing.TB, appHandler http.HandlerFunc, mod func(*Options)) *traceRig {
	tb.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	app := newUpstream(tb, appHandler)
	target, _ := url.Parse(app.URL)
	o := Options{Upstream: target, Auth: &fakeAuth{sessions: map[string]pgsession.Session{"good": jose}},
		Health: healthHandler, PublicPaths: []string{"/login"}, ValidatePath: "/api/auth/validate",
		HealthPath: "/api/health/redis", SessionCookie: "session", Tracer: tp.Tracer("test")}
	if mod != nil {
		mod(&o)
	}
	return &traceRig{h: New(o), app: app, rec: rec}
}

// serve sends one request and returns its status and the spans it made, server span first.
func (rig *traceRig) serve(tb testing.TB, method, target string, h http.Header) (int, []sdktrace.ReadOnlySpan) {
	tb.Helper()
	before := len(rig.rec.Ended())
	r := httptest.NewRequest(method, target, nil)
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	rig.h.ServeHTTP(w, r)
	spans := slices.Clone(rig.rec.Ended()[before:])
	slices.SortStableFunc(spans, func(a, b sdktrace.ReadOnlySpan) int {
		return kindOrder(a.SpanKind()) - kindOrder(b.SpanKind())
	})
	return w.Code, spans
}

func kindOrder(k trace.SpanKind) int {
	if k == trace.SpanKindServer {
		return 0
	}
	return 1
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func TestTraceContinuesTheClientsAndReachesTheApp(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	status, spans := rig.serve(t, "GET", "http://sidecar/dashboard?tab=secret-query", http.Header{
		"Authorization": {"Bearer good"}, "Traceparent": {clientTraceparent}, "Tracestate": {"vendor=abc"}})
	if status != 200 || len(spans) != 2 {
		t.Fatalf("status %d, %d spans, want 200 and a server and a client span", status, len(spans))
	}
	server, client := spans[0], spans[1]
	if server.SpanKind() != trace.SpanKindServer || server.Name() != "GET" {
		t.Errorf("server span %q kind %v, want GET server", server.Name(), server.SpanKind())
	}
	if server.SpanContext().TraceID().String() != clientTrace || server.Parent().SpanID().String() != clientParent || !server.Parent().IsRemote() {
		t.Errorf("server span in trace %s under %s, want the client's %s under %s",
			server.SpanContext().TraceID(), server.Parent().SpanID(), clientTrace, clientParent)
	}
	if client.SpanKind() != trace.SpanKindClient || client.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("client span %q kind %v is not the server span's child", client.Name(), client.SpanKind())
	}
	want := map[string]string{"http.request.method": "GET", "http.response.status_code": "200",
		"authsidecar.route": RouteProtected, "authsidecar.cache.layer": "local", "url.scheme": "http"}
	for k, v := range want {
		if got := attrOf(server, k); got != v {
			t.Errorf("server span %s = %q, want %q", k, got, v)
		}
	}
	if got := attrOf(client, "http.response.status_code"); got != "200" {
		t.Errorf("client span status code %q, want 200", got)
	}
	// The app's spans join the trace as children of the client span.
	got := rig.app.last(t).Header
	wantTP := "00-" + clientTrace + "-" + client.SpanContext().SpanID().String() + "-01"
	if tp := got.Values("Traceparent"); len(tp) != 1 || tp[0] != wantTP {
		t.Errorf("app got traceparent %q, want [%q]", tp, wantTP)
	}
	if ts := got.Values("Tracestate"); len(ts) != 1 || ts[0] != "vendor=abc" {
		t.Errorf("app got tracestate %q, want the client's", ts)
	}
}

func TestTraceStartsOneWhenTheClientSentNoneOrGarbage(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	for _, tp := range []string{"", "00-not-a-trace-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		h := http.Header{"Authorization": {"Bearer good"}}
		if tp != "" {
			h["Traceparent"] = []string{tp}
		}
		_, spans := rig.serve(t, "GET", "http://sidecar/x", h)
		if len(spans) != 2 || spans[0].Parent().IsValid() {
			t.Fatalf("traceparent %q: %d spans, server parent %v; want a new root", tp, len(spans), spans[0].Parent())
		}
		want := "00-" + spans[0].SpanContext().TraceID().String() + "-" + spans[1].SpanContext().SpanID().String() + "-01"
		if got := rig.app.last(t).Header.Values("Traceparent"); len(got) != 1 || got[0] != want {
			t.Errorf("traceparent %q: app got %q, want [%q]", tp, got, want)
		}
	}
}

func TestWithoutTracerTraceHeadersPassUnchanged(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	do(t, "GET", srv.URL+"/x", http.Header{"Authorization": {"Bearer good"},
		"Traceparent": {clientTraceparent}, "Tracestate": {"vendor=abc"}})
	got := app.last(t).Header
	if tp, ts := got.Values("Traceparent"), got.Values("Tracestate"); !slices.Equal(tp, []string{clientTraceparent}) || !slices.Equal(ts, []string{"vendor=abc"}) {
		t.Errorf("app got traceparent %q tracestate %q, want the client's unchanged", tp, ts)
	}
	do(t, "GET", srv.URL+"/x", http.Header{"Authorization": {"Bearer good"}})
	if tp := app.last(t).Header.Values("Traceparent"); tp != nil {
		t.Errorf("without a client traceparent the app got %q, want none", tp)
	}
}

func TestServerSpanOfEveryRoute(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	cases := []struct {
		name, method, path string
		header             http.Header
		wantStatus         int
		wantRoute          string
		wantLayer          string
		wantSpans          int // the server span, and a client span if forwarded
	}{
		{"validate", "GET", "/api/auth/validate", http.Header{"Authorization": {"Bearer good"}}, 200, RouteValidate, "local", 1},
		{"health", "GET", "/api/health/redis", nil, http.StatusTeapot, RouteHealth, "", 1},
		{"public", "GET", "/login", nil, 200, RoutePublic, "", 2},
		{"unauthorized", "GET", "/x", http.Header{"Cookie": {"session=nope"}}, 401, RouteProtected, "postgres", 1},
		{"refused", "GET", "/login/..;/api", nil, 400, RouteRefused, "", 1},
	}
	for _, tc := range cases {
		status, spans := rig.serve(t, tc.method, "http://sidecar"+tc.path, tc.header)
		if status != tc.wantStatus || len(spans) != tc.wantSpans {
			t.Errorf("%s: status %d with %d spans, want %d with %d", tc.name, status, len(spans), tc.wantStatus, tc.wantSpans)
			continue
		}
		s := spans[0]
		got := [3]string{attrOf(s, "authsidecar.route"), attrOf(s, "authsidecar.cache.layer"), attrOf(s, "http.response.status_code")}
		want := [3]string{tc.wantRoute, tc.wantLayer, strconv.Itoa(tc.wantStatus)}
		if got != want || s.Status().Code == codes.Error {
			t.Errorf("%s: route, layer, status %q (%v), want %q and no error", tc.name, got, s.Status(), want)
		}
	}
}

func TestFailuresAreErrorSpansWithoutTheirText(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	_, spans := rig.serve(t, "GET", "http://sidecar/x", http.Header{"Authorization": {"Bearer down"}})
	if s := spans[0]; s.Status().Code != codes.Error || attrOf(s, "error.type") != "503" {
		t.Errorf("store down: status %v error.type %q, want Error and 503", s.Status(), attrOf(s, "error.type"))
	}

	gone := newTraceRig(t, nil, nil)
	gone.app.Close() // the app is down
	status, spans := gone.serve(t, "GET", "http://sidecar/x", http.Header{"Authorization": {"Bearer good"}})
	if status != http.StatusBadGateway || len(spans) != 2 {
		t.Fatalf("app down: status %d, %d spans", status, len(spans))
	}
	if c := spans[1]; c.Status().Code != codes.Error || attrOf(c, "error.type") != "upstream_unreachable" ||
		strings.Contains(c.Status().Description, "127.0.0.1") || len(c.Events()) != 0 {
		t.Errorf("app down: client span %v error.type %q events %v, want Error, upstream_unreachable, no text",
			c.Status(), attrOf(c, "error.type"), c.Events())
	}
}

func TestMethodsOutsideTheStandardOnesDoNotNameSpans(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	_, spans := rig.serve(t, "PURGE-abc123", "http://sidecar/x", http.Header{"Authorization": {"Bearer good"}})
	if s := spans[0]; s.Name() != "HTTP" || attrOf(s, "http.request.method") != "_OTHER" {
		t.Errorf("span %q method %q, want HTTP and _OTHER", s.Name(), attrOf(s, "http.request.method"))
	}
}

func TestSpansHoldNoTokenCookieOrIdentity(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	requests := []http.Header{
		{"Authorization": {"Bearer good"}},
		{"Cookie": {"session=good; theme=dark-secret-cookie"}},
		{"Authorization": {"Bearer wrong-token-value"}},
		{"Authorization": {"Basic dXNlcjpwYXNzd29yZA=="}, "Cookie": {"session=good"}},
	}
	var all []sdktrace.ReadOnlySpan
	for _, h := range requests {
		for _, p := range []string{"/dashboard/private-path?q=query-secret", "/api/auth/validate"} {
			_, spans := rig.serve(t, "GET", "http://sidecar"+p, h)
			all = append(all, spans...)
		}
	}
	secrets := []string{"good", "dark-secret-cookie", "wrong-token-value", "dXNlcjpwYXNzd29yZA", "private-path",
		"query-secret", jose.UserID, jose.ID, jose.Email, "José", "Jos%C3%A9", "Müller"}
	for _, s := range all {
		texts := []string{s.Name(), s.Status().Description}
		for _, kv := range s.Attributes() {
			texts = append(texts, string(kv.Key)+"="+kv.Value.String())
		}
		for _, text := range texts {
			for _, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Errorf("span %s holds %q: %s", s.Name(), secret, text)
				}
			}
		}
	}
}

func TestUnsampledTraceIsStillPassedOn(t *testing.T) {
	rig := newTraceRig(t, nil, nil)
	unsampled := "00-" + clientTrace + "-" + clientParent + "-00"
	_, spans := rig.serve(t, "GET", "http://sidecar/x", http.Header{"Authorization": {"Bearer good"}, "Traceparent": {unsampled}})
	if len(spans) != 0 {
		t.Errorf("%d spans recorded for a trace the client did not sample", len(spans))
	}
	tp := rig.app.last(t).Header.Get("Traceparent")
	if !strings.HasPrefix(tp, "00-"+clientTrace+"-") || !strings.HasSuffix(tp, "-00") || strings.Contains(tp, clientParent) {
		t.Errorf("app got traceparent %q, want the client's trace, unsampled, under the sidecar's span", tp)
	}
}
