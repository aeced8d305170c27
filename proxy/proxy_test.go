package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
)

// fakeAuth answers from a map of token → session; "down" is undecidable. Tokens in cached
// are known to the caches (ValidateCached answers them); every other Validate counts as a
// Postgres lookup.
type fakeAuth struct {
	mu          sync.Mutex
	sessions    map[string]pgsession.Session
	cached      map[string]bool
	lookups     int
	invalidated []authcache.Target
	validations int

	watchOnce sync.Once
	watches   *authcache.Cache // Watch's registry, over sessions (see fakeAuth.LookupPrimary)
}

// Watch registers with a real authcache.Cache whose Source is sessions: an Invalidate
// closes a watched connection the way production does, after the check on the "primary".
func (a *fakeAuth) Watch(tokenHash string, s pgsession.Session, end func()) func() {
	return a.watchCache().Watch(tokenHash, s, end)
}

func (a *fakeAuth) watchCache() *authcache.Cache {
	a.watchOnce.Do(func() {
		a.watches = authcache.New(fakeSource{a}, authcache.Options{LookupTimeout: time.Second})
	})
	return a.watches
}

// fakeSource is fakeAuth's sessions as Postgres.
type fakeSource struct{ a *fakeAuth }

func (f fakeSource) Lookup(ctx context.Context, h string) (pgsession.Session, error) {
	return f.LookupPrimary(ctx, h)
}

func (f fakeSource) LookupPrimary(_ context.Context, h string) (pgsession.Session, error) {
	f.a.mu.Lock()
	defer f.a.mu.Unlock()
	for tok, s := range f.a.sessions {
		if authcache.HashToken(tok) == h {
			return s, nil
		}
	}
	return pgsession.Session{}, pgsession.ErrNotFound
}

func (a *fakeAuth) ValidateCached(ctx context.Context, token string) (authcache.Result, error) {
	a.mu.Lock()
	known := a.cached[token]
	a.mu.Unlock()
	if !known {
		return authcache.Result{}, authcache.ErrNotCached
	}
	return a.Validate(ctx, token)
}

func (a *fakeAuth) lookupCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lookups
}

func (a *fakeAuth) Validate(_ context.Context, token string) (authcache.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.cached[token] {
		a.lookups++
	}
	a.validations++
	if token == "down" {
		return authcache.Result{}, fmt.Errorf("%w: postgres unreachable", authcache.ErrUnavailable)
	}
	s, ok := a.sessions[token]
	if !ok {
		return authcache.Result{Layer: authcache.LayerPostgres}, authcache.ErrInvalid
	}
	return authcache.Result{Session: s, Layer: authcache.LayerLocal}, nil
}

func (a *fakeAuth) Invalidate(_ context.Context, t authcache.Target, reason string) (int, error) {
	n := a.invalidate(t)
	_, _ = a.watchCache().Invalidate(context.Background(), t, reason) // tells the watches
	return n, nil
}

func (a *fakeAuth) invalidate(t authcache.Target) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidated = append(a.invalidated, t)
	for tok := range a.sessions {
		if authcache.HashToken(tok) == t.TokenHash {
			delete(a.sessions, tok)
			return 1
		}
	}
	return 0
}

// upstream records what the app received.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(tb testing.TB, h http.HandlerFunc) *upstream {
	tb.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r)
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "app")
	}))
	tb.Cleanup(u.Close)
	return u
}

