package e2e

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

const (
	logscanAdminToken    = "logscan-admin-token-0123456789"
	logscanRedisPassword = "logscan-redis-password-s3cret"
	logscanBasicAuth     = "Basic bG9nc2Nhbjpub3QtYS1zZXNzaW9u" // another scheme: left for the app
)

// logscanRun is one sidecar with a password-protected Redis of its own, JSON debug logs,
// and the secrets it was shown.
type logscanRun struct {
	st      *stack
	redis   *testenv.RedisServer
	up      *Upstream
	sc      *Sidecar
	secrets []string
}

func newLogscanRun(t *testing.T) *logscanRun {
	t.Helper()
	r := &logscanRun{st: newStack(t), up: NewUpstream(t, nil)}
	r.redis = testenv.StartRedis(t, testenv.RedisPassword(logscanRedisPassword))
	r.sc = StartSidecar(t, r.st.env(r.up.URL, map[string]string{
		"REDIS_URL": r.redis.URL(), "SESSION_COOKIE": "sid", "ADMIN_TOKEN": logscanAdminToken,
		"LOG_LEVEL": "debug", "LOG_FORMAT": "json", "BREAKER_FAILURES": "2", "BREAKER_OPEN_FOR": "1s",
		"REDIS_OP_TIMEOUT": "200ms",
	}))
	r.secrets = []string{logscanAdminToken, logscanRedisPassword, logscanBasicAuth, strings.TrimPrefix(logscanBasicAuth, "Basic ")}
	return r
}

// token seeds a session and remembers its raw token as a secret.
func (r *logscanRun) token(t *testing.T) string {
	t.Helper()
	token, _, _ := r.st.session(t, testenv.SessionSpec{})
	r.secrets = append(r.secrets, token)
	return token
}

// do sends a request on the public listener with extra headers and checks the status.
func (r *logscanRun) do(t *testing.T, path, bearer string, header map[string]string, want int) {
	t.Helper()
	req := newRequest(t, http.MethodGet, r.sc.URL+path, bearer, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if got := r.sc.Do(t, req); got.Status != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, got.Status, want, got.Body)
	}
}

func (r *logscanRun) admin(t *testing.T, bearer, body string, want int) {
	t.Helper()
	if got := r.sc.Invalidate(t, bearer, body); got.Status != want {
		t.Fatalf("admin invalidate: %d, want %d: %s", got.Status, want, got.Body)
	}
}

// everyRequestKind sends each kind of request, kills Redis midway, and sends them again.
func (r *logscanRun) everyRequestKind(t *testing.T) {
	t.Helper()
	bearer, cookie, logout, evicted, unknown := r.token(t), r.token(t), r.token(t), r.token(t), "unknown-"+r.token(t)
	r.secrets = append(r.secrets, unknown)
	r.do(t, "/app", bearer, map[string]string{"X-Request-Id": "req-logscan-1"}, 200)
	r.do(t, "/app", bearer, nil, 200)
	r.do(t, "/app", "", map[string]string{"Cookie": "sid=" + cookie, "Authorization": logscanBasicAuth}, 200)
	r.do(t, "/app", unknown, nil, 401)
	r.do(t, "/app", "", nil, 401)
	r.do(t, "/app", "bad token with spaces", nil, 401)
	r.do(t, "/api/auth/validate", bearer, nil, 200)
	r.do(t, "/api/health/redis", "", nil, 200)
	r.do(t, "/api/auth/logout", logout, nil, 200)
	r.admin(t, logscanAdminToken, `{"token":"`+evicted+`"}`, 200)
	r.admin(t, "wrong-"+logscanAdminToken, `{"token":"`+evicted+`"}`, 401)

	r.redis.Kill()
	time.Sleep(1100 * time.Millisecond) // the health probe's last answer is a second old
	for range 5 {
		r.do(t, "/app", bearer, nil, 200) // local or Postgres answers
		r.do(t, "/app", "", map[string]string{"Cookie": "sid=" + cookie}, 200)
	}
	r.do(t, "/app", unknown, nil, 401)
	r.do(t, "/api/health/redis", "", nil, 503)
	r.do(t, "/api/auth/logout", cookie, nil, 200)
	// reference.md's answer when only the in-process eviction could be done. (N is 1, or 0
	// if the change feed, gone solo, dropped the in-process cache first.)
	if got := r.sc.Invalidate(t, logscanAdminToken, `{"token":"`+bearer+`"}`); got.Status != 503 || got.Header.Get("Retry-After") != "2" ||
		!strings.HasPrefix(got.Body, `{"error":"redis unavailable; eviction will be retried","invalidated":`) {
		t.Errorf("admin invalidate with Redis down: %d %q, Retry-After %q; want 503, the error with invalidated N, Retry-After 2",
			got.Status, got.Body, got.Header.Get("Retry-After"))
	}
	time.Sleep(1200 * time.Millisecond) // the breaker probes Redis again, and fails
	r.do(t, "/app", bearer, nil, 200)
}

var fullHash = regexp.MustCompile(`[0-9a-f]{64}`)

func TestLogsAreJSONAndLeakNoSecrets(t *testing.T) {
	r := newLogscanRun(t)
	r.everyRequestKind(t)
	if code := r.sc.Stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := r.sc.Stderr()

	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not one JSON object: %q", line)
			continue
		}
		lines = append(lines, m)
	}
	// Raw, or URL-, JSON-, hex- or base64-encoded.
	testenv.AssertNoRawTokens(t, testenv.TokenScan{Texts: map[string]string{"log": out}, Secrets: r.secrets})
	if h := fullHash.FindString(out); h != "" {
		t.Errorf("the log contains a full token hash %.8s…", h)
	}
	assertLogContent(t, lines, r.up)
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}

// assertLogContent checks the access lines, the request id round trip, the debug cache
// events and that the outage was logged.
func assertLogContent(t *testing.T, lines []map[string]any, up *Upstream) {
	t.Helper()
	count := map[string]int{}
	ids := map[string]bool{}
	for _, l := range lines {
		msg, _ := l["msg"].(string)
		count[msg]++
		if msg == "request" {
			for _, k := range []string{"method", "path", "status", "duration", "userId", "source", "requestId"} {
				if _, ok := l[k]; !ok {
					t.Errorf("access line without %s: %v", k, l)
				}
			}
			ids[l["requestId"].(string)] = true
		}
		if msg == "cache hit" || msg == "cache miss" {
			if _, ok := l["latency"]; !ok || l["level"] != "debug" {
				t.Errorf("cache event without latency or not at debug: %v", l)
			}
		}
		if l["level"] == "warn" && strings.Contains(strings.ToLower(msg), "redis") {
			count["redis warning"]++
		}
	}
	if count["request"] != 23 || count["cache hit"] == 0 || count["cache miss"] == 0 || count["redis warning"] == 0 {
		t.Errorf("log has %d access lines (want 23), %d cache hits, %d misses, %d Redis warnings",
			count["request"], count["cache hit"], count["cache miss"], count["redis warning"])
	}
	reqs := up.Requests()
	if got := reqs[0].Header.Get("X-Request-Id"); got != "req-logscan-1" || !ids[got] {
		t.Errorf("X-Request-Id forwarded %q; want the client's, and logged", got)
	}
	if got := reqs[1].Header.Get("X-Request-Id"); got == "" || !ids[got] {
		t.Errorf("generated X-Request-Id %q was not forwarded and logged", got)
	}
}
