package e2e

// Shared fixtures of the black-box, fault and load tests: a recording upstream, one test's
// stores, and polling.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// Received is what the upstream got.
type Received struct {
	Method     string
	RequestURI string // as sent on the wire
	Path       string // decoded
	RawQuery   string
	Host       string
	Header     http.Header
	Body       string
}

// Upstream is an app stand-in that records every request it receives.
type Upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []Received
}

// NewUpstream starts an upstream that records each request and then calls handler (nil
// answers 200 "ok").
func NewUpstream(tb testing.TB, handler http.HandlerFunc) *Upstream {
	tb.Helper()
	if handler == nil {
		handler = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }
	}
	u := &Upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // a broken body shows up as a wrong Body in the test
		u.mu.Lock()
		u.reqs = append(u.reqs, Received{
			Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Host: r.Host, Header: r.Header.Clone(), Body: string(body),
		})
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		handler(w, r)
	}))
	tb.Cleanup(u.Server.Close)
	return u
}

// Requests returns a copy of what was received so far.
func (u *Upstream) Requests() []Received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Received(nil), u.reqs...)
}

// Count is how many requests were received.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Last returns the last request received, failing the test if there was none.
func (u *Upstream) Last(tb testing.TB) Received {
	tb.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		tb.Fatalf("upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

// stack is one test's stores: a fresh database and a key prefix on the shared Redis. It
// remembers the raw tokens session issued, for assertNoRawTokens.
type stack struct {
	db     *testenv.DB
	rdb    *redis.Client
	prefix string

	mu     sync.Mutex
	tokens []string
}

// The Redis key layout, as the README documents it: a hash tag on every key.
func (st *stack) sessionKey(h string) string { return st.prefix + "{" + h + "}" }
func (st *stack) negKey(h string) string     { return st.prefix + "neg:{" + h + "}" }
func (st *stack) userKey(u string) string    { return st.prefix + "user:{" + u + "}" }

func newStack(tb testing.TB) *stack {
	tb.Helper()
	db := testenv.NewDB(tb)
	rdb := testenv.NewRedisClient(tb)
	return &stack{db: db, rdb: rdb, prefix: testenv.Prefix(tb, rdb)}
}

// env is the sidecar configuration for this stack and upstream, with overrides applied
// (an override of "" removes the variable).
func (st *stack) env(upstream string, overrides map[string]string) map[string]string {
	env := map[string]string{
		"UPSTREAM_URL":       upstream,
		"DATABASE_URL":       st.db.URL,
		"REDIS_URL":          redisURLOf(st.rdb),
		"SESSION_KEY_PREFIX": st.prefix,
		"DB_NOTIFY_CHANNEL":  st.db.Channel,
	}
	for k, v := range overrides {
		if v == "" {
			delete(env, k)
			continue
		}
		env[k] = v
	}
	return env
}

func redisURLOf(rdb *redis.Client) string {
	o := rdb.Options()
	return fmt.Sprintf("redis://%s/%d", o.Addr, o.DB)
}

// session seeds a user and one session of it, returning the token, its hash and the user id.
func (st *stack) session(tb testing.TB, spec testenv.SessionSpec) (token, hash, userID string) {
	tb.Helper()
	userID = st.db.User(tb, testenv.UserSpec{FirstName: "Ada", LastName: "Lovelace", Username: "ada"})
	token, hash = st.db.Session(tb, userID, spec)
	st.remember(token)
	return token, hash, userID
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
