package e2e

// The revocation tests run the built binary twice, as two replicas sharing one database and
// one Redis prefix, each with an in-process cache, and measure for every way a session can be
// revoked how long it takes until both replicas deny it. The admin API's cases are in
// revocation_admin_test.go, the WebSocket, event-stream and change-feed cases in
// revocation_stream_test.go.

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

const (
	rvAdminToken = "rv-admin-token-0123456789abcdef"
	rvBudget     = time.Second            // the bound: revoked everywhere within one second
	rvResync     = 3 * time.Second        // a revocation no notification carried: the feed's takeover and resync
	rvStreamCut  = 200 * time.Millisecond // open WebSockets and streams end within 200 ms (plus slack)
	rvPoll       = 5 * time.Millisecond
)

func TestRevocationReachesEveryReplicaWithinOneSecond(t *testing.T) {
	env := newRvEnv(t)
	a, b := env.start(t, "a", true), env.start(t, "b", true)
	env.awaitListeners(t, nil, 2)
	env.awaitSubscribers(t, 2)

	sqlRevocations := []struct {
		name, sql string // $1 = token hash
	}{
		{"UpdateRevokedAt", `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`},
		{"UpdateExpiresAtNow", `UPDATE platform.user_sessions SET expires_at = now() WHERE token_hash = $1`},
		{"DeleteSessionRow", `DELETE FROM platform.user_sessions WHERE token_hash = $1`},
	}
	for _, tc := range sqlRevocations {
		t.Run(tc.name, func(t *testing.T) {
			token, hash, _ := env.session(t, testenv.SessionSpec{})
			env.warm(t, token)
			start := time.Now()
			env.exec(t, tc.sql, hash)
			rvReport(t, tc.name, env.untilDenied(t, start, token))
		})
	}
	t.Run("DeleteUser", env.deleteUser)
	t.Run("UserUpdateReachesHeaders", env.userUpdateReachesHeaders)
	t.Run("LogoutPath", func(t *testing.T) { env.logoutPath(t, a) })
	env.adminCases(t, a, b)
	t.Run("WebSocketClosedOnRevocation", func(t *testing.T) { env.webSocketClosedOnRevocation(t, a) })
	t.Run("EventStreamEndsOnRevocation", func(t *testing.T) { env.eventStreamEndsOnRevocation(t, b) })
	t.Run("EventStreamEndsAtExpiry", func(t *testing.T) { env.eventStreamEndsAtExpiry(t, a) })
	t.Run("ListenConnectionTerminated", env.listenConnectionTerminated)
	t.Run("AdminStatusCodes", func(t *testing.T) { env.adminStatusCodes(t, a) })
	env.assertNoRawTokens(t, a.Sidecar, b.Sidecar) // after revocations, logout and the admin API by token
}

func (e *rvEnv) deleteUser(t *testing.T) {
	user := e.db.User(t, testenv.UserSpec{})
	t1, _ := e.db.Session(t, user, testenv.SessionSpec{})
	t2, _ := e.db.Session(t, user, testenv.SessionSpec{})
	e.warm(t, t1)
	e.warm(t, t2)
	start := time.Now()
	e.exec(t, `DELETE FROM platform.users WHERE id = $1`, user)
	rvReport(t, "DeleteUser", max(e.untilDenied(t, start, t1), e.untilDenied(t, start, t2)))
}

func (e *rvEnv) userUpdateReachesHeaders(t *testing.T) {
	token, _, user := e.session(t, testenv.SessionSpec{})
	e.warm(t, token)
	email := "renamed-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "@example.test"
	start := time.Now()
	e.exec(t, `UPDATE platform.users SET email = $2, first_name = 'Renamed', last_name = 'Person' WHERE id = $1`, user, email)
	var worst time.Duration
	for _, s := range e.replicas {
		worst = max(worst, s.untilIdentity(t, start, token, map[string]string{
			"X-User-Email": email, "X-User-First-Name": "Renamed", "X-User-Last-Name": "Person",
		}))
	}
	rvReport(t, "UserUpdateReachesHeaders", worst)
}

func (e *rvEnv) logoutPath(t *testing.T, s *rvReplica) {
	token, _, _ := e.session(t, testenv.SessionSpec{})
	e.warm(t, token)
	start := time.Now()
	// The app revokes the row without a notification: only the sidecar's own logout
	// eviction can stop the cached copies.
	if code := s.Get(t, "/api/auth/logout", token).Status; code != http.StatusOK {
		t.Fatalf("logout answered %d, want 200", code)
	}
	if code := s.Get(t, "/", token).Status; code != http.StatusUnauthorized {
		t.Fatalf("first request after logout answered %d on the replica that saw it, want 401", code)
	}
	rvReport(t, "LogoutPath", e.untilDenied(t, start, token))
}

// rvEnv is the shared world of one test: database, Redis prefix, upstream app, replicas.
type rvEnv struct {
	*stack
	upstream *Upstream
	wsClosed chan chan struct{} // the WebSocket handler sends one per upgraded connection
	replicas []*rvReplica       // the replicas started with an admin token, in order
	cut      time.Duration      // rvStreamCut plus this machine's slack (closeBound)
}

// rvReplica is one running sidecar, named in failure messages.
type rvReplica struct {
	*Sidecar
	name string
}

