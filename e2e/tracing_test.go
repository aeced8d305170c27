package e2e

// Tracing, black-box: the built binary exports its spans to an in-process collector over
// OTLP/HTTP and OTLP/gRPC, continues the client's trace, hands the app a traceparent of the
// same trace, flushes at shutdown, and no span carries a token, a cookie or an identity.
// Without OTEL_* variables the trace headers pass through untouched.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// The client's trace context: trace 4bf92f35…, its span 00f067aa…, sampled.
const (
	e2eClientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	e2eClientParent = "00f067aa0ba902b7"
	e2eTraceparent  = "00-" + e2eClientTrace + "-" + e2eClientParent + "-01"
	collectorSecret = "collector-secret-0123456789"
	badToken        = "not-a-valid-token-0123456789"
)

func TestTracesReachTheCollectorOverHTTPAndGRPC(t *testing.T) {
	t.Parallel()
	cases := []struct {
		protocol string
		start    func(testing.TB) (*collector, string)
	}{
		{"http/protobuf", startHTTPCollector}, // the base URL: the sidecar appends /v1/traces
		{"grpc", func(tb testing.TB) (*collector, string) {
			c, addr := startGRPCCollector(tb)
			return c, "http://" + addr // http://: plain text
		}},
	}
	for _, tc := range cases {
		t.Run(tc.protocol, func(t *testing.T) {
			t.Parallel()
			col, endpoint := tc.start(t)
			checkTracedRun(t, col, tc.protocol, endpoint)
		})
	}
}

// tracedRun is what one sidecar run sent to the app and to the collector.
type tracedRun struct {
	token    string
	identity []string // what the app received as X-User-*/X-Session-* values
	appTP    []string // traceparent the app received, per forwarded request
	spans    []exportedSpan
	log      string
}

// checkTracedRun serves three requests (a continued trace with a bearer token, a new trace
// with the cookie, an invalid token), stops the sidecar, and checks what the collector got.
func checkTracedRun(t *testing.T, col *collector, protocol, endpoint string) {
	st := newStack(t)
	up := NewUpstream(t, nil)
	token, _, _ := st.session(t, testenv.SessionSpec{UserAgent: "Mozilla/5.0 secret-agent", IPAddress: "203.0.113.7"})
	st.remember(badToken)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
		"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
		"OTEL_EXPORTER_OTLP_HEADERS":  exportHeader + "=" + collectorSecret,
		"OTEL_SERVICE_NAME":           "authsidecar-e2e",
		"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment.name=e2e",
		// Nothing is exported before shutdown: every span arrives through the final flush.
		"OTEL_BSP_SCHEDULE_DELAY": "600000",
		"SESSION_COOKIE":          "sid",
		"LOG_LEVEL":               "info",
	}))
	// The feed's first resync drops the in-process cache, and with it the fill of a lookup
	// that began before: the second request would then ask Redis, and the trace count differ.
	awaitFeedRole(t, sc, seriesFeedHolder, 10*time.Second)
	run := tracedRun{token: token}

	req := newRequest(t, http.MethodGet, sc.URL+"/dashboard/private-path?tab=private-query", token, nil)
	req.Header.Set("Traceparent", e2eTraceparent)
	if r := sc.Do(t, req); r.Status != http.StatusOK {
		t.Fatalf("continued trace: status %d", r.Status)
	}
	got := up.Last(t).Header
	run.appTP = append(run.appTP, got.Get("Traceparent"))
	for _, k := range []string{"X-User-Id", "X-User-Email", "X-Session-Id"} {
		run.identity = append(run.identity, got.Get(k))
	}
	req = newRequest(t, http.MethodGet, sc.URL+"/settings", "", nil)
	req.AddCookie(&http.Cookie{Name: "sid", Value: token})
	if r := sc.Do(t, req); r.Status != http.StatusOK {
		t.Fatalf("cookie: status %d", r.Status)
	}
	run.appTP = append(run.appTP, up.Last(t).Header.Get("Traceparent"))
	if r := sc.Get(t, "/x", badToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("invalid token: status %d", r.Status)
	}
	if spans := col.Spans(); len(spans) != 0 {
		t.Fatalf("%d spans exported before shutdown with OTEL_BSP_SCHEDULE_DELAY=600000", len(spans))
	}
	if code := sc.Stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	run.spans, run.log = col.Spans(), sc.Stderr()

	run.checkTrees(t)
	run.checkNothingSecret(t)
	for _, h := range col.Headers() {
		if h != collectorSecret {
			t.Errorf("an export came with %s %q, want the configured value", exportHeader, h)
		}
	}
	if res := run.spans[0].Resource; res["service.name"] != "authsidecar-e2e" ||
		res["service.version"] != "blackbox-test" || res["deployment.environment.name"] != "e2e" {
		t.Errorf("resource %v, want OTEL_SERVICE_NAME, the version and OTEL_RESOURCE_ATTRIBUTES", res)
	}
}

