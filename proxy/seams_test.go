package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Tests of SPEC "Trust at the seams" and public-listener rule 1 against the handler, with a
// real upstream: header lists, upgrades, slow and malformed bodies.

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// spellings returns a header name as a client may send it: canonical, lower, upper, and
// with '_' for '-'.
func spellings(name string) []string {
	return []string{http.CanonicalHeaderKey(name), strings.ToLower(name), strings.ToUpper(name),
		strings.ReplaceAll(strings.ToLower(name), "-", "_")}
}

func TestNextInternalHeadersNeverReachTheAppFromAnyPeer(t *testing.T) {
	internal := []string{"x-middleware-subrequest", "x-middleware-subrequest-id", "x-invoke-path",
		"x-invoke-query", "x-invoke-output", "x-now-route-matches"}
	for _, trusted := range [][]netip.Prefix{nil, loopback} {
		for _, path := range []string{"/login", "/dashboard"} {
			app := newUpstream(t, nil)
			srv, _ := newTestProxy(t, app, func(o *Options) { o.TrustedProxies = trusted })
			sent := http.Header{"Authorization": {"Bearer good"}, "Connection": {"x-middleware-subrequest, X_Invoke_Path"}}
			for _, name := range internal {
				for _, k := range spellings(name) {
					sent[k] = []string{"middleware:middleware:middleware:middleware:middleware"}
				}
			}
			if resp := do(t, "GET", srv.URL+path, sent); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d", path, resp.StatusCode)
			}
			for k := range app.last(t).Header {
				if isInternalHeader(k) {
					t.Errorf("trusted %v, %s: %s reached the app", trusted, path, k)
				}
			}
		}
	}
}

func TestProxyOnlyHeadersAreKeptOnlyFromTrustedPeers(t *testing.T) {
	proxyOnly := []string{"Forwarded", "X-Real-IP", "Client-IP", "X-Client-IP", "X-Cluster-Client-IP",
		"True-Client-IP", "CF-Connecting-IP", "X-Forwarded", "X-Forwarded-Prefix", "X-Forwarded-Port",
		"X-Forwarded-Server", "Forwarded-For", "X-Host", "X-Original-Host", "X-Original-URL",
		"X-Rewrite-URL", "X-ProxyUser-Ip"}
	sent := http.Header{}
	for _, name := range proxyOnly {
		for _, k := range spellings(name) {
			sent[k] = []string{"for=203.0.113.9"}
		}
	}
	// Untrusted: none reaches the app, in any spelling.
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	do(t, "GET", srv.URL+"/login", sent)
	got := app.last(t).Header
	for k := range got {
		if isProxyHeader(k) {
			t.Errorf("untrusted peer: %s reached the app", k)
		}
	}
	if got.Get("X-Forwarded-For") != "127.0.0.1" || got.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("the sidecar's own X-Forwarded-* are missing: %v", got)
	}
	// Trusted: every one is kept, Forwarded included (Rewrite removes it; it is put back).
	app = newUpstream(t, nil)
	srv, _ = newTestProxy(t, app, func(o *Options) { o.TrustedProxies = loopback })
	do(t, "GET", srv.URL+"/login", sent)
	got = app.last(t).Header
	for _, name := range proxyOnly {
		if got.Get(name) != "for=203.0.113.9" {
			t.Errorf("trusted peer: %s = %q, want it kept", name, got.Get(name))
		}
	}
}

// rawConn sends raw HTTP/1.1 to srv and returns the connection with a reader, closed at
// cleanup, with a deadline so that no test can hang on it.
func rawConn(tb testing.TB, addr, request string) (net.Conn, *bufio.Reader) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(addr, "http://"), time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		tb.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

func readResponse(tb testing.TB, br *bufio.Reader) *http.Response {
	tb.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// assertClosed checks that the server closed the connection (EOF on the next read).
func assertClosed(tb testing.TB, conn net.Conn, br *bufio.Reader) {
	tb.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		tb.Errorf("connection still open after the answer (read: %v)", err)
	}
}

