package health_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/health"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// specHealth mirrors the SPEC's health document field for field.
type specHealth struct {
	Status    string `json:"status"`
	Timestamp string `json:"timestamp"`
	Redis     struct {
		Mode       string `json:"mode"`
		Connected  bool   `json:"connected"`
		Version    string `json:"version"`
		Uptime     int64  `json:"uptime"`
		UsedMemory string `json:"usedMemory"`
		TotalKeys  int64  `json:"totalKeys"`
	} `json:"redis"`
	SessionCache struct {
		Enabled bool `json:"enabled"`
		Healthy bool `json:"healthy"`
		Metrics struct {
			Hits          uint64  `json:"hits"`
			Misses        uint64  `json:"misses"`
			Errors        uint64  `json:"errors"`
			Invalidations uint64  `json:"invalidations"`
			Total         uint64  `json:"total"`
			HitRate       float64 `json:"hitRate"`
			TTL           int64   `json:"ttl"`
		} `json:"metrics"`
		Pool struct {
			Size      uint32 `json:"size"`
			Available uint32 `json:"available"`
			Pending   uint32 `json:"pending"`
		} `json:"pool"`
		Breaker string `json:"breaker"`
	} `json:"sessionCache"`
	Performance struct {
		Ping float64 `json:"ping"`
		Set  float64 `json:"set"`
		Get  float64 `json:"get"`
	} `json:"performance"`
	Errors []string `json:"errors"`
}

// specKeys is every key of the SPEC's document, as "object.key" paths.
var specKeys = []string{
	"errors", "performance", "performance.get", "performance.ping", "performance.set",
	"redis", "redis.connected", "redis.mode", "redis.totalKeys", "redis.uptime", "redis.usedMemory", "redis.version",
	"sessionCache", "sessionCache.breaker", "sessionCache.enabled", "sessionCache.healthy",
	"sessionCache.metrics", "sessionCache.metrics.errors", "sessionCache.metrics.hitRate",
	"sessionCache.metrics.hits", "sessionCache.metrics.invalidations", "sessionCache.metrics.misses",
	"sessionCache.metrics.total", "sessionCache.metrics.ttl", "sessionCache.pool",
	"sessionCache.pool.available", "sessionCache.pool.pending", "sessionCache.pool.size",
	"status", "timestamp",
}

// keyPaths lists the key paths of a decoded JSON object.
func keyPaths(prefix string, m map[string]any) []string {
	var paths []string
	for k, v := range m {
		paths = append(paths, prefix+k)
		if sub, ok := v.(map[string]any); ok {
			paths = append(paths, keyPaths(prefix+k+".", sub)...)
		}
	}
	slices.Sort(paths)
	return paths
}

var humanBytes = regexp.MustCompile(`^\d+(\.\d+)?[BKMGT]$`)

