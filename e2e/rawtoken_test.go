package e2e

// The raw-token guarantee, black-box: after every kind of traffic the sidecar serves, no
// raw token or cookie value is anywhere in Redis (any key, any value, any database), in what
// it published to other replicas, or in its logs.

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

const rawAdminToken = "rawtoken-admin-token-0123456789"

// rawTokenRun is two replicas on a private redis-server, in database 3 (so the scan must
// look past database 0), with every pub/sub message on that server recorded.
type rawTokenRun struct {
	st       *stack
	redis    *redis.Client // database 3 of the private server
	up       *Upstream
	a, b     *Sidecar
	messages *pubsubRecorder
	secrets  []string
}

func TestRawTokensNeverReachRedisOrLogsWhateverTheTraffic(t *testing.T) {
	t.Parallel()
	r := newRawTokenRun(t)
	r.everyKindOfTraffic(t)
	for _, s := range []*Sidecar{r.a, r.b} {
		if code := s.Stop(t); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
	if n := r.redis.DBSize(context.Background()).Val(); n == 0 {
		t.Fatalf("database 3 is empty: the sidecars cached nothing, the scan would prove nothing")
	}
	if r.messages.count() == 0 {
		t.Fatalf("no eviction was published: the scan of pub/sub would prove nothing")
	}
	testenv.AssertNoRawTokens(t, testenv.TokenScan{
		Redis: r.redis, // DBs nil: every database of the server that holds a key
		Texts: map[string]string{
			"replica a log": r.a.Stderr(), "replica b log": r.b.Stderr(), "pub/sub messages": r.messages.text(),
		},
		Secrets: r.secrets,
	})
}

func newRawTokenRun(t *testing.T) *rawTokenRun {
	t.Helper()
	r := &rawTokenRun{st: newStack(t), secrets: []string{rawAdminToken}}
	srv := testenv.StartRedis(t)
	r.redis = redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: 3})
	t.Cleanup(func() { r.redis.Close() })
	r.messages = recordPubSub(t, r.redis)
	r.up = NewUpstream(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/auth/logout" { // the app revokes the session, as a real one would
			token, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			if c, err := req.Cookie("sid"); err == nil {
				token = c.Value
			}
			_, _ = r.st.db.Pool.Exec(req.Context(), `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, testenv.Hash(token))
		}
	})
	// Sessions that exist before the replicas start are warmed into Redis.
	warmed := make([]string, 3)
	for i := range warmed {
		warmed[i] = r.token(t, testenv.SessionSpec{LastActivityAt: time.Now()})
	}
	env := r.st.env(r.up.URL, map[string]string{
		"REDIS_URL": "redis://" + srv.Addr() + "/3", "SESSION_KEY_PREFIX": "", "SESSION_COOKIE": "sid",
		"ADMIN_TOKEN": rawAdminToken, "CACHE_WARM_ON_START": "true", "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
		"LOCAL_CACHE_TTL": "10s", "NEGATIVE_CACHE_TTL": "1m",
	})
	r.a, r.b = StartSidecar(t, env), StartSidecar(t, env)
	for _, s := range []*Sidecar{r.a, r.b} {
		awaitWarmed(t, s, len(warmed))
	}
	return r
}

// token seeds a session and remembers its raw token as a secret.
func (r *rawTokenRun) token(t *testing.T, spec testenv.SessionSpec) string {
	t.Helper()
	token, _, _ := r.st.session(t, spec)
	r.secrets = append(r.secrets, token)
	return token
}

// warmedLine is the log line warming ends with.
var warmedLine = regexp.MustCompile(`"msg":"cache warmed","sessions":(\d+)`)

// awaitWarmed waits until the replica logged that it warmed at least n sessions.
func awaitWarmed(t *testing.T, s *Sidecar, n int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("warming of %d sessions logged", n), func() bool {
		m := warmedLine.FindStringSubmatch(s.Stderr())
		if m == nil {
			return false
		}
		got, _ := strconv.Atoi(m[1])
		return got >= n
	})
}

// everyKindOfTraffic sends what a sidecar serves: validation by bearer and by cookie on the
// public and the validate path, unknown and malformed tokens, logout, the admin API by
// token, by hash and by user, and revocations and user changes through the trigger.
func (r *rawTokenRun) everyKindOfTraffic(t *testing.T) {
	t.Helper()
	bearer, cookie := r.token(t, testenv.SessionSpec{}), r.token(t, testenv.SessionSpec{})
	logoutBearer, logoutCookie := r.token(t, testenv.SessionSpec{}), r.token(t, testenv.SessionSpec{})
	byAdmin, revoked := r.token(t, testenv.SessionSpec{}), r.token(t, testenv.SessionSpec{})
	unknown := "unknown-" + r.token(t, testenv.SessionSpec{})
	r.secrets = append(r.secrets, unknown)
	for _, s := range []*Sidecar{r.a, r.b} {
		for _, tok := range []string{bearer, cookie, logoutBearer, logoutCookie, byAdmin, revoked} {
			r.do(t, s, "/app", tok, "", http.StatusOK)
		}
		r.do(t, s, "/app", "", cookie, http.StatusOK)
		r.do(t, s, "/api/auth/validate", bearer, "", http.StatusOK)
		r.do(t, s, "/api/auth/validate", "", cookie, http.StatusOK)
		r.do(t, s, "/app", unknown, "", http.StatusUnauthorized)
		r.do(t, s, "/api/auth/validate", "", unknown, http.StatusUnauthorized)
		r.do(t, s, "/app", "malformed "+unknown, "", http.StatusUnauthorized)
	}
	r.do(t, r.a, "/api/auth/logout", logoutBearer, "", http.StatusOK)
	r.do(t, r.b, "/api/auth/logout", "", logoutCookie, http.StatusOK)
	r.admin(t, `{"token":"`+byAdmin+`"}`, http.StatusOK)
	r.admin(t, `{"tokenHash":"`+testenv.Hash(bearer)+`"}`, http.StatusOK)
	r.admin(t, `{"token":"`+unknown+`","userId":"x"}`, http.StatusBadRequest)
	if got := r.a.Invalidate(t, "wrong-"+rawAdminToken, `{"token":"`+byAdmin+`"}`); got.Status != http.StatusUnauthorized {
		t.Fatalf("admin with a wrong token: %d", got.Status)
	}
	r.st.db.Revoke(t, testenv.Hash(revoked))
	var userID string
	if err := r.st.db.Pool.QueryRow(context.Background(), `SELECT user_id::text FROM platform.user_sessions WHERE token_hash = $1`,
		testenv.Hash(cookie)).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	r.admin(t, `{"userId":"`+userID+`"}`, http.StatusOK)
	if _, err := r.st.db.Pool.Exec(context.Background(), `UPDATE platform.users SET email = 'renamed-'||email WHERE id = $1`, userID); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{logoutBearer, logoutCookie, revoked} { // the admin API evicts, it does not revoke
		for _, s := range []*Sidecar{r.a, r.b} {
			eventually(t, 3*time.Second, "revoked session refused", func() bool {
				return s.Get(t, "/app", tok).Status == http.StatusUnauthorized
			})
		}
	}
	// Refill after the evictions, so the scan also sees what a refill writes.
	for _, s := range []*Sidecar{r.a, r.b} {
		r.do(t, s, "/app", bearer, "", http.StatusOK)
		r.do(t, s, "/app", "", cookie, http.StatusOK)
		r.do(t, s, "/app", byAdmin, "", http.StatusOK)
	}
}

// do sends GET path with the token as a bearer token or a cookie and checks the status.
func (r *rawTokenRun) do(t *testing.T, s *Sidecar, path, bearer, cookie string, want int) {
	t.Helper()
	req := newRequest(t, http.MethodGet, s.URL+path, bearer, nil)
	if cookie != "" {
		req.Header.Set("Cookie", "theme=dark; sid="+cookie+"; lang=en")
	}
	if got := s.Do(t, req); got.Status != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, got.Status, want, got.Body)
	}
}

func (r *rawTokenRun) admin(t *testing.T, body string, want int) {
	t.Helper()
	if got := r.a.Invalidate(t, rawAdminToken, body); got.Status != want {
		t.Fatalf("admin invalidate: %d, want %d: %s", got.Status, want, got.Body)
	}
}

// remember records raw tokens the test showed the sidecar, for assertNoRawTokens.
func (st *stack) remember(tokens ...string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.tokens = append(st.tokens, tokens...)
}

// assertNoRawTokens scans every key and value of the shared Redis (every database, every
// prefix, not only this test's) and the sidecars' logs for the tokens the stack issued.
func (st *stack) assertNoRawTokens(t *testing.T, sidecars ...*Sidecar) {
	t.Helper()
	st.mu.Lock()
	secrets := append([]string(nil), st.tokens...)
	st.mu.Unlock()
	logs := map[string]string{}
	for i, s := range sidecars {
		logs["sidecar "+strconv.Itoa(i)+" log"] = s.Stderr()
	}
	testenv.AssertNoRawTokens(t, testenv.TokenScan{Redis: st.rdb, Texts: logs, Secrets: secrets})
}

// pubsubRecorder keeps every message published on a Redis server (PSUBSCRIBE *).
type pubsubRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func recordPubSub(t *testing.T, rdb *redis.Client) *pubsubRecorder {
	t.Helper()
	rec := &pubsubRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	ps := rdb.PSubscribe(ctx, "*")
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatalf("psubscribe: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range ps.Channel() {
			rec.mu.Lock()
			rec.msgs = append(rec.msgs, msg.Channel+" "+msg.Payload)
			rec.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ps.Close()
		<-done
	})
	return rec
}

func (p *pubsubRecorder) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

func (p *pubsubRecorder) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.msgs, "\n")
}