func (u *upstream) last(tb testing.TB) *http.Request {
	tb.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		tb.Fatal("the app received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

var jose = pgsession.Session{
	ID: "22222222-2222-2222-2222-222222222222", UserID: "11111111-1111-1111-1111-111111111111",
	Email: "jose@example.com", FirstName: "José", LastName: "Müller", Username: "jm",
	ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 678, time.UTC), CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
}

func newTestProxy(tb testing.TB, app *upstream, mod func(*Options)) (*httptest.Server, *fakeAuth) {
	tb.Helper()
	auth := &fakeAuth{sessions: map[string]pgsession.Session{"good": jose}}
	target, _ := url.Parse(app.URL)
	o := Options{Upstream: target, Auth: auth, Health: healthHandler, PublicPaths: []string{"/login", "/_next/static"},
		LogoutPaths: []string{"/api/auth/logout"}, SessionCookie: "session",
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis"}
	if mod != nil {
		mod(&o)
	}
	srv := httptest.NewServer(New(o))
	tb.Cleanup(srv.Close)
	return srv, auth
}

func do(tb testing.TB, method, u string, h http.Header) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestProtectedRequestCarriesIdentityNotSpoofs(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	resp := do(t, "GET", srv.URL+"/dashboard?q=1", http.Header{"Authorization": {"Bearer good"},
		"X-User-Id": {"evil"}, "X_User_Email": {"evil@x"}, "X-User-Role": {"admin"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	got := app.last(t)
	want := map[string]string{
		"X-User-Id": jose.UserID, "X-User-Email": jose.Email, "X-User-Username": "jm",
		"X-User-First-Name": "Jos%C3%A9", "X-User-Last-Name": "M%C3%BCller",
		"X-Session-Id": jose.ID, "X-Session-Expires-At": "2030-01-02T03:04:05Z",
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
	}
	for k, v := range want {
		if g := got.Header.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("%s = %q, want [%q]", k, g, v)
		}
	}
	// Go's server files "X_User_Email" under "X_user_email" (names with '_' are
	// canonicalised like any other), so look at every name the app got, not at one spelling.
	for name, vals := range got.Header {
		for _, v := range vals {
			if v == "evil" || v == "evil@x" || v == "admin" {
				t.Errorf("spoofed %s: %q reached the app", name, v)
			}
		}
	}
	if got.URL.RawQuery != "q=1" || got.URL.Path != "/dashboard" {
		t.Errorf("path/query = %s?%s", got.URL.Path, got.URL.RawQuery)
	}
}

func TestRefusedRequestsNeverReachTheApp(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no token", nil, 401},
		{"unknown token", http.Header{"Authorization": {"Bearer nope"}}, 401},
		{"too long", http.Header{"Authorization": {"Bearer " + strings.Repeat("a", 4097)}}, 401},
		{"non-ASCII", http.Header{"Cookie": {"session=gööd"}}, 401},
		{"store down", http.Header{"Authorization": {"Bearer down"}}, 503},
	}
	for _, tc := range cases {
		resp := do(t, "GET", srv.URL+"/api/data", tc.header)
		var body map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != tc.want || body["error"] == "" {
			t.Errorf("%s: %d %v %v, want %d with a JSON error", tc.name, resp.StatusCode, body, err, tc.want)
		}
	}
	if resp := do(t, "GET", srv.URL+"/x", nil); resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("401 without WWW-Authenticate: Bearer")
	}
	if resp := do(t, "GET", srv.URL+"/x", http.Header{"Authorization": {"Bearer down"}}); resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	if n := app.count(); n != 0 {
		t.Fatalf("the app saw %d refused requests", n)
	}
}

func TestPublicPathsAndDotSegments(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	cases := []struct {
		path     string
		want     int
		wantPath string // what the app received
	}{
		{"/login", 200, "/login"},
		{"/login/reset", 200, "/login/reset"},
		{"/_next/static/app.js", 200, "/_next/static/app.js"},
		{"/_next/static/x/../app.js", 200, "/_next/static/app.js"},
		{"/login2", 401, ""},
		{"/login/../api/secret", 401, ""},
		{"/_next/static/%2e%2e/%2e%2e/api", 401, ""},
	}
	for _, tc := range cases {
		n := app.count()
		resp := do(t, "GET", srv.URL+tc.path, http.Header{"X-User-Id": {"evil"}})
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.want)
			continue
		}
		if tc.want != 200 {
			continue
		}
		got := app.last(t)
		if app.count() != n+1 || got.URL.Path != tc.wantPath || got.Header.Get("X-User-Id") != "" {
			t.Errorf("%s: app got path %q with X-User-Id %q, want %q and none", tc.path, got.URL.Path, got.Header.Get("X-User-Id"), tc.wantPath)
		}
	}
}

