package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// wtAuth is an Authenticator whose one session can be switched between valid, revoked and
// undecidable, counting validations. Its Watch is a real authcache.Cache's, over wtAuth as
// the Source: evict closes watched connections the way production does, through the check
// on the primary.
type wtAuth struct {
	mu          sync.Mutex
	state       error // nil valid; authcache.ErrInvalid revoked; another error undecidable
	expires     time.Time
	validations int
	checks      int // lookups on the "primary" by the watch
	registered  int // Watch calls
	invalidated []authcache.Target
	evictErr    error // what Invalidate returns

	watchOnce sync.Once
	watches   *authcache.Cache
}

func (a *wtAuth) set(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state = err
}

func (a *wtAuth) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.validations
}

func (a *wtAuth) primaryChecks() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.checks
}

func (a *wtAuth) watchCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.registered
}

func (a *wtAuth) session() pgsession.Session {
	expires := a.expires
	if expires.IsZero() {
		expires = time.Now().Add(time.Hour)
	}
	return pgsession.Session{ID: "s", UserID: "u", ExpiresAt: expires}
}

func (a *wtAuth) Validate(context.Context, string) (authcache.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.validations++
	if a.state != nil {
		return authcache.Result{}, a.state
	}
	return authcache.Result{Session: a.session()}, nil
}

func (a *wtAuth) ValidateCached(ctx context.Context, token string) (authcache.Result, error) {
	return a.Validate(ctx, token)
}

func (a *wtAuth) Invalidate(_ context.Context, t authcache.Target, reason string) (int, error) {
	a.mu.Lock()
	a.invalidated = append(a.invalidated, t)
	a.mu.Unlock()
	_, _ = a.watchCache().Invalidate(context.Background(), t, reason)
	return 1, a.evictErr
}

// evict evicts the session of "tok", as any eviction source would.
func (a *wtAuth) evict(t *testing.T) {
	t.Helper()
	if _, err := a.watchCache().Invalidate(context.Background(), authcache.Target{Token: "tok"}, "test"); err != nil {
		t.Fatal(err)
	}
}

func (a *wtAuth) Watch(tokenHash string, s pgsession.Session, end func()) func() {
	a.mu.Lock()
	a.registered++
	a.mu.Unlock()
	return a.watchCache().Watch(tokenHash, s, end)
}

func (a *wtAuth) watchCache() *authcache.Cache {
	a.watchOnce.Do(func() {
		a.watches = authcache.New(wtSource{a}, authcache.Options{LookupTimeout: time.Second})
	})
	return a.watches
}

// wtSource is wtAuth's state as Postgres.
type wtSource struct{ a *wtAuth }

func (w wtSource) Lookup(ctx context.Context, h string) (pgsession.Session, error) {
	return w.LookupPrimary(ctx, h)
}

func (w wtSource) LookupPrimary(context.Context, string) (pgsession.Session, error) {
	a := w.a
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks++
	switch {
	case errors.Is(a.state, authcache.ErrInvalid):
		return pgsession.Session{}, pgsession.ErrNotFound
	case a.state != nil:
		return pgsession.Session{}, a.state
	}
	return a.session(), nil
}

// closeBudget is the bound: a long-lived connection closes within 200 ms of its
// session's eviction.
const closeBudget = 200 * time.Millisecond

