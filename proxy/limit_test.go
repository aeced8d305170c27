package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/pgsession"
)

// testClock is a settable clock for the limiter.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// limitRig is a handler with INVALID_TOKEN_RATE 5 (burst 10) over a fake store in which
// "good" is a cached valid session and "cold-*" are valid sessions no cache knows.
type limitRig struct {
	h     *Handler
	auth  *fakeAuth
	clock *testClock
	app   *upstream
	reg   *prometheus.Registry
}

func newLimitRig(t *testing.T, mod func(*Options)) *limitRig {
	t.Helper()
	app := newUpstream(t, nil)
	target, _ := url.Parse(app.URL)
	auth := &fakeAuth{sessions: map[string]pgsession.Session{"good": jose}, cached: map[string]bool{"good": true}}
	for i := range 200 {
		auth.sessions[fmt.Sprintf("cold-%d", i)] = jose
	}
	clock := &testClock{t: time.Unix(1_800_000_000, 0)}
	reg := prometheus.NewRegistry()
	o := Options{Upstream: target, Auth: auth, InvalidTokenRate: 5, Now: clock.Now, Registerer: reg}
	if mod != nil {
		mod(&o)
	}
	return &limitRig{h: New(o), auth: auth, clock: clock, app: app, reg: reg}
}

// counterValue reads one unlabelled counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

func (rig *limitRig) get(t *testing.T, peer, token string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://app/api/data", nil)
	r.RemoteAddr = peer + ":40000"
	for k, v := range header {
		r.Header[k] = v
	}
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	rig.h.ServeHTTP(w, r)
	return w
}

func TestInvalidTokenFloodStopsAtTheBurst(t *testing.T) {
	rig := newLimitRig(t, nil)
	const flooder = "192.0.2.1"
	for i := range 10 { // the burst: each costs one lookup and gets its 401
		if w := rig.get(t, flooder, fmt.Sprintf("bad-%d", i), nil); w.Code != http.StatusUnauthorized {
			t.Fatalf("invalid token %d within the burst: %d, want 401", i, w.Code)
		}
	}
	for i := range 50 { // past it: 429, and no lookup
		w := rig.get(t, flooder, fmt.Sprintf("more-%d", i), nil)
		var body map[string]string
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || body["error"] != "too many invalid tokens" {
			t.Fatalf("invalid token past the burst: %d, Retry-After %q, body %v", w.Code, w.Header().Get("Retry-After"), body)
		}
	}
	if got := rig.auth.lookupCount(); got != 10 {
		t.Fatalf("%d lookups, want 10 (the burst)", got)
	}
	if got := counterValue(t, rig.reg, "authsidecar_rate_limited_total"); got != 50 {
		t.Errorf("authsidecar_rate_limited_total = %v, want 50", got)
	}
	// A cached valid session is never limited; a token no cache knows is, valid or not.
	if w := rig.get(t, flooder, "good", nil); w.Code != http.StatusOK {
		t.Errorf("cached valid session of a limited client: %d, want 200", w.Code)
	}
	if w := rig.get(t, flooder, "cold-0", nil); w.Code != http.StatusTooManyRequests {
		t.Errorf("uncached token of a limited client: %d, want 429", w.Code)
	}
	// Another client has its own bucket.
	if w := rig.get(t, "192.0.2.2", "bad-x", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("another client: %d, want 401", w.Code)
	}
	// The bucket refills at the rate: one second buys five more lookups.
	rig.clock.advance(time.Second)
	before := rig.auth.lookupCount()
	for i := range 20 {
		rig.get(t, flooder, fmt.Sprintf("later-%d", i), nil)
	}
	if got := rig.auth.lookupCount() - before; got != 5 {
		t.Errorf("%d lookups a second later, want 5", got)
	}
	// Once every bucket has refilled, the limiter forgets its clients and costs nothing.
	rig.clock.advance(10 * time.Second)
	rig.get(t, flooder, "good", nil)
	rig.get(t, "192.0.2.2", "good", nil)
	if !rig.h.limit.idle() {
		t.Errorf("%d clients still tracked after their buckets refilled", rig.h.limit.clients.Load())
	}
}