func TestHealthDocumentAssertsEveryField(t *testing.T) {
	s := newHealthStack(t, withRedis)
	user := s.db.User(t, testenv.UserSpec{})
	valid, _ := s.db.Session(t, user, testenv.SessionSpec{})
	// Local cache off: miss (postgres), hit, hit (redis); unknown: miss, then hit (negative).
	s.validate(t, valid, 3, true)
	s.validate(t, "unknown-token", 2, false)

	code, doc := s.get(t)
	info := s.serverInfo(t)
	uptime, _ := strconv.ParseInt(info["uptime_in_seconds"], 10, 64)
	want := statusForPing(doc.Performance.Ping, "healthy", "")
	if code != http.StatusOK || doc.Status != want.status || doc.Timestamp != s.clock.Now().UTC().Format(time.RFC3339) {
		t.Errorf("status %d %q at %q, want %q (ping %.1f ms)", code, doc.Status, doc.Timestamp, want.status, doc.Performance.Ping)
	}
	// Keys: the session, the user's index, the negative entry and the probe's own key.
	if r := doc.Redis; r.Mode != "single" || !r.Connected || r.Version != info["redis_version"] || r.Uptime < uptime-1 || r.Uptime > uptime ||
		!humanBytes.MatchString(r.UsedMemory) || r.TotalKeys != 4 {
		t.Errorf("redis = %+v, want connected, version %s, uptime %d, human memory, 4 keys", r, info["redis_version"], uptime)
	}
	// reference.md's key table: the probe's own key holds "ok" for 10 s.
	if v, ttl := s.rdb.Get(context.Background(), "health:healthcheck").Val(), s.rdb.PTTL(context.Background(), "health:healthcheck").Val(); v != "ok" || ttl <= 8*time.Second || ttl > 10*time.Second {
		t.Errorf("health:healthcheck = %q with TTL %v, want ok for 10 s", v, ttl)
	}
	sc := doc.SessionCache
	if !sc.Enabled || sc.Healthy != (want.status == "healthy") || sc.Breaker != "closed" {
		t.Errorf("sessionCache = %+v", sc)
	}
	m := sc.Metrics
	if m.Hits != 3 || m.Misses != 2 || m.Errors != 0 || m.Invalidations != 0 || m.Total != 5 || m.HitRate != 60.0 || m.TTL != 300 {
		t.Errorf("metrics = %+v, want 3 hits, 2 misses, 5 total, 60.0%%, ttl 300", m)
	}
	if p := sc.Pool; p.Size < 1 || p.Available > p.Size || p.Pending != 0 {
		t.Errorf("pool = %+v", p)
	}
	// Measured, not bounded: each under the probe's deadline (max(OpTimeout, 1 s)), past which
	// it would have failed and said so in errors.
	if p := doc.Performance; p.Ping <= 0 || p.Set <= 0 || p.Get <= 0 || p.Ping >= 1000 || p.Set >= 1000 || p.Get >= 1000 {
		t.Errorf("performance = %+v, want 0 < ms < 1000", p)
	}
	if errs := strings.Join(doc.Errors, "; "); errs != want.errorHas {
		t.Errorf("errors = %q, want %q", doc.Errors, want.errorHas)
	}

	// One decimal of a repeating fraction; invalidations count evicted sessions.
	s.validate(t, valid, 1, true)
	if _, err := s.cache.Invalidate(context.Background(), authcache.Target{Token: valid}, authcache.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	_, doc = s.get(t)
	if m := doc.SessionCache.Metrics; m.Hits != 4 || m.Total != 6 || m.HitRate != 66.7 || m.Invalidations != 1 {
		t.Errorf("metrics = %+v, want 4 hits of 6 = 66.7%%, 1 invalidation", m)
	}
}

func TestHealthPoolMapsGoRedisPoolStats(t *testing.T) {
	s := newHealthStack(t, withRedis)
	_, doc := s.get(t)
	// The document is built after the probe, from the same client's stats; nothing else
	// uses that client here, so they still hold.
	if p := doc.SessionCache.Pool; p.Size != 1 || p.Available != 1 || p.Pending != 0 {
		t.Errorf("pool = %+v, want the probe's one idle connection", p)
	}
}

func TestHealthTransitions(t *testing.T) {
	s := newHealthStack(t, withRedis)
	token, _ := s.db.Session(t, s.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	steps := []struct {
		name     string
		act      func(t *testing.T)
		code     int
		status   string
		breaker  string
		errorHas string
	}{
		{"healthy", func(*testing.T) {}, 200, "healthy", "closed", ""},
		{"degraded: breaker open", func(t *testing.T) {
			s.srv.Kill()
			s.validate(t, token, 2, true) // two Redis failures open the breaker; Postgres answers
			s.srv.Restart()
		}, 200, "degraded", "open", "redis circuit breaker is open"},
		{"unhealthy: redis killed", func(*testing.T) { s.srv.Kill() }, 503, "unhealthy", "open", "redis ping failed"},
		{"healthy again after restart", func(t *testing.T) {
			s.srv.Restart()
			time.Sleep(2100 * time.Millisecond) // past BreakerOpenFor: the next call probes
			s.validate(t, token, 1, true)
		}, 200, "healthy", "closed", ""},
	}
	for _, step := range steps {
		step.act(t)
		code, doc := s.fresh(t)
		if step.status == "healthy" {
			want := statusForPing(doc.Performance.Ping, step.status, step.errorHas)
			step.status, step.errorHas = want.status, want.errorHas
		}
		errs := strings.Join(doc.Errors, "; ")
		if code != step.code || doc.Status != step.status || doc.SessionCache.Breaker != step.breaker ||
			doc.SessionCache.Healthy != (step.status == "healthy") || doc.Redis.Connected != (step.code == 200) ||
			!strings.Contains(errs, step.errorHas) || (step.errorHas == "") != (errs == "") {
			t.Fatalf("%s: HTTP %d %q breaker %q connected %v errors %q; want %d %q breaker %q errors with %q",
				step.name, code, doc.Status, doc.SessionCache.Breaker, doc.Redis.Connected, errs,
				step.code, step.status, step.breaker, step.errorHas)
		}
	}
}

// healthWant is the status and errors a document must show.
type healthWant struct{ status, errorHas string }

// statusForPing applies the SPEC's rule to the ping the probe measured: a document that
// would be healthy is degraded, with "redis ping is slow", when the ping took 100 ms or
// more. A busy machine can slow one ping past 100 ms; the rule holds either way, so the test
// checks the rule on what was measured instead of assuming the machine is fast.
func statusForPing(pingMS float64, status, errorHas string) healthWant {
	if status == "healthy" && pingMS >= 100 {
		return healthWant{"degraded", "redis ping is slow"}
	}
	return healthWant{status, errorHas}
}

func TestHealthDegradedWhenPingIsSlow(t *testing.T) {
	s := newHealthStack(t, withRedis)
	s.srv.Pause()
	// The ping must wait ≥ 100 ms and be answered within the probe's 1 s deadline: resuming
	// 500 ms from now leaves 400 ms for the probe to start and 500 ms for the timer to be late.
	time.AfterFunc(500*time.Millisecond, s.srv.Resume)
	code, doc := s.fresh(t)
	if code != 200 || doc.Status != "degraded" || doc.Performance.Ping < 100 || doc.SessionCache.Breaker != "closed" ||
		!slices.Contains(doc.Errors, "redis ping is slow") {
		t.Fatalf("HTTP %d %q ping %.1fms breaker %q errors %q; want degraded by a ping ≥ 100ms",
			code, doc.Status, doc.Performance.Ping, doc.SessionCache.Breaker, doc.Errors)
	}
}

// TestHealthProbeWaitsMaxOfOpTimeoutAndASecond: reference.md, "One probe is bounded by
// max(REDIS_OP_TIMEOUT, 1 s)": against a hung Redis, with REDIS_OP_TIMEOUT 300 ms, the
// document answers unhealthy after the second, not after 300 ms. The lower bound is the
// product's; the upper one only catches a probe that hangs.
func TestHealthProbeWaitsMaxOfOpTimeoutAndASecond(t *testing.T) {
	s := newHealthStack(t, withRedis)
	s.srv.Pause()
	t.Cleanup(s.srv.Resume)
	start := time.Now()
	code, doc := s.fresh(t)
	took := time.Since(start)
	t.Logf("measured: the probe of a hung Redis gave up after %v", took.Round(time.Millisecond))
	if code != http.StatusServiceUnavailable || doc.Status != "unhealthy" || took < 950*time.Millisecond || took > 10*time.Second {
		t.Errorf("HTTP %d %q after %v; want 503 unhealthy after the probe's 1 s deadline", code, doc.Status, took)
	}
}

func TestHealthDisabledWithoutRedis(t *testing.T) {
	s := newHealthStack(t, noRedis)
	token, _ := s.db.Session(t, s.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	s.validate(t, token, 2, true)
	code, doc := s.get(t)
	var want specHealth
	want.Status, want.Timestamp, want.Errors = "disabled", s.clock.Now().UTC().Format(time.RFC3339), []string{}
	want.SessionCache.Breaker, want.Redis.Mode = "disabled", "disabled"
	want.SessionCache.Metrics.Misses, want.SessionCache.Metrics.Total, want.SessionCache.Metrics.TTL = 2, 2, 300
	if code != http.StatusOK || !jsonEqual(t, doc, want) {
		t.Fatalf("HTTP %d %+v\nwant 200 %+v", code, doc, want)
	}
}

func jsonEqual(tb testing.TB, a, b any) bool {
	tb.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		tb.Fatal(err1, err2)
	}
	return string(x) == string(y)
}

func TestHealthProbeRunsAtMostOncePerSecond(t *testing.T) {
	s := newHealthStack(t, withRedis)
	probeCommands := []string{"ping", "set", "get", "dbsize"}
	probes := func(before, after map[string]int) map[string]int {
		d := map[string]int{}
		for _, c := range probeCommands {
			d[c] = after[c] - before[c]
		}
		return d
	}
	once := map[string]int{"ping": 1, "set": 1, "get": 1, "dbsize": 1}
	twice := map[string]int{"ping": 2, "set": 2, "get": 2, "dbsize": 2}

	before := s.commandCalls(t)
	for range 50 {
		s.get(t)
	}
	s.clock.Add(999 * time.Millisecond)
	for range 20 {
		s.get(t)
	}
	if got := probes(before, s.commandCalls(t)); !maps.Equal(got, once) {
		t.Fatalf("within one second: probe commands %v, want %v", got, once)
	}
	s.clock.Add(time.Millisecond)
	for range 20 {
		s.get(t)
	}
	if got := probes(before, s.commandCalls(t)); !maps.Equal(got, twice) {
		t.Fatalf("after one second: probe commands %v, want %v", got, twice)
	}
}

func TestHealthConcurrentPollingProbesAtMostOncePerSecond(t *testing.T) {
	s := newHealthStack(t, withRedis|realClock)
	before := s.commandCalls(t)
	start := time.Now()
	var wg sync.WaitGroup
	var polls sync.Map
	for i := range 8 {
		wg.Go(func() {
			n := 0
			for time.Since(start) < 2200*time.Millisecond {
				s.get(t)
				n++
			}
			polls.Store(i, n)
		})
	}
	wg.Wait()
	total := 0
	polls.Range(func(_, n any) bool { total += n.(int); return true })
	// Probes can start at 0s, ≥1s and ≥2s: three at most in 2.2s, however many polls.
	if pings := s.commandCalls(t)["ping"] - before["ping"]; pings < 2 || pings > 3 {
		t.Fatalf("%d polls in 2.2s sent %d PINGs, want 2 or 3", total, pings)
	}
	if total < 100 {
		t.Fatalf("only %d polls in 2.2s; the test did not poll hard", total)
	}
}

func TestHealthOnAClusterReportsTheNodeThatFailsAndRecovers(t *testing.T) {
	cluster := testenv.StartRedisCluster(t)
	rdb := cluster.Client(t, func(o *redis.ClusterOptions) {
		o.MaxRetries, o.ContextTimeoutEnabled, o.DialTimeout = -1, true, 200*time.Millisecond
	})
	db := testenv.NewDB(t)
	cache := authcache.New(db.OpenStore(t), authcache.Options{Redis: rdb, Prefix: "health:", SessionTTL: time.Minute,
		OpTimeout: 300 * time.Millisecond, LookupTimeout: time.Second, BreakerFailures: 5, BreakerOpenFor: time.Second})
	rep := health.New(health.Options{Redis: rdb, Mode: "cluster", Cache: cache, Prefix: "health:", OpTimeout: 300 * time.Millisecond})
	doc := rep.Document(context.Background())
	if doc.Status != "healthy" || doc.Redis.Mode != "cluster" || len(doc.Errors) != 0 || doc.Redis.TotalKeys < 1 {
		t.Fatalf("cluster document: %+v, want healthy, mode cluster, no errors, the probe's key counted", doc)
	}

	victim := cluster.MasterOf("health:healthcheck")
	victim.Kill()
	time.Sleep(time.Second) // past the probe's cache
	doc = rep.Document(context.Background())
	if doc.Status == "healthy" || !strings.Contains(strings.Join(doc.Errors, "; "), victim.Addr()) {
		t.Fatalf("with master %s killed: status %q, errors %q; want not healthy, naming the node",
			victim.Addr(), doc.Status, doc.Errors)
	}
	// The replica is promoted within a few node timeouts; the document follows on its own.
	start := time.Now()
	for doc.Status != "healthy" {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("not healthy again within 15s of the failover: %+v", doc)
		}
		time.Sleep(200 * time.Millisecond)
		doc = rep.Document(context.Background())
	}
	t.Logf("healthy again %v after the kill; errors %q", time.Since(start).Round(100*time.Millisecond), doc.Errors)
}