// checkTrees checks the three requests' span trees: a server span, a child per cache layer
// asked and one for the request to the app; the app's traceparent names that child.
func (run tracedRun) checkTrees(t *testing.T) {
	t.Helper()
	if len(run.spans) != 12 {
		t.Fatalf("%d spans exported, want 12 (5 + 3 + 4):\n%s", len(run.spans), dumpSpans(run.spans))
	}
	traces := map[string][]exportedSpan{}
	for _, s := range run.spans {
		traces[s.TraceID()] = append(traces[s.TraceID()], s)
	}
	first := tree(t, traces[e2eClientTrace], e2eClientParent)
	want := []string{"GET/client", "authcache.local=miss", "authcache.postgres=found", "authcache.redis=miss"}
	first.check(t, "continued trace", want, "200", "postgres")
	checkTraceparent(t, run.appTP[0], e2eClientTrace, first.client)

	second := tree(t, traces[traceOf(run.appTP[1])], "")
	second.check(t, "cookie, new trace", []string{"GET/client", "authcache.local=hit"}, "200", "local")
	checkTraceparent(t, run.appTP[1], second.server.TraceID(), second.client)

	delete(traces, e2eClientTrace)
	delete(traces, traceOf(run.appTP[1]))
	if len(traces) != 1 {
		t.Fatalf("%d other traces, want the invalid token's alone", len(traces))
	}
	for _, spans := range traces {
		third := tree(t, spans, "")
		want := []string{"authcache.local=miss", "authcache.postgres=not_found", "authcache.redis=miss"}
		third.check(t, "invalid token", want, "401", "postgres")
	}
}

// spanTree is one request's server span and its children.
type spanTree struct {
	server, client exportedSpan
	children       []string // "name=result", or "name/client" for the request to the app
}

// tree finds the server span (under parent, or a root when parent is "") and checks that
// every other span of the trace is its direct child.
func tree(t *testing.T, spans []exportedSpan, parent string) spanTree {
	t.Helper()
	var tr spanTree
	for _, s := range spans {
		if s.Kind.String() == "SPAN_KIND_SERVER" {
			tr.server = s
		}
	}
	if tr.server.Span == nil || tr.server.Parent() != parent || tr.server.Name != "GET" {
		t.Fatalf("no GET server span under %q in:\n%s", parent, dumpSpans(spans))
	}
	for _, s := range spans {
		switch {
		case s.Span == tr.server.Span:
		case s.Parent() != tr.server.SpanID():
			t.Errorf("span %s is not a child of the server span", s.Name)
		case s.Kind.String() == "SPAN_KIND_CLIENT" && !strings.HasPrefix(s.Name, "authcache."):
			tr.client = s
			tr.children = append(tr.children, s.Name+"/client")
		default:
			tr.children = append(tr.children, s.Name+"="+s.Attr("authsidecar.lookup.result"))
		}
	}
	slices.Sort(tr.children)
	return tr
}

func (tr spanTree) check(t *testing.T, what string, children []string, status, layer string) {
	t.Helper()
	if !slices.Equal(tr.children, children) {
		t.Errorf("%s: children %v, want %v", what, tr.children, children)
	}
	s := tr.server
	got := [4]string{s.Attr("http.request.method"), s.Attr("http.response.status_code"), s.Attr("authsidecar.route"), s.Attr("authsidecar.cache.layer")}
	if want := [4]string{"GET", status, "protected", layer}; got != want {
		t.Errorf("%s: server span method, status, route, layer %q, want %q", what, got, want)
	}
}