func TestUpgradeNeedsASessionOnEveryPath(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	for _, path := range []string{"/login", "/_next/static/x.js", "/dashboard"} {
		conn, br := rawConn(t, srv.URL, "GET "+path+" HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		if resp := readResponse(t, br); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous upgrade of %s: %d, want 401", path, resp.StatusCode)
		}
		conn.Close()
	}
	if app.count() != 0 {
		t.Fatalf("the app saw %d anonymous upgrades", app.count())
	}
	// An Upgrade header without Connection: upgrade is an upgrade attempt too.
	if resp := do(t, "GET", srv.URL+"/login", http.Header{"Upgrade": {"websocket"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bare Upgrade on a public path: %d, want 401", resp.StatusCode)
	}
}

func TestH2CIsNeverForwarded(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	for _, up := range []string{"h2c", "H2C", "h2c, HTTP/2.0", "h2"} {
		// As curl --http2 sends it, on a public path without a session: served as HTTP/1.1.
		conn, br := rawConn(t, srv.URL, "GET /login HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
			"Upgrade: "+up+"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
		if resp := readResponse(t, br); resp.StatusCode != http.StatusOK {
			t.Errorf("Upgrade: %s on a public path: %d, want 200 over HTTP/1.1", up, resp.StatusCode)
		}
		conn.Close()
		got := app.last(t).Header
		if got.Get("Upgrade") != "" || got.Get("Http2-Settings") != "" {
			t.Errorf("Upgrade: %s reached the app as %v", up, got)
		}
	}
	// Offered beside WebSocket, only h2c goes; the rest is an upgrade, which needs a session.
	h := http.Header{}
	stripH2C(http.Header{}) // no Upgrade at all: nothing to do
	h["Upgrade"] = []string{"h2c, websocket"}
	stripH2C(h)
	if got := h["Upgrade"]; len(got) != 1 || got[0] != "websocket" {
		t.Errorf("Upgrade: h2c, websocket → %v, want [websocket]", got)
	}
}

func TestWebSocketAcceptMustMatchTheKey(t *testing.T) {
	cases := []struct {
		name, accept string
		want         int
	}{
		{"right", acceptFor("dGhlIHNhbXBsZSBub25jZQ=="), http.StatusSwitchingProtocols},
		{"wrong", acceptFor("another key"), http.StatusBadGateway},
		{"missing", "", http.StatusBadGateway},
	}
	for _, tc := range cases {
		app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
			if tc.accept != "" {
				fmt.Fprintf(rw, "Sec-WebSocket-Accept: %s\r\n", tc.accept)
			}
			_, _ = rw.WriteString("\r\n")
			_ = rw.Flush()
			_, _ = rw.ReadByte() // hold the connection until the proxy lets go
		})
		srv := wtProxy(t, app, &wtAuth{}, nil)
		_, br := rawConn(t, srv.URL, "GET /ws HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer tok\r\nConnection: Upgrade\r\n"+
			"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != tc.want {
			t.Errorf("%s accept: %v %v, want %d", tc.name, resp, err, tc.want)
		}
	}
}

func TestRefusalDoesNotWaitForTheBody(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, func(o *Options) { o.BodyIdleTimeout = time.Minute })
	for _, head := range []string{
		"POST /api/upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100000\r\n\r\n",
		"POST /api/upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100000000\r\n\r\n",
		"POST /api/upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
		"POST /api/upload HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer nope\r\nContent-Length: 100000\r\n\r\nx",
		"POST /login/..;/x HTTP/1.1\r\nHost: app\r\nContent-Length: 100000\r\n\r\n",
		"GET /api/auth/validate HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer good\r\nContent-Length: 100000\r\n\r\n",
	} {
		start := time.Now()
		conn, br := rawConn(t, srv.URL, head)
		resp := readResponse(t, br)
		took := time.Since(start)
		if resp.StatusCode == http.StatusOK && !strings.HasPrefix(head, "GET") || took > time.Second {
			t.Errorf("%q: %d after %v, want a refusal at once", head, resp.StatusCode, took)
		}
		if !resp.Close {
			t.Errorf("%q: no Connection: close", head)
		}
		assertClosed(t, conn, br)
	}
	if app.count() != 0 {
		t.Fatalf("the app saw %d requests", app.count())
	}
	// Without a body the connection stays open for the next request.
	conn, br := rawConn(t, srv.URL, "GET /x HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp := readResponse(t, br); resp.StatusCode != http.StatusUnauthorized || resp.Close {
		t.Fatalf("bodyless 401: %d, close %v", resp.StatusCode, resp.Close)
	}
	_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp := readResponse(t, br); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("second request on the kept connection: %d", resp.StatusCode)
	}
}

