package e2e

// Black-box tests of SPEC rule 7 (transparent proxying, X-Forwarded-*, WebSocket and
// streaming pass-through) and of the identity headers' encoding.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

func TestBlackboxProxyingIsTransparent(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1; Path=/")
		w.Header().Add("Set-Cookie", "b=2; Path=/")
		w.Header().Set("X-App", "yes")
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "echo:"+r.Method)
		w.Header().Set("X-Checksum", "abc123")
	})
	sc := StartSidecar(t, st.env(up.URL, nil))
	token, _, userID := st.session(t, testenv.SessionSpec{})
	for _, tc := range []struct{ method, uri, body string }{
		{http.MethodGet, "/api/items?b=2&a=1&a=0", ""},
		{http.MethodPost, "/api/items", `{"name":"x"}`},
		{http.MethodPut, "/api/items/1?dry-run", "put body"},
		{http.MethodPatch, "/api/a%20b/c%2Fd?q=%C3%A9", "patch"},
		{http.MethodDelete, "/api/items/1", ""},
		{"PROPFIND", "/dav/", "<propfind/>"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			req := newRequest(t, tc.method, sc.URL+"/", token, strings.NewReader(tc.body))
			req.URL.Opaque = tc.uri[:strings.IndexByte(tc.uri+"?", '?')]
			req.URL.RawQuery = strings.TrimPrefix(tc.uri[len(req.URL.Opaque):], "?")
			req.Header.Set("X-Custom", "v1")
			r := sc.Do(t, req)
			if r.Status != http.StatusTeapot || r.Body != "echo:"+tc.method {
				t.Fatalf("status %d body %q, want 418 %q", r.Status, r.Body, "echo:"+tc.method)
			}
			if got := r.Header.Values("Set-Cookie"); len(got) != 2 || r.Header.Get("X-App") != "yes" {
				t.Errorf("response headers changed: %v", r.Header)
			}
			if got := r.Trailer.Get("X-Checksum"); got != "abc123" {
				t.Errorf("trailer X-Checksum %q, want abc123", got)
			}
			got := up.Last(t)
			if got.Method != tc.method || got.RequestURI != tc.uri || got.Body != tc.body {
				t.Errorf("app received %s %s %q, want %s %s %q", got.Method, got.RequestURI, got.Body, tc.method, tc.uri, tc.body)
			}
			if got.Header.Get("X-Custom") != "v1" || got.Header.Get("Authorization") != "Bearer "+token {
				t.Errorf("request headers changed: %v", got.Header)
			}
			if got.Header.Get("X-User-Id") != userID {
				t.Errorf("X-User-Id %q, want %q", got.Header.Get("X-User-Id"), userID)
			}
		})
	}
}

func TestBlackboxForwardedHeadersHonourTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, trusted          string
		wantFor, wantProto     string
		wantHostFromIncoming   bool
		incomingFor, incomingH string
	}{
		{"peer trusted: chain kept", "127.0.0.1/32", "203.0.113.7, 10.1.2.3, 127.0.0.1", "https", true, "203.0.113.7, 10.1.2.3", "app.example.test"},
		{"peer not trusted: chain replaced", "10.0.0.0/8", "127.0.0.1", "http", false, "203.0.113.7, 10.1.2.3", "app.example.test"},
		{"no trusted proxies: chain replaced", "", "127.0.0.1", "http", false, "203.0.113.7", "evil.example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStack(t)
			up := NewUpstream(t, nil)
			sc := StartSidecar(t, st.env(up.URL, map[string]string{"TRUSTED_PROXIES": tc.trusted, "PUBLIC_PATHS": "/pub"}))
			req := newRequest(t, http.MethodGet, sc.URL+"/pub", "", nil)
			req.Header.Set("X-Forwarded-For", tc.incomingFor)
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", tc.incomingH)
			if r := sc.Do(t, req); r.Status != http.StatusOK {
				t.Fatalf("status %d", r.Status)
			}
			got := up.Last(t).Header
			wantHost := map[bool]string{true: tc.incomingH, false: strings.TrimPrefix(sc.URL, "http://")}[tc.wantHostFromIncoming]
			for k, want := range map[string]string{"X-Forwarded-For": tc.wantFor, "X-Forwarded-Proto": tc.wantProto, "X-Forwarded-Host": wantHost} {
				if v := strings.Join(got.Values(k), ", "); v != want {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
		})
	}
}

