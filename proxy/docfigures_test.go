package proxy

// Figures reference.md states about the public listener, each held here: the X-Request-Id
// rule, the access line's field sizes, and how many clients the invalid-token limit tracks.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/pgsession"
)

// TestRequestIDIsKeptOnlyWhenSane holds reference.md's X-Request-Id rule: the client's value
// reaches the app if it is 1–128 visible ASCII characters; otherwise the sidecar sets a
// random one, and the app receives one either way.
func TestRequestIDIsKeptOnlyWhenSane(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	var generated []string
	for _, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"one character", "a", true},
		{"128 characters", strings.Repeat("r", 128), true},
		{"visible ASCII punctuation", "req-1:2/3_4.5~!", true},
		{"129 characters", strings.Repeat("r", 129), false},
		{"a space", "req 1", false},
		{"a tab", "req\t1", false},
		{"non-ASCII", "réq", false},
		{"none", "", false},
	} {
		h := http.Header{"Authorization": {"Bearer good"}}
		if tc.sent != "" {
			h["X-Request-Id"] = []string{tc.sent}
		}
		do(t, http.MethodGet, srv.URL+"/api/x", h)
		got := app.last(t).Header.Values("X-Request-Id")
		switch {
		case len(got) != 1 || got[0] == "":
			t.Errorf("%s: the app received X-Request-Id %q, want exactly one", tc.name, got)
		case tc.kept && got[0] != tc.sent:
			t.Errorf("%s: the app received %q, want the client's %q", tc.name, got[0], tc.sent)
		case !tc.kept && (got[0] == tc.sent || !validToken(got[0]) || len(got[0]) > 128):
			t.Errorf("%s: the app received %q, want a fresh id of visible ASCII", tc.name, got[0])
		case !tc.kept:
			generated = append(generated, got[0])
		}
	}
	for i := range generated {
		for j := range i {
			if generated[i] == generated[j] {
				t.Errorf("two generated ids are equal: %q", generated[i])
			}
		}
	}
}

// TestAccessLineFieldsAreCutAtTheirStatedSizes: method at 32 bytes, path at 1024, user agent
// at 512, counted as zap writes them in JSON.
func TestAccessLineFieldsAreCutAtTheirStatedSizes(t *testing.T) {
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel)
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, func(o *Options) { o.Logger = zap.New(core).Named("proxy") })
	r := httptest.NewRequest(strings.Repeat("M", 100), "http://app/x", nil)
	r.URL.Path = "/" + strings.Repeat("p", 5000)
	r.Header.Set("User-Agent", strings.Repeat("\x02", 2000)) // six bytes each, escaped
	srv.Config.Handler.ServeHTTP(httptest.NewRecorder(), r)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("access line %q: %v", buf.String(), err)
	}
	for field, limit := range map[string]int{"method": 32, "path": 1024, "userAgent": 512} {
		v, _ := line[field].(string)
		if cost := encodedCost(v); cost > limit || cost < limit-8 || !strings.HasSuffix(v, ellipsis) {
			t.Errorf("%s: %d bytes as written, want it cut to at most %d (and not far below)", field, cost, limit)
		}
	}
}

// TestLimiterTracksAtMost64KiClients: reference.md and SECURITY.md say 64 Ki addresses,
// design.md 64 shards of at most 1024; TestLimiterMemoryIsBounded holds the bound itself.
func TestLimiterTracksAtMost64KiClients(t *testing.T) {
	if limiterShards != 64 || limiterPerShard != 1024 {
		t.Errorf("the limiter tracks %d shards × %d clients, the docs say 64 × 1024 (64 Ki)", limiterShards, limiterPerShard)
	}
}

// TestUpstreamErrorIsCutAt1024Bytes: the "upstream unreachable" line quotes the transport's
// error, which may quote what the app sent (here a 5,000-byte malformed status line); it is
// cut like the access line's fields.
func TestUpstreamErrorIsCutAt1024Bytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 4096))
			_, _ = io.WriteString(c, strings.Repeat("e", 5000)+"\r\n\r\n")
			c.Close()
		}
	}()
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.WarnLevel)
	srv, _ := newTestProxy(t, newUpstream(t, nil), func(o *Options) {
		o.Logger = zap.New(core).Named("proxy")
		o.Upstream = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	})
	r := httptest.NewRequest(http.MethodGet, "http://app/x", nil)
	r.Header.Set("Authorization", "Bearer good")
	w := httptest.NewRecorder()
	srv.Config.Handler.ServeHTTP(w, r)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || w.Code != http.StatusBadGateway || line["msg"] != "upstream unreachable" {
		t.Fatalf("status %d, log %q (%v), want 502 and one upstream unreachable line", w.Code, buf.String(), err)
	}
	if v, _ := line["error"].(string); encodedCost(v) > 1024 || !strings.HasSuffix(v, ellipsis) {
		t.Errorf("error of %d bytes as written, want it cut at 1024: %.80q…", encodedCost(v), v)
	}
}

// TestEmptyIdentityFieldsAreNotSent: the README and reference.md, "A header whose value is
// empty (a NULL column) is not sent": no header at all, rather than an empty one.
func TestEmptyIdentityFieldsAreNotSent(t *testing.T) {
	app := newUpstream(t, nil)
	srv, auth := newTestProxy(t, app, nil)
	auth.mu.Lock()
	auth.sessions["bare"] = pgsession.Session{ID: "33333333-3333-3333-3333-333333333333", UserID: "44444444-4444-4444-4444-444444444444",
		Email: "bare@example.com", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	auth.mu.Unlock()
	if resp := do(t, http.MethodGet, srv.URL+"/api/x", http.Header{"Authorization": {"Bearer bare"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := app.last(t).Header
	for _, name := range []string{"X-User-First-Name", "X-User-Last-Name", "X-User-Username"} {
		if v, ok := got[name]; ok {
			t.Errorf("%s sent for an empty field: %q", name, v)
		}
	}
	for _, name := range []string{"X-User-Id", "X-User-Email", "X-Session-Id", "X-Session-Expires-At"} {
		if got.Get(name) == "" {
			t.Errorf("%s missing", name)
		}
	}
}

// TestClientThatLeftIsCountedAndLoggedAs499: reference.md, "A client that goes away before
// the answer is counted and logged as 499; nothing is sent".
func TestClientThatLeftIsCountedAndLoggedAs499(t *testing.T) {
	var buf lockedLog
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel)
	release := make(chan struct{})
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select { // until the client has gone (or a hang bound)
		case <-r.Context().Done():
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	defer close(release)
	reg := prometheus.NewRegistry()
	srv, _ := newTestProxy(t, app, func(o *Options) { o.Logger = zap.New(core).Named("proxy"); o.Registerer = reg })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/slow", nil)
	req.Header.Set("Authorization", "Bearer good")
	go func() {
		for app.count() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel() // the client leaves while the app works
	}()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the client got an answer (%d) although it left", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second) // a hang bound: the line follows the request's end
	for !strings.Contains(buf.String(), `"status":499`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access line with status 499: %s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for n := count499(t, reg); n != 1; n = count499(t, reg) {
		if time.Now().After(deadline) {
			t.Fatalf(`authsidecar_http_requests_total{code="499"} = %v, want 1`, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count499(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetName() == "authsidecar_http_requests_total" && len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "499" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// lockedLog is a log sink read while the server writes to it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