// abortingApp records whether each request's body arrived whole.
type abortingApp struct {
	bodies chan error
}

func (a abortingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, err := io.ReadAll(r.Body)
	a.bodies <- err
	if err == nil {
		_, _ = io.WriteString(w, "got it")
	}
}

func bodyProxy(t *testing.T, idle time.Duration) (*httptest.Server, chan error, *observer.ObservedLogs) {
	t.Helper()
	app := abortingApp{bodies: make(chan error, 10)}
	core, logs := observer.New(zap.InfoLevel)
	srv := wtProxy(t, app, &wtAuth{}, func(o *Options) {
		o.BodyIdleTimeout = idle
		o.Logger = zap.New(core)
		o.PublicPaths = []string{"/upload"}
	})
	return srv, app.bodies, logs
}

func TestStalledBodyIs408AndTheAppSeesItAborted(t *testing.T) {
	srv, bodies, logs := bodyProxy(t, 300*time.Millisecond)
	for _, head := range []string{
		"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\npartial",
		"POST /api/x HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n",
	} {
		start := time.Now()
		conn, br := rawConn(t, srv.URL, head)
		resp := readResponse(t, br)
		if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 5*time.Second {
			t.Errorf("%q: %d after %v, want 408 after the idle timeout", head, resp.StatusCode, time.Since(start))
		}
		select {
		case err := <-bodies:
			if err == nil {
				t.Errorf("%q: the app read a whole body", head)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: the app never saw the request end", head)
		}
		assertClosed(t, conn, br)
	}
	if n := logs.FilterMessage("upstream unreachable").Len(); n != 0 {
		t.Errorf("a client's stalled body was logged as the app's fault %d times", n)
	}
}

func TestSlowButSteadyBodyAndSlowResponseAreNotCut(t *testing.T) {
	idle := 300 * time.Millisecond
	slowApp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(3 * idle) // a slow answer, after the body was read
		_, _ = w.Write(body)
	})
	srv := wtProxy(t, slowApp, &wtAuth{}, func(o *Options) { o.BodyIdleTimeout = idle })
	conn, br := rawConn(t, srv.URL, "POST /x HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer tok\r\nContent-Length: 4\r\n\r\n")
	for _, b := range "abcd" { // each byte well within the idle timeout, the whole well beyond it
		time.Sleep(idle / 2)
		_, _ = conn.Write([]byte{byte(b)})
	}
	resp := readResponse(t, br)
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || string(body) != "abcd" {
		t.Fatalf("slow body, slow answer: %d %q, want 200 abcd", resp.StatusCode, body)
	}
}

func TestMalformedBodyIs400NotTheAppsFault(t *testing.T) {
	srv, bodies, logs := bodyProxy(t, time.Minute)
	for _, tc := range []struct {
		name, req string
		halfClose bool
	}{
		{"bad chunk size", "POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false},
		{"chunk longer than said", "POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", false},
		{"shorter than Content-Length", "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\nshort", true},
	} {
		conn, br := rawConn(t, srv.URL, tc.req)
		if tc.halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
		resp := readResponse(t, br)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", tc.name, resp.StatusCode)
		}
		select {
		case err := <-bodies:
			if err == nil {
				t.Errorf("%s: the app read a whole body", tc.name)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the app never saw the request end", tc.name)
		}
	}
	if n := logs.FilterMessage("upstream unreachable").Len(); n != 0 {
		t.Errorf("bad framing was logged as the app's fault %d times", n)
	}
}
