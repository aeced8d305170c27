package e2e

// Black-box tests of SPEC "Trust at the seams" (issue 12) and of public-listener rule 1's
// header lists, against the built binary. Requests a normal client would normalise are
// written by hand on a raw socket; the recording upstream shows what the app saw.

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// websocketAccept is the Sec-WebSocket-Accept a real WebSocket server answers key with.
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// rawRequest opens a connection to the sidecar's public listener and writes req as it is.
// The connection has a 15 s deadline and is closed at cleanup.
func rawRequest(tb testing.TB, sc *Sidecar, req string) (net.Conn, *bufio.Reader) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(sc.URL, "http://"), 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		tb.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readRaw reads one whole response from br.
func readRaw(tb testing.TB, br *bufio.Reader) (*http.Response, string) {
	tb.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// closedWithin checks that the sidecar closes conn (EOF) within d after its answer.
func closedWithin(tb testing.TB, conn net.Conn, br *bufio.Reader, d time.Duration) {
	tb.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	if b, err := br.ReadByte(); err != io.EOF {
		tb.Errorf("connection not closed within %v of the answer (read %q, %v)", d, b, err)
	}
}

const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

func upgradeRequest(path, token, protocol string) string {
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	return "GET " + path + " HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: " + protocol + "\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + wsKey + "\r\n" + auth + "\r\n"
}

func TestSeamsUpgradeOnAPublicPathNeedsASession(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, echoWebSocket(nil))
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"PUBLIC_PATHS": "/ws,/_next", "BODY_IDLE_TIMEOUT": "300ms"}))
	token, _, userID := st.session(t, testenv.SessionSpec{})

	for _, path := range []string{"/ws", "/ws/chat", "/_next/webpack-hmr"} {
		_, br := rawRequest(t, sc, upgradeRequest(path, "", "websocket"))
		if resp, body := readRaw(t, br); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous upgrade of public %s: %d %q, want 401", path, resp.StatusCode, body)
		}
	}
	if n := up.Count(); n != 0 {
		t.Fatalf("the app saw %d anonymous upgrades", n)
	}

	// With a session the same public path upgrades, the app learns who it is, and the tunnel
	// outlives BODY_IDLE_TIMEOUT: the idle deadline is the request body's, never the tunnel's.
	conn, br := rawRequest(t, sc, upgradeRequest("/ws", token, "websocket"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade with a session: %v, %v", resp, err)
	}
	if got := resp.Header.Get("X-Echo-User"); got != userID {
		t.Errorf("the app saw user %q, want %q", got, userID)
	}
	wsEcho(t, conn, br, "first")
	time.Sleep(time.Second)
	wsEcho(t, conn, br, "after three idle timeouts")
}

// h2cApp is the lenient app of the issue: it switches to h2c whenever it is asked to, and
// records every request's Upgrade and HTTP2-Settings.
func h2cApp(seen chan<- string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Upgrade") + "|" + r.Header.Get("Http2-Settings")
		if strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "h2c")
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		_, _ = io.WriteString(w, "http/1.1 answer")
	}
}

func TestSeamsH2CNeverReachesTheApp(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	seen := make(chan string, 10)
	up := NewUpstream(t, h2cApp(seen))
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"PUBLIC_PATHS": "/login"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	for _, tc := range []struct{ path, token, upgrade string }{
		{"/login", "", "h2c"}, // as curl --http2 sends it: served over HTTP/1.1, no session needed
		{"/login", "", "H2C"},
		{"/api/data", token, "h2c"},
		{"/api/data", token, "h2c, HTTP/2.0"},
	} {
		req := "GET " + tc.path + " HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: " + tc.upgrade +
			"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
		if tc.token != "" {
			req += "Authorization: Bearer " + tc.token + "\r\n"
		}
		_, br := rawRequest(t, sc, req+"\r\n")
		resp, body := readRaw(t, br)
		if resp.StatusCode != http.StatusOK || body != "http/1.1 answer" {
			t.Errorf("%s with Upgrade: %s: %d %q, want the app's HTTP/1.1 answer", tc.path, tc.upgrade, resp.StatusCode, body)
		}
		select {
		case got := <-seen:
			if got != "|" {
				t.Errorf("%s with Upgrade: %s: the app saw Upgrade|HTTP2-Settings = %q", tc.path, tc.upgrade, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the app never saw %s", tc.path)
		}
	}
}

func TestSeamsWrongWebSocketAcceptIs502(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		accept := websocketAccept("a key the client never sent")
		if r.URL.Path == "/ws/right" {
			accept = websocketAccept(r.Header.Get("Sec-WebSocket-Key"))
		}
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept)
		_ = rw.Flush()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = rw.ReadByte() // until the sidecar lets go
	})
	sc := StartSidecar(t, st.env(up.URL, nil))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	_, br := rawRequest(t, sc, upgradeRequest("/ws/wrong", token, "websocket"))
	if resp, body := readRaw(t, br); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "bad gateway") {
		t.Errorf("wrong Sec-WebSocket-Accept: %d %q, want 502", resp.StatusCode, body)
	}
	_, br = rawRequest(t, sc, upgradeRequest("/ws/right", token, "websocket"))
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("right Sec-WebSocket-Accept: %v %v, want 101", resp, err)
	}
}