func newRvEnv(t *testing.T) *rvEnv {
	t.Helper()
	env := &rvEnv{stack: newStack(t), wsClosed: make(chan chan struct{}, 4)}
	env.upstream = NewUpstream(t, env.app)
	return env
}

// start runs a sidecar on the shared world; replica makes it a replica under test (admin
// token, LISTEN), otherwise it runs without ADMIN_TOKEN and without LISTEN, so the count of
// LISTEN connections stays exact.
func (e *rvEnv) start(t *testing.T, name string, replica bool) *rvReplica {
	t.Helper()
	overrides := map[string]string{
		"LOCAL_CACHE_TTL": "10s", "SHUTDOWN_TIMEOUT": "1s", "LOG_LEVEL": "info", "ADMIN_TOKEN": rvAdminToken,
	}
	if !replica {
		overrides["ADMIN_TOKEN"], overrides["DB_NOTIFY_CHANNEL"] = "", "none"
	}
	s := &rvReplica{Sidecar: StartSidecar(t, e.env(e.upstream.URL, overrides)), name: name}
	awaitReady(t, s.Sidecar, http.StatusOK, 10*time.Second)
	if replica {
		e.replicas = append(e.replicas, s)
	}
	return s
}

// app is the upstream: it echoes the identity headers it received, revokes the session on
// logout the way an app would (without a notification, see silently), upgrades /ws to an
// echoing connection and streams /sse.
func (e *rvEnv) app(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/auth/logout":
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if err := e.silentExec(r.Context(), `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, testenv.Hash(token)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	case "/ws":
		echoWebSocket(e.wsClosed)(w, r)
	case "/sse":
		rvStreamEvents(w, r)
	default:
		identity := map[string]string{}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-User-") || strings.HasPrefix(k, "X-Session-") {
				identity[k] = v[0]
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(identity)
	}
}

func (e *rvEnv) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// silently changes rows without firing the notification triggers (session_replication_role
// = replica skips ordinary triggers), as if the trigger were not installed: the caches only
// learn of it from the path under test.
func (e *rvEnv) silently(t *testing.T, sql string, args ...any) {
	t.Helper()
	if err := e.silentExec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *rvEnv) silentExec(ctx context.Context, sql string, args ...any) error {
	return pgx.BeginFunc(ctx, e.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	})
}

// warm makes two authorised requests on each replica (every replica under test unless
// named), so the session sits in Redis and in every replica's in-process cache.
func (e *rvEnv) warm(t *testing.T, token string, replicas ...*rvReplica) {
	t.Helper()
	if len(replicas) == 0 {
		replicas = e.replicas
	}
	for range 2 {
		for _, s := range replicas {
			if code := s.Get(t, "/", token).Status; code != http.StatusOK {
				t.Fatalf("%s: warming request answered %d, want 200", s.name, code)
			}
		}
	}
}

// untilDenied polls every replica under test until each answers 401 for the token and
// returns how long after start the last one started denying; it fails past rvBudget.
func (e *rvEnv) untilDenied(t *testing.T, start time.Time, token string) time.Duration {
	t.Helper()
	return e.untilDeniedWithin(t, start, token, rvBudget)
}

// untilDeniedWithin is untilDenied with another bound.
func (e *rvEnv) untilDeniedWithin(t *testing.T, start time.Time, token string, bound time.Duration) time.Duration {
	t.Helper()
	denied := make([]time.Duration, len(e.replicas))
	for remaining := len(e.replicas); remaining > 0; {
		for i, s := range e.replicas {
			if denied[i] != 0 {
				continue
			}
			switch code := s.Get(t, "/", token).Status; code {
			case http.StatusUnauthorized:
				denied[i] = time.Since(start)
				remaining--
			case http.StatusOK:
			default:
				t.Fatalf("%s answered %d while waiting for the revocation", s.name, code)
			}
		}
		if remaining > 0 && time.Since(start) > 3*bound {
			t.Fatalf("still accepted %v after revocation (denied after: %v)", time.Since(start), denied)
		}
		time.Sleep(rvPoll)
	}
	worst := slices.Max(denied)
	if worst >= bound {
		t.Errorf("both replicas deny only %v after revocation (each: %v), want < %v", worst, denied, bound)
	}
	return worst
}

// untilIdentity polls until the app receives want among the identity headers and returns
// how long after start that was; it fails past rvBudget.
func (s *rvReplica) untilIdentity(t *testing.T, start time.Time, token string, want map[string]string) time.Duration {
	t.Helper()
	var got map[string]string
	for i := 0; i < 1000 && time.Since(start) < 3*rvBudget; i++ {
		r := s.Get(t, "/", token)
		got = nil
		if r.Status == http.StatusOK && json.Unmarshal([]byte(r.Body), &got) == nil && rvContains(got, want) {
			d := time.Since(start)
			if d >= rvBudget {
				t.Errorf("%s: the user's new identity took %v to reach the app, want < %v", s.name, d, rvBudget)
			}
			return d
		}
		time.Sleep(rvPoll)
	}
	t.Fatalf("%s: the app still gets %v, want %v", s.name, got, want)
	return 0
}

func rvContains(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func rvReport(t *testing.T, path string, d time.Duration) {
	t.Helper()
	t.Logf("measured: %s took effect on both replicas after %v", path, d.Round(100*time.Microsecond))
}