func checkTraceparent(t *testing.T, got, traceID string, client exportedSpan) {
	t.Helper()
	if want := "00-" + traceID + "-" + client.SpanID() + "-01"; got != want {
		t.Errorf("the app got traceparent %q, want %q (the sidecar's client span)", got, want)
	}
}

func traceOf(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[1]
}

// checkNothingSecret scans every exported name, attribute, status and event, and the log,
// for the tokens (in every encoding the raw-token scanner knows), the collector's header,
// the identity the app received, the paths and the query.
func (run tracedRun) checkNothingSecret(t *testing.T) {
	t.Helper()
	dump := dumpSpans(run.spans)
	testenv.AssertNoRawTokens(t, testenv.TokenScan{
		Texts:   map[string]string{"exported spans": dump, "sidecar log": run.log},
		Secrets: []string{run.token, badToken, collectorSecret},
	})
	for _, v := range append(run.identity, "private-path", "private-query", "/settings", "secret-agent", "203.0.113.7") {
		if v == "" || strings.Contains(dump, v) {
			t.Errorf("exported spans hold %q (or the app got no identity)", v)
		}
	}
}

func dumpSpans(spans []exportedSpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%s %s %s parent=%s kind=%s status=%v attrs=%v events=%v resource=%v\n",
			s.TraceID(), s.SpanID(), s.Name, s.Parent(), s.Kind, s.Status, attrMap(s.Attributes), s.Events, s.Resource)
	}
	return b.String()
}

func TestWithoutOTELVariablesTraceHeadersPassThrough(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, nil)
	token, _, _ := st.session(t, testenv.SessionSpec{})
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"OTEL_SERVICE_NAME": "set-but-no-endpoint"}))
	req := newRequest(t, http.MethodGet, sc.URL+"/x", token, nil)
	req.Header.Set("Traceparent", e2eTraceparent)
	req.Header.Set("Tracestate", "vendor=opaque")
	sc.Do(t, req)
	got := up.Last(t).Header
	if tp, ts := got.Values("Traceparent"), got.Values("Tracestate"); !slices.Equal(tp, []string{e2eTraceparent}) || !slices.Equal(ts, []string{"vendor=opaque"}) {
		t.Errorf("the app got traceparent %q tracestate %q, want the client's as sent", tp, ts)
	}
	sc.Get(t, "/x", token)
	if tp := up.Last(t).Header.Values("Traceparent"); tp != nil {
		t.Errorf("without a client traceparent the app got %q, want none", tp)
	}
}

func TestBadOTELVariablesExitTwoNamingEach(t *testing.T) {
	t.Parallel()
	code, _, stderr := runSidecar(t, map[string]string{
		"UPSTREAM_URL": "http://127.0.0.1:3000", "DATABASE_URL": "postgres://u@127.0.0.1:1/db",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/xml",
		"OTEL_EXPORTER_OTLP_HEADERS":         "api-key-secret-without-equals",
		"OTEL_TRACES_SAMPLER_ARG":            "2",
		"OTEL_TRACES_SAMPLER":                "traceidratio",
	})
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL: ", "OTEL_EXPORTER_OTLP_HEADERS: ", "OTEL_TRACES_SAMPLER_ARG: "} {
		if !strings.Contains(stderr, name) {
			t.Errorf("stderr does not name %s:\n%s", name, stderr)
		}
	}
	if strings.Contains(stderr, "api-key-secret") {
		t.Errorf("stderr echoes a header value:\n%s", stderr)
	}
}

func TestHelpNamesTheOTELVariables(t *testing.T) {
	t.Parallel()
	_, help, _ := runSidecar(t, nil, "-h")
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
		"OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_SERVICE_NAME",
		"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_BSP_"} {
		if !strings.Contains(help, name) {
			t.Errorf("-h does not mention %s", name)
		}
	}
}