func TestValidTokensNeverSpendTheBucket(t *testing.T) {
	rig := newLimitRig(t, nil)
	for i := range 200 { // a cold start: every session valid, none cached, one client
		if w := rig.get(t, "192.0.2.1", fmt.Sprintf("cold-%d", i), nil); w.Code != http.StatusOK {
			t.Fatalf("valid uncached session %d: %d, want 200", i, w.Code)
		}
	}
	if n := rig.h.limit.tracked(); n != 0 {
		t.Fatalf("valid tokens created %d buckets", n)
	}
}

func TestNoLimitWhenTheRateIsZero(t *testing.T) {
	rig := newLimitRig(t, func(o *Options) { o.InvalidTokenRate = 0 })
	for i := range 100 {
		if w := rig.get(t, "192.0.2.1", fmt.Sprintf("bad-%d", i), nil); w.Code != http.StatusUnauthorized {
			t.Fatalf("invalid token %d without a limit: %d", i, w.Code)
		}
	}
	if got := rig.auth.lookupCount(); got != 100 {
		t.Fatalf("%d lookups, want 100", got)
	}
}

func TestFloodBehindATrustedProxyIsCountedPerClient(t *testing.T) {
	rig := newLimitRig(t, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	for i := range 10 {
		rig.get(t, "10.0.0.5", fmt.Sprintf("bad-%d", i), http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7"}})
	}
	// The same client through another proxy hop is limited; another client behind the same
	// proxy is not, nor is a client that claims another address to the left.
	cases := []struct {
		xff  string
		want int
	}{
		{"203.0.113.7, 10.0.0.9", http.StatusTooManyRequests},
		{"198.51.100.99, 203.0.113.7", http.StatusTooManyRequests},
		{"203.0.113.8", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		if w := rig.get(t, "10.0.0.5", "bad-y", http.Header{"X-Forwarded-For": {tc.xff}}); w.Code != tc.want {
			t.Errorf("X-Forwarded-For %q: %d, want %d", tc.xff, w.Code, tc.want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	h := New(Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}})
	cases := []struct {
		peer string
		xff  []string
		want string
	}{
		{"192.0.2.1:1", []string{"203.0.113.7"}, "192.0.2.1"}, // untrusted peer: its XFF is its own claim
		{"10.0.0.1:1", nil, "10.0.0.1"},
		{"10.0.0.1:1", []string{"203.0.113.7"}, "203.0.113.7"},
		{"10.0.0.1:1", []string{"1.1.1.1, 203.0.113.7, 10.0.0.2"}, "203.0.113.7"},
		{"10.0.0.1:1", []string{"1.1.1.1", "203.0.113.7", "10.0.0.2"}, "203.0.113.7"},
		{"10.0.0.1:1", []string{"203.0.113.7:4711"}, "203.0.113.7"},
		{"10.0.0.1:1", []string{"garbage, 203.0.113.7"}, "203.0.113.7"},
		{"10.0.0.1:1", []string{"203.0.113.7, garbage"}, "10.0.0.1"},
		{"10.0.0.1:1", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"[::ffff:192.0.2.1]:1", nil, "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:1", nil, "2001:db8:1:2::"},
		{"[fd00::1]:1", []string{"2001:db8:1:2::99"}, "2001:db8:1:2::"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.peer
		r.Header["X-Forwarded-For"] = tc.xff
		if got := h.clientAddr(r).String(); got != tc.want {
			t.Errorf("peer %s, XFF %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	clock := &testClock{t: time.Unix(1_800_000_000, 0)}
	l := newLimiter(20, clock.Now, nil)
	for i := range 80_000 { // a flood from more addresses than the limiter holds
		l.spend(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := l.tracked(); n > limiterShards*limiterPerShard || n < limiterShards*limiterPerShard/2 {
		t.Fatalf("%d clients tracked, want at most %d (and still most of them)", n, limiterShards*limiterPerShard)
	}
	// Refilled buckets go first: after two seconds, every one is as good as absent.
	clock.advance(2 * time.Second)
	victim := netip.MustParseAddr("192.0.2.1")
	for range 40 {
		l.spend(victim)
	}
	for i := range 70_000 {
		l.spend(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if ok, _ := l.allow(victim); ok {
		t.Error("a limited client was evicted while fuller buckets were there to drop")
	}
	if int(l.clients.Load()) != l.tracked() {
		t.Errorf("the count of tracked clients (%d) drifted from the maps (%d)", l.clients.Load(), l.tracked())
	}
}