func TestValidateEndpoint(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	resp := do(t, "GET", srv.URL+"/api/auth/validate", http.Header{"Cookie": {"session=good"}})
	var v struct {
		Session map[string]any `json:"session"`
		User    map[string]any `json:"user"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if v.Session["id"] != jose.ID || v.Session["expiresAt"] != "2030-01-02T03:04:05Z" || v.Session["lastActivityAt"] != nil ||
		v.User["firstName"] != "José" || v.User["email"] != jose.Email || v.User["avatarUrl"] != nil {
		t.Errorf("body = %+v", v)
	}
	for _, k := range []string{"id", "userId", "expiresAt", "lastActivityAt", "createdAt", "ipAddress", "userAgent"} {
		if _, ok := v.Session[k]; !ok {
			t.Errorf("session.%s missing", k)
		}
	}
	for _, k := range []string{"id", "email", "firstName", "lastName", "username", "avatarUrl"} {
		if _, ok := v.User[k]; !ok {
			t.Errorf("user.%s missing", k)
		}
	}
	if resp.Header.Get("X-User-First-Name") != "Jos%C3%A9" || resp.Header.Get("X-User-Id") != jose.UserID {
		t.Errorf("identity response headers = %v", resp.Header)
	}
	if resp := do(t, "GET", srv.URL+"/api/auth/validate", nil); resp.StatusCode != 401 {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	if app.count() != 0 {
		t.Error("the app saw a validate request")
	}
}

func TestLogoutEvictsBeforeTheClientHearsBack(t *testing.T) {
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	srv, auth := newTestProxy(t, app, nil)
	resp := do(t, "POST", srv.URL+"/api/auth/logout", http.Header{"Authorization": {"Bearer good"}})
	auth.mu.Lock()
	evictedBeforeReply := len(auth.invalidated) == 1 && auth.invalidated[0].TokenHash == authcache.HashToken("good")
	auth.mu.Unlock()
	if resp.StatusCode != 200 || !evictedBeforeReply {
		t.Fatalf("status %d, evicted %v", resp.StatusCode, evictedBeforeReply)
	}
	if resp := do(t, "GET", srv.URL+"/x", http.Header{"Authorization": {"Bearer good"}}); resp.StatusCode != 401 {
		t.Fatalf("after logout: %d, want 401", resp.StatusCode)
	}
}

func TestFailedLogoutKeepsTheSession(t *testing.T) {
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	srv, auth := newTestProxy(t, app, nil)
	do(t, "POST", srv.URL+"/api/auth/logout", http.Header{"Authorization": {"Bearer good"}})
	if len(auth.invalidated) != 0 {
		t.Fatalf("evicted after a 500: %v", auth.invalidated)
	}
}

func TestForwardedForTrustsOnlyTrustedProxies(t *testing.T) {
	cases := []struct {
		trusted []netip.Prefix
		want    string
	}{
		{nil, "127.0.0.1"},
		{[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "127.0.0.1"},
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "203.0.113.9, 127.0.0.1"},
	}
	for _, tc := range cases {
		app := newUpstream(t, nil)
		srv, _ := newTestProxy(t, app, func(o *Options) { o.TrustedProxies = tc.trusted })
		do(t, "GET", srv.URL+"/login", http.Header{"X-Forwarded-For": {"203.0.113.9"}})
		if got := app.last(t).Header.Get("X-Forwarded-For"); got != tc.want {
			t.Errorf("trusted %v: X-Forwarded-For = %q, want %q", tc.trusted, got, tc.want)
		}
	}
}

func TestUpstreamDownIs502(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	app.Close()
	resp := do(t, "GET", srv.URL+"/x", http.Header{"Authorization": {"Bearer good"}})
	if resp.StatusCode != 502 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s, want 502 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestStreamsAreNotBuffered(t *testing.T) {
	release := make(chan struct{})
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: last\n\n")
	})
	srv, _ := newTestProxy(t, app, nil)
	resp := do(t, "GET", srv.URL+"/events", http.Header{"Authorization": {"Bearer good"}})
	// The upstream holds the stream open until the first event is read: a proxy that
	// buffered would never deliver it, so the read is bounded against a hang.
	type read struct {
		line string
		err  error
	}
	first := make(chan read, 1)
	go func() {
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		first <- read{line, err}
	}()
	var got read
	select {
	case got = <-first:
	case <-time.After(10 * time.Second):
		resp.Body.Close()
		close(release)
		t.Fatal("the first event never arrived while the stream was open: the proxy buffers")
	}
	close(release)
	if got.err != nil || got.line != "data: first\n" {
		t.Fatalf("first event = %q, %v", got.line, got.err)
	}
}

func TestRevokedSessionClosesItsStream(t *testing.T) {
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for {
			if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	srv, auth := newTestProxy(t, app, nil)
	resp := do(t, "GET", srv.URL+"/events", http.Header{"Authorization": {"Bearer good"}})
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("first event: %v", err)
	}
	bound := closeBound(t, srv.URL)
	// The endless stream is read under a deadline, so a stream that revocation no longer
	// closes fails the test instead of hanging it.
	ended := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		ended <- time.Since(start)
	}()
	if _, err := auth.Invalidate(context.Background(), authcache.Target{TokenHash: authcache.HashToken("good")}, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-ended:
		if d > bound {
			t.Fatalf("the stream ended %v after the eviction, want within %v", d, bound)
		}
		t.Logf("measured: event stream ended %v after the eviction", d)
	case <-time.After(bound + time.Second):
		resp.Body.Close()
		t.Fatalf("the stream is still open %v after its session was revoked", bound+time.Second)
	}
}

// healthHandler stands in for the health document.
var healthHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusTeapot)
})

func TestHealthPathIsAnsweredByTheHealthHandler(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, nil)
	for _, method := range []string{"GET", "HEAD"} {
		if resp := do(t, method, srv.URL+"/api/health/redis", nil); resp.StatusCode != http.StatusTeapot {
			t.Errorf("%s health path: HTTP %d, want the health handler's 418", method, resp.StatusCode)
		}
	}
	if n := app.count(); n != 0 {
		t.Fatalf("the app received %d health requests", n)
	}
}
