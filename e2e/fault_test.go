package e2e

// Fault tests (issue 3) with real processes: a private redis-server killed, paused and
// restarted, and Postgres reached through a forwarder that cuts or stalls every connection.
// For each fault and token class: the status every request gets, that it waited at most the
// timeouts it may wait (plus a slack calibrated on this machine, see testenv.Slack), that no
// request waited on Redis while the breaker was open (by the sidecar's own log), the health
// document's status and /readyz, and recovery without a restart.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// Fault settings, short so the tests are fast.
const (
	opTimeout       = 100 * time.Millisecond // REDIS_OP_TIMEOUT
	breakerFailures = 3                      // BREAKER_FAILURES
	breakerOpenFor  = time.Second            // BREAKER_OPEN_FOR
	dbTimeout       = 500 * time.Millisecond // DB_QUERY_TIMEOUT
	// noWait is what a request that waits on no timeout may wait: nothing beyond the slack.
	noWait = time.Duration(0)
)

// faultRig is a sidecar on a private Redis and a forwarded Postgres.
type faultRig struct {
	st    *stack
	redis *testenv.RedisServer
	rdb   *redis.Client // on the private server
	pg    *testenv.Forwarder
	up    *Upstream
	sc    *Sidecar
	slack time.Duration // calibrated on the healthy sidecar (calibrate)
	marks int           // flushedLog's marks so far
}

func faultEnv(st *stack, redisURL, dbURL, upstream string, overrides map[string]string) map[string]string {
	env := st.env(upstream, map[string]string{
		"REDIS_URL": redisURL, "DATABASE_URL": dbURL, "SESSION_KEY_PREFIX": "session:",
		"REDIS_OP_TIMEOUT": opTimeout.String(), "BREAKER_FAILURES": fmt.Sprint(breakerFailures),
		"BREAKER_OPEN_FOR": breakerOpenFor.String(), "DB_QUERY_TIMEOUT": dbTimeout.String(),
		"LOCAL_CACHE_TTL":   "0", // a "cached" session is cached in Redis, the layer under test
		"REDIS_MAX_RETRIES": "3", "SHUTDOWN_TIMEOUT": "5s",
		"LOG_LEVEL": "info", // access lines mark how far the buffered log was flushed (flushedLog)
	})
	for k, v := range overrides {
		env[k] = v
	}
	return env
}

// echoUser is an upstream that answers with the identity it was given, so a test can tell
// a right decision from a wrong one.
func echoUser(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Seen-User", r.Header.Get("X-User-Id"))
}

func newFaultRig(t *testing.T, overrides map[string]string) *faultRig {
	t.Helper()
	st := newStack(t)
	rig := &faultRig{st: st, redis: testenv.StartRedis(t), pg: testenv.NewForwarder(t, hostOf(t, st.db.URL))}
	rig.rdb = privateClient(t, rig.redis)
	rig.up = NewUpstream(t, echoUser)
	rig.sc = StartSidecar(t, faultEnv(st, rig.redis.URL(), st.db.URLVia(rig.pg.Addr()), rig.up.URL, overrides))
	rig.calibrate(t)
	// The feed's first resync clears the in-process cache: a session cached before it (as
	// newTokens does) would be lost from the process, and a test that then cuts both stores
	// would get 503 for it.
	awaitFeedRole(t, rig.sc, seriesFeedHolder, 10*time.Second)
	return rig
}

// calibrate measures the slack of this machine on requests that wait on nothing: the
// sidecar's own /healthz, before any fault.
func (rig *faultRig) calibrate(t *testing.T) {
	t.Helper()
	rig.slack = testenv.Slack(t, func() { rig.sc.Admin(t, "/healthz") })
}

// privateClient is a go-redis client on a private server, closed at cleanup.
func privateClient(tb testing.TB, srv *testenv.RedisServer) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// awaitCached waits until the session with this hash is in Redis.
func (rig *faultRig) awaitCached(t *testing.T, hash string) {
	t.Helper()
	eventually(t, 3*time.Second, "session cached in Redis", func() bool {
		return rig.rdb.Exists(t.Context(), "session:{"+hash+"}").Val() == 1
	})
}

// token classes
const (
	cached   = "valid-and-cached"
	uncached = "valid-not-cached"
	invalid  = "invalid"
	revoked  = "revoked"
)

var classes = []string{cached, uncached, invalid, revoked}

var shortClass = map[string]string{cached: "cached", uncached: "fresh", invalid: "invalid", revoked: "revoked"}

// tokenSource hands out tokens of a class, each with the user it must resolve to ("" when
// it must not resolve). Uncached, invalid and revoked tokens are fresh every time, so
// nothing about them can be cached by an earlier request.
type tokenSource struct {
	rig          *faultRig
	cachedToken  string
	cachedUserID string
	seq          int
}

