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
	"github.com/authsidecar/authsidecar/pgsession"
)

// wtAuth is an Authenticator whose one session can be switched between valid, revoked and
// undecidable, counting validations.
type wtAuth struct {
	mu          sync.Mutex
	state       error // nil valid; authcache.ErrInvalid revoked; another error undecidable
	validations int
	invalidated []authcache.Target
	evictErr    error // what Invalidate returns
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

func (a *wtAuth) Validate(context.Context, string) (authcache.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.validations++
	if a.state != nil {
		return authcache.Result{}, a.state
	}
	return authcache.Result{Session: pgsession.Session{ID: "s", UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}}, nil
}

func (a *wtAuth) ValidateCached(ctx context.Context, token string) (authcache.Result, error) {
	return a.Validate(ctx, token)
}

func (a *wtAuth) Invalidate(_ context.Context, t authcache.Target, _ string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidated = append(a.invalidated, t)
	return 1, a.evictErr
}

// wtProxy serves New over app with auth, revalidating every revalidate.
func wtProxy(t *testing.T, app http.Handler, auth Authenticator, mod func(*Options)) *httptest.Server {
	t.Helper()
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	target, _ := url.Parse(upstream.URL)
	o := Options{Upstream: target, Auth: auth, LogoutPaths: []string{"/api/auth/logout"},
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis", Revalidate: 100 * time.Millisecond}
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

	// Counted, not timed: the connection must close at the first revalidation that sees the
	// revocation (a second one if the first was already under way). The deadline is a hang
	// bound only.
	before := auth.calls()
	auth.set(authcache.ErrInvalid)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("client side still open 10s after revocation")
	}
	if n := auth.calls() - before; n < 1 || n > 2 {
		t.Fatalf("client side closed after %d revalidations, want the first to see the revocation", n)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the app's side of the WebSocket stayed open")
	}
}

func TestUndecidableSessionKeepsLongLivedRequestsOpen(t *testing.T) {
	closed := make(chan struct{}, 1)
	auth := &wtAuth{}
	srv := wtProxy(t, wtEchoWebSocket(closed), auth, nil)
	conn, br := wtDialWebSocket(t, srv)

	// The store cannot answer: an outage must not cut anyone off.
	auth.set(fmt.Errorf("%w: postgres down", authcache.ErrUnavailable))
	before := auth.calls()
	time.Sleep(350 * time.Millisecond)
	if auth.calls() <= before {
		t.Fatal("no revalidation happened while the store was down")
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
	if _, err := io.Copy(io.Discard, br); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("revoked after the outage, but the WebSocket stayed open")
		}
	}
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
	}
	time.Sleep(300 * time.Millisecond) // three revalidation periods
	if got := auth.calls(); got != 3 {
		t.Fatalf("%d validations for 3 short requests, want 3: a finished request's watcher kept running", got)
	}
}

// acceptFor is the Sec-WebSocket-Accept a real WebSocket server answers key with.
func acceptFor(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}
