package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestConnectionHeaderCannotDropIdentity(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	resp := do(t, "GET", srv.URL+"/x", http.Header{"Authorization": {"Bearer good"},
		"Connection": {"X-User-Id, x_session_id, X-Custom-Hop"}, "X-Custom-Hop": {"1"}})
	got := app.last(t)
	if resp.StatusCode != 200 || got.Header.Get("X-User-Id") != jose.UserID || got.Header.Get("X-Session-Id") != jose.ID {
		t.Fatalf("identity dropped via Connection: %v", got.Header)
	}
	if got.Header.Get("X-Custom-Hop") != "" {
		t.Error("a real hop-by-hop header named in Connection must still be removed")
	}
}

func TestAmbiguousPathsAreRefused(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	for _, p := range []string{"/login/..;/api/x", "/login/..;a=b/api", "/login/%2e%2e;/api", "/_next/static/..%5C..%5Capi", "/login/.;/x"} {
		if resp := do(t, "GET", srv.URL+p, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", p, resp.StatusCode)
		}
	}
	if app.count() != 0 {
		t.Fatal("an ambiguous path reached the app")
	}
}

func TestProxyHeadersKeptOnlyFromTrustedPeers(t *testing.T) {
	sent := http.Header{"X-Real-Ip": {"203.0.113.9"}, "X-Original-Url": {"/admin"},
		"X-Forwarded-Prefix": {"/evil"}, "X-Forwarded-Proto": {"https"}}
	cases := []struct {
		trusted []netip.Prefix
		want    string // X-Real-Ip and X-Original-Url the app sees
		proto   string
	}{
		{nil, "", "http"},
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "203.0.113.9", "https"},
	}
	for _, tc := range cases {
		app := newUpstream(t, nil)
		srv, _ := newTestProxy(t, app, func(o *Options) { o.TrustedProxies = tc.trusted })
		do(t, "GET", srv.URL+"/login", sent)
		got := app.last(t).Header
		if got.Get("X-Real-Ip") != tc.want || got.Get("X-Forwarded-Proto") != tc.proto ||
			(tc.want == "" && (got.Get("X-Original-Url") != "" || got.Get("X-Forwarded-Prefix") != "")) {
			t.Errorf("trusted %v: app saw %v", tc.trusted, got)
		}
	}
}

func TestOwnPathsAnswerOnlyGetAndHead(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	if resp := do(t, "HEAD", srv.URL+"/api/auth/validate", http.Header{"Authorization": {"Bearer good"}}); resp.StatusCode != 200 || app.count() != 0 {
		t.Fatalf("HEAD validate: %d, app saw %d", resp.StatusCode, app.count())
	}
	// Another method is an ordinary protected request for the app.
	if resp := do(t, "POST", srv.URL+"/api/auth/validate", http.Header{"Authorization": {"Bearer good"}}); resp.StatusCode != 200 || app.count() != 1 {
		t.Fatalf("POST validate: %d, app saw %d", resp.StatusCode, app.count())
	}
	if resp := do(t, "POST", srv.URL+"/api/health/redis", nil); resp.StatusCode != 401 {
		t.Fatalf("POST health without a token: %d, want 401", resp.StatusCode)
	}
}

func TestHijackedResponseIsRecordedAs101(t *testing.T) {
	got := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &responseWriter{ResponseWriter: w}
		conn, _, err := http.NewResponseController(rw).Hijack()
		if err == nil {
			conn.Close()
		}
		got <- rw.status
	}))
	t.Cleanup(srv.Close)
	if resp, err := http.Get(srv.URL); err == nil {
		resp.Body.Close()
	}
	if status := <-got; status != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", status)
	}
}

func TestProxyHeaderNamesAreMatchedLikeIdentityHeaders(t *testing.T) {
	for _, k := range []string{"X-Real-Ip", "X_real_ip", "x-REAL-ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Forwarded-Prefix", "X_forwarded_port", "X_Forwarded_For", "x-forwarded-host"} {
		if !isProxyHeader(k) {
			t.Errorf("%s kept from an untrusted peer", k)
		}
	}
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ipv6", "Authorization"} {
		if isProxyHeader(k) {
			t.Errorf("%s stripped", k)
		}
	}
}