// newTokens seeds the sessions and caches one of them in Redis.
func (rig *faultRig) newTokens(t *testing.T) *tokenSource {
	t.Helper()
	ts := &tokenSource{rig: rig}
	var hash string
	ts.cachedToken, hash, ts.cachedUserID = rig.st.session(t, testenv.SessionSpec{})
	if r := rig.sc.Get(t, "/api/me", ts.cachedToken); r.Status != http.StatusOK {
		t.Fatalf("warming the cache: %d %s", r.Status, r.Body)
	}
	rig.awaitCached(t, hash)
	return ts
}

func (ts *tokenSource) next(t *testing.T, class string) (token, userID string) {
	t.Helper()
	ts.seq++
	switch class {
	case cached:
		return ts.cachedToken, ts.cachedUserID
	case uncached:
		token, _, userID = ts.rig.st.session(t, testenv.SessionSpec{})
		return token, userID
	case revoked:
		token, _, _ = ts.rig.st.session(t, testenv.SessionSpec{Revoked: true})
		return token, ""
	default:
		return fmt.Sprintf("invalid-%d-%d", time.Now().UnixNano(), ts.seq), ""
	}
}

// outcome is one request's answer and its duration.
type outcome struct {
	class    string
	status   int
	duration time.Duration
}

// probe sends n requests of every class, interleaved, checking each answer against want
// (class → status). It returns the outcomes in the order sent.
func (ts *tokenSource) probe(t *testing.T, n int, want map[string]int) []outcome {
	t.Helper()
	sc := ts.rig.sc
	var outs []outcome
	for range n {
		for _, class := range classes {
			token, userID := ts.next(t, class)
			r := sc.Get(t, "/api/me", token)
			outs = append(outs, outcome{class, r.Status, r.Duration})
			assertDecision(t, class, r, want[class], userID)
		}
	}
	return outs
}

// assertDecision checks one answer: the wanted status, the right user on a 200, and the
// SPEC's body and headers on a 503.
func assertDecision(t *testing.T, class string, r Response, want int, userID string) {
	t.Helper()
	if r.Status != want {
		t.Errorf("%s token: status %d, want %d (body %q)", class, r.Status, want, r.Body)
		return
	}
	switch r.Status {
	case http.StatusOK:
		if got := r.Header.Get("X-Seen-User"); got != userID {
			t.Errorf("%s token: the app saw user %q, want %q", class, got, userID)
		}
	case http.StatusServiceUnavailable:
		if r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, `"error"`) {
			t.Errorf("%s token: 503 without Retry-After or JSON body: %v %q", class, r.Header, r.Body)
		}
	}
}

// durations logs how long each request took and checks that none took longer than waits,
// the timeouts it may wait, plus the rig's calibrated slack: a request the product bounds
// by its timeouts passes on a busy machine, one that hangs on a dead store does not. How
// many requests waited is checked by count (assertNoRedisWaitWhileOpen), not by the clock.
func (rig *faultRig) durations(t *testing.T, label string, outs []outcome, waits time.Duration) {
	t.Helper()
	var parts []string
	var worst time.Duration
	for _, o := range outs {
		parts = append(parts, fmt.Sprintf("%s=%d/%dms", shortClass[o.class], o.status, o.duration.Milliseconds()))
		worst = max(worst, o.duration)
	}
	t.Logf("measured: %s: worst %v: %s", label, worst.Round(time.Millisecond), strings.Join(parts, " "))
	if limit := waits + rig.slack; worst > limit {
		t.Errorf("%s: a request took %v, want ≤ %v (timeouts %v + slack %v)", label, worst, limit, waits, rig.slack)
	}
}

// flushedLog returns the sidecar's log once everything logged so far has been written out:
// the log is buffered (flushed every second), so it sends a marked request and waits for
// its access line, which comes after every line logged before it.
func (rig *faultRig) flushedLog(t *testing.T) string {
	t.Helper()
	rig.marks++
	mark := fmt.Sprintf("flush-mark-%d", rig.marks)
	req := newRequest(t, http.MethodGet, rig.sc.URL+"/api/mark", "", nil)
	req.Header.Set("X-Request-Id", mark)
	assertUnauthorized(t, rig.sc.Do(t, req))
	var log string
	eventually(t, 10*time.Second, "the log flushed up to "+mark, func() bool {
		log = rig.sc.Stderr()
		return strings.Contains(log, `"requestId":"`+mark+`"`)
	})
	return log
}

// Log lines of the cache: a Redis operation that failed (a refusal by the open breaker is
// not logged, and waits on nothing) and a breaker transition.
var (
	redisFailureLine = regexp.MustCompile(`"msg":"redis [a-z ]+ failed; falling back to postgres"`)
	breakerLine      = regexp.MustCompile(`"msg":"redis breaker changed state","from":"([a-z-]+)","to":"([a-z-]+)"`)
)

