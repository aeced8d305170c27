package health_test

// The health tests' fixture: a cache and its health document on a private redis-server
// behind the public handler, on a settable clock.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/health"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/proxy"
)

// healthStack is a cache on its own redis-server (so keys, commands and outages are the
// test's alone) behind the public handler.
type healthStack struct {
	db    *testenv.DB
	srv   *testenv.RedisServer // nil without Redis
	rdb   *redis.Client        // a client of the test's own, for INFO
	cache *authcache.Cache
	clock *testenv.Clock // the probe is re-run only when it moves by a second
	url   string         // HEALTH_PATH on the handler
}

// Stack variants.
const (
	noRedis   = 0
	withRedis = 1 << iota
	realClock // the cache reads time.Now; clock is then unused
)

func newHealthStack(tb testing.TB, variant int) *healthStack {
	tb.Helper()
	s := &healthStack{db: testenv.NewDB(tb), clock: testenv.NewClock(time.Now())}
	store := s.db.OpenStore(tb)
	o := authcache.Options{
		Prefix: "health:", SessionTTL: 5 * time.Minute, NegativeTTL: time.Minute,
		OpTimeout: 300 * time.Millisecond, LookupTimeout: 2 * time.Second,
		BreakerFailures: 2, BreakerOpenFor: 2 * time.Second, Now: s.clock.Now,
	}
	if variant&realClock != 0 {
		o.Now = time.Now
	}
	if variant&withRedis != 0 {
		s.srv = testenv.StartRedis(tb)
		o.Redis = redisClient(tb, s.srv.URL())
		s.rdb = redisClient(tb, s.srv.URL())
	}
	s.cache = authcache.New(store, o)
	reporter := health.New(health.Options{
		Redis: o.Redis, Mode: "single", Cache: s.cache, Prefix: o.Prefix, SessionTTL: o.SessionTTL, OpTimeout: o.OpTimeout, Now: o.Now,
	})
	srv := httptest.NewServer(proxy.New(proxy.Options{
		Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, Auth: s.cache, Health: reporter,
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis",
	}))
	tb.Cleanup(srv.Close)
	s.url = srv.URL + "/api/health/redis"
	return s
}

// redisClient is configured as the sidecar configures its own: deadlines from the context,
// and no retries, so an outage shows at once.
func redisClient(tb testing.TB, rawURL string) *redis.Client {
	tb.Helper()
	return testenv.RedisClient(tb, rawURL, func(o *redis.Options) {
		o.MaxRetries, o.ContextTimeoutEnabled = -1, true
	})
}

// get fetches the document, checks it has exactly the SPEC's keys, and decodes it strictly.
func (s *healthStack) get(tb testing.TB) (int, specHealth) {
	tb.Helper()
	resp, err := http.Get(s.url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		tb.Fatalf("health body %s: %v", body, err)
	}
	if got := keyPaths("", raw); !slices.Equal(got, specKeys) {
		tb.Fatalf("health keys = %v\nwant %v", got, specKeys)
	}
	var doc specHealth
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		tb.Fatalf("decode %s: %v", body, err)
	}
	return resp.StatusCode, doc
}

// fresh moves the clock past the probe interval, so the next document re-probes Redis.
func (s *healthStack) fresh(tb testing.TB) (int, specHealth) {
	tb.Helper()
	s.clock.Add(time.Second)
	return s.get(tb)
}

// validate validates token n times, failing on an unexpected outcome.
func (s *healthStack) validate(tb testing.TB, token string, n int, valid bool) {
	tb.Helper()
	for range n {
		_, err := s.cache.Validate(context.Background(), token)
		if (err == nil) != valid {
			tb.Fatalf("validate: err = %v, want valid=%v", err, valid)
		}
	}
}

// commandCalls returns the server's per-command call counts (INFO commandstats).
func (s *healthStack) commandCalls(tb testing.TB) map[string]int {
	tb.Helper()
	info, err := s.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	calls := map[string]int{}
	for _, m := range regexp.MustCompile(`cmdstat_(\w+):calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		calls[m[1]], _ = strconv.Atoi(m[2])
	}
	return calls
}

func (s *healthStack) serverInfo(tb testing.TB) map[string]string {
	tb.Helper()
	info, err := s.rdb.Info(context.Background(), "server").Result()
	if err != nil {
		tb.Fatal(err)
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields
}