func TestSeamsRefusalIsImmediateAndClosesTheConnection(t *testing.T) {
	t.Parallel()
	st, up, sc := standard(t, nil)
	for _, tc := range []struct{ name, head string }{
		{"no token, Content-Length 100000", "POST /api/upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100000\r\n\r\n"},
		{"no token, Content-Length 10 GB", "POST /api/upload HTTP/1.1\r\nHost: app\r\nContent-Length: 10000000000\r\n\r\n"},
		{"no token, chunked", "POST /api/upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"unknown token, a first byte", "POST /api/upload HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer not-a-session\r\nContent-Length: 100000\r\n\r\nx"},
		{"Expect: 100-continue", "PUT /api/upload HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"},
	} {
		start := time.Now()
		conn, br := rawRequest(t, sc, tc.head) // the body is never sent
		resp, _ := readRaw(t, br)
		took := time.Since(start)
		t.Logf("%s: %d after %v", tc.name, resp.StatusCode, took.Round(time.Millisecond))
		if resp.StatusCode != http.StatusUnauthorized || took > time.Second {
			t.Errorf("%s: %d after %v, want 401 within 1s", tc.name, resp.StatusCode, took)
		}
		if !resp.Close {
			t.Errorf("%s: the answer does not say Connection: close", tc.name)
		}
		closedWithin(t, conn, br, 2*time.Second)
	}
	if n := up.Count(); n != 0 {
		t.Errorf("the app saw %d refused requests", n)
	}
	_ = st
}

// bodyApp records, for each request, whether its body arrived whole.
func bodyApp(t *testing.T) (*httptest.Server, <-chan error) {
	t.Helper()
	results := make(chan error, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		results <- err
		if err == nil {
			_, _ = io.WriteString(w, "whole body")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, results
}

func TestSeamsStalledBodyIs408AndTheAppSeesItAborted(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	app, results := bodyApp(t)
	sc := StartSidecar(t, st.env(app.URL, map[string]string{"BODY_IDLE_TIMEOUT": "500ms", "PUBLIC_PATHS": "/upload"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	for _, tc := range []struct{ name, req string }{
		{"protected, Content-Length", "POST /api/upload HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer " + token + "\r\nContent-Length: 1000\r\n\r\nfirst bytes"},
		{"public, chunked", "POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"},
	} {
		start := time.Now()
		conn, br := rawRequest(t, sc, tc.req) // and then nothing more
		resp, body := readRaw(t, br)
		took := time.Since(start)
		t.Logf("%s: %d %q after %v", tc.name, resp.StatusCode, body, took.Round(time.Millisecond))
		if resp.StatusCode != http.StatusRequestTimeout || took < 400*time.Millisecond || took > 5*time.Second {
			t.Errorf("%s: %d after %v, want 408 after BODY_IDLE_TIMEOUT (500ms)", tc.name, resp.StatusCode, took)
		}
		select {
		case err := <-results:
			if err == nil {
				t.Errorf("%s: the app read a whole body", tc.name)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the app never saw the request end", tc.name)
		}
		closedWithin(t, conn, br, 2*time.Second)
	}
	if strings.Contains(sc.Stderr(), "upstream unreachable") {
		t.Errorf("a stalled body was logged as the app's fault:\n%s", sc.Stderr())
	}
}

func TestSeamsBadFramingIs400NotTheAppsFault(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	app, results := bodyApp(t)
	sc := StartSidecar(t, st.env(app.URL, map[string]string{"PUBLIC_PATHS": "/upload"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	for _, tc := range []struct {
		name, req string
		halfClose bool
	}{
		{"chunk size not hex", "POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false},
		{"chunk longer than its size", "POST /api/upload HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer " + token +
			"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello world\r\n0\r\n\r\n", false},
		{"body shorter than Content-Length", "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\nonly this", true},
	} {
		conn, br := rawRequest(t, sc, tc.req)
		if tc.halfClose {
			_ = conn.(*net.TCPConn).CloseWrite() // the client is done sending, and still listens
		}
		resp, body := readRaw(t, br)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", tc.name, resp.StatusCode, body)
		}
		select {
		case err := <-results:
			if err == nil {
				t.Errorf("%s: the app read a whole body", tc.name)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the app never saw the request end", tc.name)
		}
	}
	time.Sleep(1100 * time.Millisecond) // zap flushes every second
	if strings.Contains(sc.Stderr(), "upstream unreachable") {
		t.Errorf("bad framing was logged as the app's fault:\n%s", sc.Stderr())
	}
}

func TestSeamsAccessLineOfA250KBPathFitsIn4KB(t *testing.T) {
	t.Parallel()
	st, _, sc := standard(t, map[string]string{"LOG_LEVEL": "info"})
	path := "/" + strings.Repeat("a", 250<<10)
	_, br := rawRequest(t, sc, "GET "+path+"?q="+strings.Repeat("b", 1000)+" HTTP/1.1\r\nHost: app\r\nUser-Agent: "+
		strings.Repeat("agent ", 1000)+"\r\n\r\n")
	if resp, _ := readRaw(t, br); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a 250 KB path without a token: %d, want 401", resp.StatusCode)
	}
	var line string
	eventually(t, 5*time.Second, "the access line of the 250 KB path", func() bool {
		for _, l := range strings.Split(sc.Stderr(), "\n") {
			if strings.Contains(l, `"path":"/aaaa`) {
				line = l
				return true
			}
		}
		return false
	})
	t.Logf("access line of a %d KB request line: %d bytes", (len(path)+7000)>>10, len(line))
	if len(line) > 4096 {
		t.Errorf("access line of %d bytes", len(line))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("access line %q: %v", line[:200], err)
	}
	if got["truncated"] != true || !strings.HasSuffix(got["path"].(string), "…") || !strings.HasSuffix(got["userAgent"].(string), "…") {
		t.Errorf("the cut line does not say so: truncated %v, path …%q, userAgent …%q", got["truncated"],
			tail(got["path"]), tail(got["userAgent"]))
	}
	if strings.Contains(line, "bbbb") {
		t.Error("the query string was logged")
	}
	for _, l := range strings.Split(sc.Stderr(), "\n") {
		if len(l) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s…", len(l), l)
		}
	}
	_ = st
}

func tail(v any) string {
	s, _ := v.(string)
	return s[max(0, len(s)-10):]
}

// headerSpellings is a name as clients may send it: canonical, lower, upper, '_' for '-'.
func headerSpellings(name string) []string {
	return []string{http.CanonicalHeaderKey(name), strings.ToLower(name), strings.ToUpper(name),
		strings.ReplaceAll(name, "-", "_")}
}

func TestSeamsHeaderListsInEverySpelling(t *testing.T) {
	t.Parallel()
	always := []string{"X-Auth-Assertion", "X-Middleware-Subrequest", "X-Middleware-Subrequest-Id",
		"X-Invoke-Path", "X-Invoke-Query", "X-Invoke-Status", "X-Now-Route-Matches", "X-User-Id", "X-Session-Id"}
	proxyOnly := []string{"Forwarded", "X-Real-IP", "Client-IP", "X-Client-IP", "X-Cluster-Client-IP",
		"True-Client-IP", "CF-Connecting-IP", "X-Forwarded", "X-Forwarded-Prefix", "X-Forwarded-Port",
		"Forwarded-For", "X-Host", "X-Original-Host", "X-Original-URL", "X-Rewrite-URL", "X-ProxyUser-Ip"}
	var sent strings.Builder
	for _, name := range append(append([]string{}, always...), proxyOnly...) {
		for i, k := range headerSpellings(name) {
			fmt.Fprintf(&sent, "%s: spoof-%d\r\n", k, i)
		}
	}
	sent.WriteString("Connection: x-middleware-subrequest, X_Auth_Assertion\r\n")
	for _, tc := range []struct {
		name, trusted string
	}{{"untrusted peer", ""}, {"trusted peer", "127.0.0.1/32"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, up, sc := standard(t, map[string]string{"TRUSTED_PROXIES": tc.trusted})
			token, _, userID := st.session(t, testenv.SessionSpec{})
			for _, path := range []string{"/login", "/api/data"} {
				_, br := rawRequest(t, sc, "GET "+path+" HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer "+token+"\r\n"+sent.String()+"\r\n")
				if resp, body := readRaw(t, br); resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
				}
				got := up.Last(t).Header
				for name, vals := range got {
					spoofed := strings.Contains(strings.Join(vals, ","), "spoof-")
					n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
					isProxy := false
					for _, p := range proxyOnly {
						isProxy = isProxy || strings.EqualFold(p, n)
					}
					if spoofed && (tc.trusted == "" || !isProxy) {
						t.Errorf("%s: the app received %s: %q", path, name, vals)
					}
				}
				if tc.trusted != "" {
					for _, name := range proxyOnly {
						if got.Get(name) == "" {
							t.Errorf("%s: a trusted proxy's %s was dropped", path, name)
						}
					}
				}
				if path == "/api/data" && got.Get("X-User-Id") != userID {
					t.Errorf("X-User-Id %q, want %q", got.Get("X-User-Id"), userID)
				}
			}
		})
	}
}