// assertNoRedisWaitWhileOpen reads the sidecar's log in order and checks, by count, that no
// request waited on Redis while the breaker was open: every logged Redis failure happens
// while the breaker is closed (at most BREAKER_FAILURES in a row), or is one of the calls
// that were already under way when it opened — the one whose failure opened it (it logs
// after the transition it caused; a half-open probe that fails is one of those), or another
// caller's, such as the change feed's background evictions, which fails at the latest one
// REDIS_OP_TIMEOUT after the transition. It returns how many requests waited on Redis.
func (rig *faultRig) assertNoRedisWaitWhileOpen(t *testing.T) (waited int) {
	t.Helper()
	state, run := "closed", 0
	var opened time.Time
	for _, line := range strings.Split(rig.flushedLog(t), "\n") {
		if m := breakerLine.FindStringSubmatch(line); m != nil {
			if m[1] != state {
				t.Errorf("breaker went %s→%s while the log had it %s", m[1], m[2], state)
			}
			state, run = m[2], 0
			opened = logTime(t, line)
			continue
		}
		if !redisFailureLine.MatchString(line) {
			continue
		}
		waited++
		switch {
		case state == "open" && !logTime(t, line).After(opened.Add(opTimeout+50*time.Millisecond)):
			// under way when the breaker opened
		case state == "open":
			t.Errorf("a request waited on Redis while the breaker was open: %s", line)
		case state == "closed":
			if run++; run > breakerFailures {
				t.Errorf("%d Redis failures in a row without the breaker opening: %s", run, line)
			}
		}
	}
	return waited
}

// logTime is the "time" field of a JSON log line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	var l struct{ Time time.Time }
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return l.Time
}

// healthStatus is the health document's status field and the HTTP status it came with.
func healthStatus(t *testing.T, sc *Sidecar) (string, int) {
	t.Helper()
	r := sc.Get(t, "/api/health/redis", "")
	var doc struct{ Status string }
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		t.Fatalf("health document %q: %v", r.Body, err)
	}
	return doc.Status, r.Status
}

// awaitHealth polls the health document until its status is want.
func awaitHealth(t *testing.T, sc *Sidecar, want string, code int, within time.Duration) {
	t.Helper()
	eventually(t, within, "health status "+want, func() bool {
		s, c := healthStatus(t, sc)
		return s == want && c == code
	})
}

// The series of docs/deploying.md's failure table ("When a store fails"), as /metrics
// writes them.
const (
	seriesRedisErrors  = `authsidecar_cache_requests_total{layer="redis",result="error"}`
	seriesBreakerState = `authsidecar_redis_breaker_state`
	seriesUnavailable  = `authsidecar_session_validations_total{outcome="unavailable"}`
	series502          = `authsidecar_http_requests_total{code="502"}`
	seriesFeedSolo     = `authsidecar_feed_role{role="solo"}`
	seriesFeedHolder   = `authsidecar_feed_role{role="holder"}`
)

// value is one series on the sidecar's /metrics page; 0 while it is absent (a counter
// whose label set has not been seen yet).
func value(t *testing.T, sc *Sidecar, series string) float64 {
	t.Helper()
	v, _ := metric(t, sc, series)
	return v
}

// assertReady checks /readyz answers code now.
func assertReady(t *testing.T, sc *Sidecar, code int, when string) {
	t.Helper()
	if r := sc.Admin(t, "/readyz"); r.Status != code {
		t.Errorf("/readyz %d %s, want %d", r.Status, when, code)
	}
}

// awaitBreakerOpen waits until /metrics shows the breaker open (2) and the health document
// says "open". After BREAKER_OPEN_FOR both read half-open until something probes Redis, so
// while they do, a request that asks Redis is sent: its failed probe opens the breaker again.
func (rig *faultRig) awaitBreakerOpen(t *testing.T, ts *tokenSource) {
	t.Helper()
	rig.awaitOpen(t, ts, seriesBreakerState+" 2", func() bool { return value(t, rig.sc, seriesBreakerState) == 2 })
	rig.awaitOpen(t, ts, `health document "breaker": "open"`, func() bool {
		var doc struct{ SessionCache struct{ Breaker string } }
		_ = json.Unmarshal([]byte(rig.sc.Get(t, "/api/health/redis", "").Body), &doc)
		return doc.SessionCache.Breaker == "open"
	})
}

func (rig *faultRig) awaitOpen(t *testing.T, ts *tokenSource, what string, open func() bool) {
	t.Helper()
	eventually(t, 3*breakerOpenFor+2*time.Second, what, func() bool {
		if open() {
			return true
		}
		token, userID := ts.next(t, cached)
		assertDecision(t, cached, rig.sc.Get(t, "/api/me", token), http.StatusOK, userID)
		return false
	})
}

// awaitFeedRole waits until /metrics shows the change feed in role (its series is 1).
func awaitFeedRole(t *testing.T, sc *Sidecar, series string, within time.Duration) {
	t.Helper()
	eventually(t, within, series+" 1", func() bool { return value(t, sc, series) == 1 })
}

// allValid is what every class gets while Postgres answers.
var allValid = map[string]int{cached: 200, uncached: 200, invalid: 401, revoked: 401}

// undecidable is what every class gets while only what a cache holds can be answered.
var undecidable = map[string]int{cached: 200, uncached: 503, invalid: 503, revoked: 503}
