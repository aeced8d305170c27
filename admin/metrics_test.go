package admin_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/authsidecar/authsidecar/admin"
	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/health"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/proxy"
)

const metricsAdminToken = "metrics-test-admin-token"

// metricsStack is the public and internal handlers over a real cache, Redis and Postgres,
// with the collectors registered as serve registers them.
type metricsStack struct {
	db            *testenv.DB
	public, admin string
	clock         *testenv.Clock
}

func newMetricsStack(tb testing.TB) *metricsStack {
	tb.Helper()
	s := &metricsStack{db: testenv.NewDB(tb), clock: testenv.NewClock(time.Now())}
	store := s.db.OpenStore(tb)
	rdb := testenv.NewRedisClient(tb)
	reg := prometheus.NewRegistry()
	cache := authcache.New(store, authcache.Options{
		Redis: rdb, Prefix: testenv.Prefix(tb, rdb), SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: 10 * time.Second, LocalSize: 1000, OpTimeout: time.Second, LookupTimeout: 2 * time.Second,
		BreakerFailures: 5, BreakerOpenFor: time.Second, Now: s.clock.Now, Registerer: reg,
	})
	reporter := health.New(health.Options{Redis: rdb, Cache: cache, OpTimeout: time.Second, Now: s.clock.Now})
	reg.MustRegister(collectors.NewGoCollector(), reporter)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tb.Cleanup(app.Close)
	upstream, _ := url.Parse(app.URL)
	public := httptest.NewServer(proxy.New(proxy.Options{
		Upstream: upstream, Auth: cache, Health: reporter, LogoutPaths: []string{"/api/auth/logout"},
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis",
		Registerer: reg,
	}))
	tb.Cleanup(public.Close)
	internal := httptest.NewServer(admin.New(admin.Options{
		Auth: cache, Ready: store.Ping, Token: metricsAdminToken,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}))
	tb.Cleanup(internal.Close)
	s.public, s.admin = public.URL, internal.URL
	return s
}

// send makes one request and checks its status.
func send(tb testing.TB, method, u, token, body string, want int) {
	tb.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		tb.Fatalf("%s %s: %d, want %d", method, u, resp.StatusCode, want)
	}
}

// scrape reads /metrics into series → value, a series being the name with its labels as
// the text format prints them (sorted by label name).
func scrape(tb testing.TB, adminURL string) map[string]float64 {
	tb.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return series
}

func TestMetricsCountEachRequestExactly(t *testing.T) {
	s := newMetricsStack(t)
	user := s.db.User(t, testenv.UserSpec{})
	valid, _ := s.db.Session(t, user, testenv.SessionSpec{})
	const unknown = "unknown-token"
	app := s.public + "/app"
	before := scrape(t, s.admin)

	send(t, "GET", app, valid, "", 200)                           // local miss, redis miss, postgres
	send(t, "GET", app, valid, "", 200)                           // local hit
	send(t, "GET", app, unknown, "", 401)                         // local miss, redis miss, postgres
	send(t, "GET", app, unknown, "", 401)                         // local hit (negative)
	send(t, "GET", app, "", "", 401)                              // no token: no validation
	send(t, "GET", s.public+"/api/auth/validate", valid, "", 200) // local hit
	send(t, "GET", s.public+"/api/health/redis", "", "", 200)     // no validation
	s.clock.Add(11 * time.Second)                                 // local entries expire; Redis's do not
	send(t, "GET", app, valid, "", 200)                           // local miss, redis hit
	send(t, "GET", app, unknown, "", 401)                         // local miss, redis hit (negative)
	send(t, "GET", s.public+"/api/auth/logout", valid, "", 200)   // local hit, then logout eviction
	send(t, "GET", app, valid, "", 200)                           // local miss, redis miss, postgres
	// The admin evicts the user: one cached session.
	send(t, "POST", s.admin+"/admin/invalidate", metricsAdminToken, `{"userId":"`+user+`"}`, 200)

	after := scrape(t, s.admin)
	want := map[string]float64{
		`authsidecar_session_validations_total{outcome="valid"}`:                   6,
		`authsidecar_session_validations_total{outcome="invalid"}`:                 3,
		`authsidecar_session_validations_total{outcome="unavailable"}`:             0,
		`authsidecar_cache_requests_total{layer="local",result="hit"}`:             4,
		`authsidecar_cache_requests_total{layer="local",result="miss"}`:            5,
		`authsidecar_cache_requests_total{layer="local",result="error"}`:           0,
		`authsidecar_cache_requests_total{layer="redis",result="hit"}`:             2,
		`authsidecar_cache_requests_total{layer="redis",result="miss"}`:            3,
		`authsidecar_cache_requests_total{layer="redis",result="error"}`:           0,
		`authsidecar_http_requests_total{code="200"}`:                              7,
		`authsidecar_http_requests_total{code="401"}`:                              4,
		`authsidecar_cache_invalidations_total{reason="logout"}`:                   1,
		`authsidecar_cache_invalidations_total{reason="admin"}`:                    1,
		`authsidecar_cache_invalidations_total{reason="notify"}`:                   0,
		`authsidecar_cache_invalidations_total{reason="resync"}`:                   0,
		`authsidecar_cache_invalidations_total{reason="peer"}`:                     0,
		`authsidecar_session_validation_duration_seconds_count{source="local"}`:    4,
		`authsidecar_session_validation_duration_seconds_count{source="redis"}`:    2,
		`authsidecar_session_validation_duration_seconds_count{source="postgres"}`: 3,
		`authsidecar_upstream_duration_seconds_count`:                              5,
	}
	for series, delta := range want {
		if _, ok := after[series]; !ok {
			t.Errorf("%s: not exported", series)
			continue
		}
		if got := after[series] - before[series]; got != delta {
			t.Errorf("%s moved by %g, want %g", series, got, delta)
		}
	}
}

func TestMetricsExportEveryFamily(t *testing.T) {
	s := newMetricsStack(t)
	send(t, "GET", s.public+"/api/health/redis", "", "", 200)
	series := scrape(t, s.admin)
	for _, name := range []string{
		`authsidecar_session_validation_duration_seconds_bucket{source="local",le="0.001"}`,
		`authsidecar_session_validation_duration_seconds_bucket{source="redis",le="+Inf"}`,
		`authsidecar_session_validation_duration_seconds_sum{source="postgres"}`,
		`authsidecar_upstream_duration_seconds_bucket{le="+Inf"}`,
		`authsidecar_redis_breaker_state`,
		`authsidecar_redis_pool_connections{state="total"}`,
		`authsidecar_redis_pool_connections{state="idle"}`,
		`authsidecar_redis_pool_connections{state="pending"}`,
		`authsidecar_redis_up`,
		`authsidecar_redis_ping_seconds`,
		`authsidecar_local_cache_entries`,
		`go_goroutines`,
		`go_memstats_heap_alloc_bytes`,
	} {
		if _, ok := series[name]; !ok {
			t.Errorf("%s: not exported", name)
		}
	}
	if series["authsidecar_redis_breaker_state"] != 0 || series["authsidecar_redis_up"] != 1 {
		t.Errorf("breaker %g, up %g; want 0 (closed) and 1", series["authsidecar_redis_breaker_state"], series["authsidecar_redis_up"])
	}
	if p := series["authsidecar_redis_ping_seconds"]; p <= 0 || p >= 0.1 {
		t.Errorf("redis ping %gs, want 0 < ping < 0.1", p)
	}
}