// closeBound is closeBudget plus what this machine adds now (testenv.Slack, calibrated on a
// refused request to srvURL): the close waits on no timeout of the product.
func closeBound(t *testing.T, srvURL string) time.Duration {
	t.Helper()
	return closeBudget + testenv.Slack(t, func() {
		resp, err := http.Get(srvURL + "/api/auth/validate")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// wtProxy serves New over app with auth.
func wtProxy(t *testing.T, app http.Handler, auth Authenticator, mod func(*Options)) *httptest.Server {
	t.Helper()
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	target, _ := url.Parse(upstream.URL)
	o := Options{Upstream: target, Auth: auth, LogoutPaths: []string{"/api/auth/logout"},
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis"}
	if mod != nil {
		mod(&o)
	}
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	return srv
}

// wtEchoWebSocket answers an upgrade with 101 and echoes bytes until either side closes; it
// reports on closed when its side of the connection is gone.
func wtEchoWebSocket(closed chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() {
			conn.Close()
			closed <- struct{}{}
		}()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptFor(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
		if rw.Flush() != nil {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				if _, err := conn.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
}

// wtDialWebSocket upgrades through the proxy and checks one echo.
func wtDialWebSocket(t *testing.T, srv *httptest.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.URL, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /socket HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer tok\r\n"+
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	if _, err := conn.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 2)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "hi" {
		t.Fatalf("echo = %q, %v", echo, err)
	}
	return conn, br
}

func TestRevokedSessionClosesItsWebSocketBothWays(t *testing.T) {
	closed := make(chan struct{}, 1)
	auth := &wtAuth{}
	srv := wtProxy(t, wtEchoWebSocket(closed), auth, nil)
	conn, br := wtDialWebSocket(t, srv)
	bound := closeBound(t, srv.URL)

	// Timed from the eviction: nothing polls, the eviction itself closes the connection.
	auth.set(authcache.ErrInvalid)
	start := time.Now()
	auth.evict(t)
	d := wtUntilClosed(t, start, conn, br, bound)
	select {
	case <-closed:
	case <-time.After(time.Until(start.Add(bound))):
		t.Fatalf("the app's side of the WebSocket is still open %v after the eviction", bound)
	}
	t.Logf("measured: WebSocket closed %v after the eviction", d)
	if n := auth.watchCalls(); n != 1 {
		t.Fatalf("%d watches registered for one WebSocket", n)
	}
}

// wtUntilClosed reads conn until the proxy closes it, and fails unless that is within bound
// of start.
func wtUntilClosed(t *testing.T, start time.Time, conn net.Conn, br *bufio.Reader, bound time.Duration) time.Duration {
	t.Helper()
	_ = conn.SetDeadline(start.Add(bound + time.Second))
	_, err := io.Copy(io.Discard, br)
	d := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("client side still open %v after the eviction", d)
	}
	if d > bound {
		t.Fatalf("client side closed %v after the eviction, want within %v", d, bound)
	}
	return d
}

func TestUndecidableSessionKeepsLongLivedRequestsOpen(t *testing.T) {
	closed := make(chan struct{}, 1)
	auth := &wtAuth{}
	srv := wtProxy(t, wtEchoWebSocket(closed), auth, nil)
	conn, br := wtDialWebSocket(t, srv)

	// The store cannot answer the check an eviction starts: an outage must not cut anyone off.
	auth.set(fmt.Errorf("%w: postgres down", authcache.ErrUnavailable))
	before := auth.primaryChecks()
	auth.evict(t)
	deadline := time.Now().Add(5 * time.Second)
	for auth.primaryChecks() == before {
		if time.Now().After(deadline) {
			t.Fatal("the eviction started no check of the session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := conn.Write([]byte("ok")); err != nil {
		t.Fatalf("write during the outage: %v", err)
	}
	echo := make([]byte, 2)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "ok" {
		t.Fatalf("WebSocket closed during an outage: %q, %v", echo, err)
	}

	// Once the store answers again, a revocation still closes it.
	auth.set(authcache.ErrInvalid)
	auth.evict(t)
	wtUntilClosed(t, time.Now(), conn, br, 10*time.Second)
}

func TestWebSocketClosesAtExpiry(t *testing.T) {
	closed := make(chan struct{}, 1)
	// Not whole seconds: X-Session-Expires-At is, the close must follow the exact time.
	auth := &wtAuth{expires: time.Now().Add(1500 * time.Millisecond)}
	srv := wtProxy(t, wtEchoWebSocket(closed), auth, nil)
	conn, br := wtDialWebSocket(t, srv)
	bound := closeBound(t, srv.URL)
	// No eviction announces an expiry: the one timer of the watch does.
	d := wtUntilClosed(t, auth.expires, conn, br, bound)
	if early := time.Until(auth.expires); early > 0 {
		t.Fatalf("closed %v before the session expired", early)
	}
	t.Logf("measured: WebSocket closed %v after its session expired", d)
}

func TestShortRequestsAreNeverRevalidated(t *testing.T) {
	auth := &wtAuth{}
	srv := wtProxy(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), auth, nil)
	for range 3 {
		resp := do(t, http.MethodGet, srv.URL+"/page", http.Header{"Authorization": {"Bearer tok"}})
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if resp.ContentLength != 2 {
			t.Fatalf("Content-Length %d: the app's answer should have announced its length", resp.ContentLength)
		}
	}
	if got := auth.calls(); got != 3 {
		t.Fatalf("%d validations for 3 short requests, want 3", got)
	}
	if n := auth.watchCalls(); n != 0 {
		t.Fatalf("%d watches registered for 3 answers with a Content-Length, want none", n)
	}
}

func TestStreamedAnswersAreWatchedWhileTheyRun(t *testing.T) {
	release := make(chan struct{})
	auth := &wtAuth{}
	srv := wtProxy(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "part\n") // no length: chunked
		w.(http.Flusher).Flush()
		<-release
	}), auth, nil)
	resp := do(t, http.MethodGet, srv.URL+"/rsc", http.Header{"Authorization": {"Bearer tok"}})
	if resp.ContentLength != -1 {
		t.Fatalf("Content-Length %d, want a chunked answer", resp.ContentLength)
	}
	if n, w := auth.watchCalls(), auth.watchCache().Watching(); n != 1 || w != 1 {
		t.Fatalf("%d watches registered, %d open, for one streamed answer; want 1, 1", n, w)
	}
	close(release)
	_, _ = io.Copy(io.Discard, resp.Body)
	deadline := time.Now().Add(5 * time.Second)
	for auth.watchCache().Watching() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watch outlived its answer")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebSocketWatchEndsWithTheConnection(t *testing.T) {
	closed := make(chan struct{}, 1)
	auth := &wtAuth{}
	srv := wtProxy(t, wtEchoWebSocket(closed), auth, nil)
	conn, _ := wtDialWebSocket(t, srv)
	if w := auth.watchCache().Watching(); w != 1 {
		t.Fatalf("%d watches for one open WebSocket", w)
	}
	conn.Close()
	<-closed
	deadline := time.Now().Add(5 * time.Second)
	for auth.watchCache().Watching() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watch outlived its WebSocket")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acceptFor is the Sec-WebSocket-Accept a real WebSocket server answers key with.
func acceptFor(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream": true, "Text/Event-Stream": true, "text/event-stream; charset=utf-8": true,
		" text/event-stream ;x=y": true, "text/event-streams": false, "text/plain": false, "": false,
		"text/event": false, "application/json; text/event-stream": false,
	} {
		if got := isEventStream(ct); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}