func TestBlackboxIdentityHeadersArePercentEncoded(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, nil))
	userID := st.db.User(t, testenv.UserSpec{Email: "jose@example.test", FirstName: "José", LastName: "100% Smith",
		Username: "line1\nline2"})
	token, _ := st.db.Session(t, userID, testenv.SessionSpec{ExpiresIn: 90 * time.Minute})
	if r := sc.Get(t, "/api/me", token); r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	got := up.Last(t).Header
	for k, want := range map[string]string{
		"X-User-Id": userID, "X-User-Email": "jose@example.test",
		"X-User-First-Name": "Jos%C3%A9", "X-User-Last-Name": "100%25 Smith", "X-User-Username": "line1%0Aline2",
	} {
		if v := got.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("%s = %q, want [%q]", k, v, want)
		}
	}
	for _, k := range []string{"X-User-First-Name", "X-User-Last-Name", "X-User-Username"} {
		decoded, err := url.PathUnescape(got.Get(k)) // what decodeURIComponent does
		if err != nil || !strings.ContainsAny(decoded, "é%\n") {
			t.Errorf("%s does not decode back to the original: %q (%v)", k, decoded, err)
		}
	}
	var expires time.Time
	if err := st.db.Pool.QueryRow(t.Context(), `SELECT expires_at FROM platform.user_sessions WHERE user_id = $1`, userID).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	if v, want := got.Get("X-Session-Expires-At"), expires.UTC().Truncate(time.Second).Format(time.RFC3339); v != want || !rfc3339Seconds.MatchString(v) {
		t.Errorf("X-Session-Expires-At %q, want %q", v, want)
	}
	if got.Get("X-Session-Id") == "" {
		t.Errorf("no X-Session-Id")
	}
	if _, ok := got["X-User-Avatar-Url"]; ok {
		t.Errorf("empty avatar sent as a header")
	}
}

// echoWebSocket answers a WebSocket-style upgrade by hijacking the connection and echoing
// every line back as "echo <line>"; the 101 names the X-User-Id it was given in X-Echo-User.
// Unless closed is nil, each upgraded connection sends on it a channel that is closed once
// the app's side of that connection is gone.
func echoWebSocket(closed chan<- chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if closed != nil {
			done := make(chan struct{})
			closed <- done
			defer close(done)
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Echo-User: %s\r\n"+
			"Sec-WebSocket-Accept: %s\r\n\r\n", r.Header.Get("X-User-Id"), websocketAccept(r.Header.Get("Sec-WebSocket-Key")))
		if rw.Flush() != nil {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // bounded even if nobody closes it
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return // the sidecar closed its side
			}
			_, _ = rw.WriteString("echo " + line)
			if rw.Flush() != nil {
				return
			}
		}
	}
}

// dialWebSocket sends a WebSocket upgrade of /ws through the sidecar, with the token as a
// Bearer token and the extra header, and fails unless it is answered 101.
func dialWebSocket(tb testing.TB, sc *Sidecar, token string, extra http.Header) (net.Conn, *bufio.Reader, *http.Response) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(sc.URL, "http://"), 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer %s\r\n", token)
	_ = extra.Write(conn)
	_, _ = io.WriteString(conn, "\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade answered %d, want 101", resp.StatusCode)
	}
	return conn, br, resp
}

// wsEcho sends one line on an upgraded connection and checks that it comes back echoed.
func wsEcho(tb testing.TB, conn net.Conn, br *bufio.Reader, line string) {
	tb.Helper()
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		tb.Fatal(err)
	}
	if got, err := br.ReadString('\n'); err != nil || got != "echo "+line+"\n" {
		tb.Fatalf("echo %q (%v), want %q", got, err, "echo "+line+"\n")
	}
}

func TestBlackboxWebSocketUpgradePassesThrough(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, echoWebSocket(nil))
	sc := StartSidecar(t, st.env(up.URL, nil))
	token, _, userID := st.session(t, testenv.SessionSpec{})

	conn, br, resp := dialWebSocket(t, sc, token, http.Header{"X-User-Id": {"spoofed"}})
	if got := resp.Header.Get("X-Echo-User"); got != userID {
		t.Fatalf("upgrade answered X-Echo-User %q, want %q", got, userID)
	}
	for i := range 3 {
		wsEcho(t, conn, br, fmt.Sprintf("message %d", i))
	}

	// Without a session the upgrade never reaches the app.
	before := up.Count()
	r := sc.Do(t, func() *http.Request {
		req := newRequest(t, http.MethodGet, sc.URL+"/ws", "", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		return req
	}())
	assertUnauthorized(t, r)
	if up.Count() != before {
		t.Errorf("an unauthenticated upgrade reached the app")
	}
}

func TestBlackboxStreamsAreNotBuffered(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	release := make(chan struct{})
	up := NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		_, _ = io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select { // finish only once the client has seen the first event (or give up)
		case <-release:
		case <-time.After(5 * time.Second):
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	})
	sc := StartSidecar(t, st.env(up.URL, nil))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	for _, contentType := range []string{"text/event-stream", "text/x-component"} {
		t.Run(contentType, func(t *testing.T) {
			start := time.Now()
			resp, err := sc.Client.Do(newRequest(t, http.MethodGet, sc.URL+"/api/events?type="+url.QueryEscape(contentType), token, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			first, err := br.ReadString('\n')
			firstAt := time.Since(start)
			select { // the upstream is still waiting: nothing was held back until its end
			case release <- struct{}{}:
			case <-time.After(5 * time.Second):
				t.Fatalf("the upstream finished before the client saw the first event")
			}
			if err != nil || first != "data: first\n" {
				t.Fatalf("first line %q (%v)", first, err)
			}
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: second\n\n" {
				t.Fatalf("rest %q (%v)", rest, err)
			}
			if resp.Header.Get("Content-Type") != contentType {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			// Shown by order above (the upstream was still open), not by the clock.
			t.Logf("measured: %s: first event after %v, while the upstream was still open", contentType, firstAt.Round(time.Millisecond))
		})
	}
}
