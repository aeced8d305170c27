package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// The revocation tests run the built binary twice, as two replicas sharing one database and
// one Redis prefix, each with an in-process cache, and measure for every way a session can be
// revoked how long it takes until both replicas deny it.

const (
	rvAdminToken = "rv-admin-token-0123456789abcdef"
	rvBudget     = time.Second     // the bound: revoked everywhere within one second
	rvStreamCut  = 2 * time.Second // open WebSockets and streams end within two seconds
	rvPoll       = 5 * time.Millisecond
)

func TestRevocationReachesEveryReplicaWithinOneSecond(t *testing.T) {
	env := rvNewEnv(t)
	a, b := env.start(t, "a", true), env.start(t, "b", true)
	env.awaitListeners(t, 2)
	env.awaitSubscribers(t, 2)
	both := []*rvSidecar{a, b}

	sqlRevocations := []struct {
		name, sql string // $1 = token hash
	}{
		{"UpdateRevokedAt", `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`},
		{"UpdateExpiresAtNow", `UPDATE platform.user_sessions SET expires_at = now() WHERE token_hash = $1`},
		{"DeleteSessionRow", `DELETE FROM platform.user_sessions WHERE token_hash = $1`},
	}
	for _, tc := range sqlRevocations {
		t.Run(tc.name, func(t *testing.T) {
			token, hash := env.session(t, env.user(t))
			rvWarm(t, token, both...)
			start := time.Now()
			env.exec(t, tc.sql, hash)
			rvReport(t, tc.name, rvUntilDenied(t, start, token, both...))
		})
	}

	t.Run("DeleteUser", func(t *testing.T) {
		user := env.user(t)
		t1, _ := env.session(t, user)
		t2, _ := env.session(t, user)
		rvWarm(t, t1, both...)
		rvWarm(t, t2, both...)
		start := time.Now()
		env.exec(t, `DELETE FROM platform.users WHERE id = $1`, user)
		rvReport(t, "DeleteUser", max(rvUntilDenied(t, start, t1, both...), rvUntilDenied(t, start, t2, both...)))
	})

	t.Run("UserUpdateReachesHeaders", func(t *testing.T) {
		user := env.user(t)
		token, _ := env.session(t, user)
		rvWarm(t, token, both...)
		email := "renamed-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "@example.test"
		start := time.Now()
		env.exec(t, `UPDATE platform.users SET email = $2, first_name = 'Renamed', last_name = 'Person' WHERE id = $1`, user, email)
		var worst time.Duration
		for _, s := range both {
			worst = max(worst, s.untilIdentity(t, start, token, map[string]string{
				"X-User-Email": email, "X-User-First-Name": "Renamed", "X-User-Last-Name": "Person",
			}))
		}
		rvReport(t, "UserUpdateReachesHeaders", worst)
	})

	t.Run("LogoutPath", func(t *testing.T) {
		token, _ := env.session(t, env.user(t))
		rvWarm(t, token, both...)
		start := time.Now()
		// The app revokes the row without a notification: only the sidecar's own logout
		// eviction can stop the cached copies.
		if code := a.get(t, "/api/auth/logout", token); code != http.StatusOK {
			t.Fatalf("logout answered %d, want 200", code)
		}
		if code := a.get(t, "/", token); code != http.StatusUnauthorized {
			t.Fatalf("first request after logout answered %d on the replica that saw it, want 401", code)
		}
		rvReport(t, "LogoutPath", rvUntilDenied(t, start, token, both...))
	})

	t.Run("AdminToken", func(t *testing.T) {
		token, hash := env.session(t, env.user(t))
		env.adminCase(t, "AdminToken", a, []string{token}, func() {
			env.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash)
		}, map[string]string{"token": token}, 1)
	})
	t.Run("AdminTokenHash", func(t *testing.T) {
		token, hash := env.session(t, env.user(t))
		env.adminCase(t, "AdminTokenHash", b, []string{token}, func() {
			env.silently(t, `DELETE FROM platform.user_sessions WHERE token_hash = $1`, hash)
		}, map[string]string{"tokenHash": hash}, 1)
	})
	t.Run("AdminUserID", func(t *testing.T) {
		user := env.user(t)
		t1, _ := env.session(t, user)
		t2, _ := env.session(t, user)
		env.adminCase(t, "AdminUserID", a, []string{t1, t2}, func() {
			env.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE user_id = $1`, user)
		}, map[string]string{"userId": user}, 2)
	})

	t.Run("WebSocketClosedOnRevocation", func(t *testing.T) {
		token, hash := env.session(t, env.user(t))
		conn, br := a.openWebSocket(t, token)
		upstreamClosed := env.nextWebSocketClosed(t)
		start := time.Now()
		env.exec(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash)
		d := rvUntilClosed(t, start, conn, br)
		select {
		case <-upstreamClosed:
		case <-time.After(time.Until(start.Add(rvStreamCut))):
			t.Fatalf("the app's side of the WebSocket is still open %v after revocation", rvStreamCut)
		}
		t.Logf("measured: WebSocket closed %v after revocation (bound %v)", d, rvStreamCut)
	})

	t.Run("EventStreamEndsOnRevocation", func(t *testing.T) {
		token, hash := env.session(t, env.user(t))
		body := b.openEventStream(t, token)
		start := time.Now()
		env.exec(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash)
		d := rvUntilStreamEnds(t, start, body)
		t.Logf("measured: event stream ended %v after revocation (bound %v)", d, rvStreamCut)
	})

	t.Run("EventStreamEndsAtExpiry", func(t *testing.T) {
		token, hash := env.db.Session(t, env.user(t), testenv.SessionSpec{ExpiresIn: 1500 * time.Millisecond})
		var expires time.Time
		if err := env.db.Pool.QueryRow(context.Background(),
			`SELECT expires_at FROM platform.user_sessions WHERE token_hash = $1`, hash).Scan(&expires); err != nil {
			t.Fatal(err)
		}
		body := a.openEventStream(t, token)
		// No event announces an expiry: the revalidation alone must notice it.
		d := rvUntilStreamEnds(t, expires, body)
		t.Logf("measured: event stream ended %v after its session expired (bound %v)", d, rvStreamCut)
	})

	t.Run("ListenConnectionTerminated", func(t *testing.T) {
		// Revoked while both LISTEN connections are gone: the revocation commits after the
		// backends were terminated, so no notification carries it; only the resync does.
		away, awayHash := env.session(t, env.user(t))
		after, afterHash := env.session(t, env.user(t))
		rvWarm(t, away, both...)
		rvWarm(t, after, both...)
		old := env.listenPIDs(t)
		resyncs := []int{a.resyncs(), b.resyncs()}
		start := time.Now()
		env.revokeAndTerminateListeners(t, awayHash, old)
		rvReport(t, "RevokedWhileDisconnected", rvUntilDenied(t, start, away, both...))

		env.awaitNewListeners(t, old, 2)
		for i, s := range both { // the resync clears caches: let it finish before warming again
			s.awaitResyncs(t, resyncs[i]+1)
		}
		rvWarm(t, after, both...)
		start = time.Now()
		env.exec(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, afterHash)
		rvReport(t, "RevokedAfterReconnect", rvUntilDenied(t, start, after, both...))
	})

	t.Run("AdminStatusCodes", func(t *testing.T) { env.adminStatusCodes(t, a) })
}

// rvEnv is the shared world of one test: database, Redis prefix, upstream app, binary.
type rvEnv struct {
	bin      string
	db       *testenv.DB
	rdb      *redis.Client
	prefix   string
	upstream *httptest.Server
	wsClosed chan chan struct{} // the WebSocket handler sends one per upgraded connection
	sidecars []*rvSidecar       // the replicas started with an admin token, in order
}

func rvNewEnv(t *testing.T) *rvEnv {
	t.Helper()
	db := testenv.NewDB(t)
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("parse %s: %v", testenv.EnvRedisURL, err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	env := &rvEnv{
		bin: sidecarBinary(t), db: db, rdb: rdb, prefix: testenv.Prefix(t, rdb),
		wsClosed: make(chan chan struct{}, 4),
	}
	env.upstream = httptest.NewServer(http.HandlerFunc(env.app))
	t.Cleanup(env.upstream.Close)
	return env
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
		e.echoWebSocket(w, r)
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

func (e *rvEnv) echoWebSocket(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	closed := make(chan struct{})
	e.wsClosed <- closed
	defer close(closed)
	defer conn.Close()
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if rw.Flush() != nil {
		return
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // bounded even if nobody closes it
	buf := make([]byte, 512)
	for {
		n, err := rw.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // the sidecar closed its side
		}
	}
}

// rvStreamEvents sends an event every 50 ms for at most 30 s or until the request ends.
func rvStreamEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := range 600 {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

func (e *rvEnv) nextWebSocketClosed(t *testing.T) <-chan struct{} {
	t.Helper()
	select {
	case c := <-e.wsClosed:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the app never saw the WebSocket upgrade")
		return nil
	}
}

func (e *rvEnv) user(t *testing.T) string { return e.db.User(t, testenv.UserSpec{}) }

func (e *rvEnv) session(t *testing.T, user string) (token, hash string) {
	return e.db.Session(t, user, testenv.SessionSpec{})
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

// listenPIDs returns the backends of this database's LISTEN connections.
func (e *rvEnv) listenPIDs(t *testing.T) []int32 {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1 ORDER BY pid`, pgsession.ListenApplicationName)
	if err != nil {
		t.Fatalf("list LISTEN backends: %v", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatalf("list LISTEN backends: %v", err)
	}
	return pids
}

// awaitListeners waits until n LISTEN connections are up, so no notification can be missed.
func (e *rvEnv) awaitListeners(t *testing.T, n int) { e.awaitNewListeners(t, nil, n) }

func (e *rvEnv) awaitNewListeners(t *testing.T, old []int32, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fresh := 0
		for _, pid := range e.listenPIDs(t) {
			if !slices.Contains(old, pid) {
				fresh++
			}
		}
		if fresh == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d new LISTEN connections after 10s, want %d", fresh, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitSubscribers waits until n replicas listen for each other's evictions on Redis.
func (e *rvEnv) awaitSubscribers(t *testing.T, n int64) {
	t.Helper()
	channel := e.prefix + "evict"
	for range 500 {
		subs, err := e.rdb.PubSubNumSub(context.Background(), channel).Result()
		if err == nil && subs[channel] == n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d replicas subscribed to %s after 10s", n, channel)
}

// revokeAndTerminateListeners revokes the session in the transaction that terminates the
// LISTEN backends, so its notification is sent after they are gone.
func (e *rvEnv) revokeAndTerminateListeners(t *testing.T, hash string, pids []int32) {
	t.Helper()
	if len(pids) == 0 {
		t.Fatal("no LISTEN connection to terminate")
	}
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, e.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash); err != nil {
			return err
		}
		var killed int
		err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest($1::int[]) AS pid`, pids).Scan(&killed)
		if err == nil && killed != len(pids) {
			err = fmt.Errorf("terminated %d of %d LISTEN backends", killed, len(pids))
		}
		return err
	})
	if err != nil {
		t.Fatalf("revoke and terminate listeners: %v", err)
	}
}

// adminCase warms the tokens on both replicas, revokes them silently, checks that the cached
// copies still answer (so what follows is the admin call's doing), invalidates through s's
// admin API, and measures until both replicas deny every token.
func (e *rvEnv) adminCase(t *testing.T, name string, s *rvSidecar, tokens []string, revoke func(), body map[string]string, wantN int) {
	t.Helper()
	all := []*rvSidecar{e.sidecars[0], e.sidecars[1]}
	for _, tok := range tokens {
		rvWarm(t, tok, all...)
	}
	revoke()
	for _, tok := range tokens {
		for _, r := range all {
			if code := r.get(t, "/", tok); code != http.StatusOK {
				t.Fatalf("%s: silently revoked session answered %d before the admin call, want the cached 200", r.name, code)
			}
		}
	}
	raw, _ := json.Marshal(body)
	start := time.Now()
	code, resp := s.admin(t, rvAdminToken, string(raw))
	if code != http.StatusOK || resp != fmt.Sprintf(`{"invalidated":%d}`, wantN) {
		t.Fatalf("POST /admin/invalidate %s = %d %s, want 200 {\"invalidated\":%d}", raw, code, resp, wantN)
	}
	var worst time.Duration
	for _, tok := range tokens {
		worst = max(worst, rvUntilDenied(t, start, tok, all...))
	}
	rvReport(t, name, worst)
}

func (e *rvEnv) adminStatusCodes(t *testing.T, s *rvSidecar) {
	token, hash := e.session(t, e.user(t))
	rvWarm(t, token, s)
	cases := []struct {
		name, auth, body string
		want             int
		wantBody         string // exact body when set
	}{
		{"TokenHashNotCached", rvAdminToken, `{"tokenHash":"` + testenv.Hash("never-cached") + `"}`, 200, `{"invalidated":0}`},
		{"TokenCached", rvAdminToken, `{"tokenHash":"` + hash + `"}`, 200, `{"invalidated":1}`},
		{"UnknownUser", rvAdminToken, `{"userId":"00000000-0000-0000-0000-000000000000"}`, 200, `{"invalidated":0}`},
		{"WrongToken", "wrong-" + rvAdminToken, `{"token":"x"}`, 401, ""},
		{"NoAuthorization", "", `{"token":"x"}`, 401, ""},
		{"EmptyBody", rvAdminToken, ``, 400, ""},
		{"EmptyObject", rvAdminToken, `{}`, 400, ""},
		{"TwoFields", rvAdminToken, `{"token":"x","userId":"u"}`, 400, ""},
		{"MalformedHash", rvAdminToken, `{"tokenHash":"abc"}`, 400, ""},
		{"UpperCaseHash", rvAdminToken, `{"tokenHash":"` + strings.ToUpper(hash) + `"}`, 400, ""},
		{"UnknownField", rvAdminToken, `{"session":"x"}`, 400, ""},
		{"NotJSON", rvAdminToken, `token=x`, 400, ""},
		{"WrongType", rvAdminToken, `{"token":42}`, 400, ""},
		{"TrailingData", rvAdminToken, `{"token":"x"}{"userId":"u"}`, 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.admin(t, tc.auth, tc.body)
			if code != tc.want || (tc.wantBody != "" && body != tc.wantBody) {
				t.Fatalf("POST /admin/invalidate %s = %d %s, want %d %s", tc.body, code, body, tc.want, tc.wantBody)
			}
		})
	}
	t.Run("DisabledWithoutAdminToken", func(t *testing.T) {
		plain := e.start(t, "no-admin", false)
		if code, body := plain.admin(t, rvAdminToken, `{"token":"x"}`); code != http.StatusNotFound {
			t.Fatalf("POST /admin/invalidate without ADMIN_TOKEN = %d %s, want 404", code, body)
		}
	})
}

// rvSidecar is one running sidecar process.
type rvSidecar struct {
	name             string
	public, adminURL string // http://host:port
	client           *http.Client
	logs             *rvLog
}

// start runs a sidecar on the shared world; withAdmin makes it a replica under test (admin
// token, LISTEN), otherwise it runs without ADMIN_TOKEN.
func (e *rvEnv) start(t *testing.T, name string, withAdmin bool) *rvSidecar {
	t.Helper()
	env := map[string]string{
		"UPSTREAM_URL":       e.upstream.URL,
		"DATABASE_URL":       e.db.URL,
		"REDIS_URL":          testenv.RedisURL(t),
		"SESSION_KEY_PREFIX": e.prefix,
		"LOCAL_CACHE_TTL":    "10s",
		"DB_NOTIFY_CHANNEL":  e.db.Channel,
		"SHUTDOWN_TIMEOUT":   "1s",
		"LOG_LEVEL":          "info",
	}
	if withAdmin {
		env["ADMIN_TOKEN"] = rvAdminToken
	} else {
		env["DB_NOTIFY_CHANNEL"] = "none" // not a replica under test: keep the LISTEN count exact
	}
	var err error
	for range 3 { // a free port can be taken before the sidecar binds it
		var s *rvSidecar
		if s, err = rvStartSidecar(t, e.bin, name, env); err == nil {
			if withAdmin {
				e.sidecars = append(e.sidecars, s)
			}
			return s
		}
	}
	t.Fatalf("start sidecar %s: %v", name, err)
	return nil
}

func rvStartSidecar(t *testing.T, bin, name string, vars map[string]string) (*rvSidecar, error) {
	t.Helper()
	public := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	cmd := exec.Command(bin)
	cmd.Env = []string{"LISTEN_ADDR=" + public, "ADMIN_ADDR=" + admin}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &rvLog{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // stopped on purpose; the status says nothing
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s := &rvSidecar{
		name: name, public: "http://" + public, adminURL: "http://" + admin, logs: logs,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}},
	}
	if err := s.awaitReady(exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w; output:\n%s", err, logs)
	}
	t.Cleanup(func() {
		stop()
		s.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("sidecar %s output:\n%s", name, logs)
		}
	})
	return s, nil
}

func (s *rvSidecar) awaitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("sidecar exited during start")
		default:
		}
		resp, err := s.client.Get(s.adminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("sidecar not ready after 10s")
}

// get requests path with the token and returns the status.
func (s *rvSidecar) get(t *testing.T, path, token string) int {
	t.Helper()
	code, _ := s.getBody(t, path, token)
	return code
}

func (s *rvSidecar) getBody(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.public+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", s.name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: GET %s: read body: %v", s.name, path, err)
	}
	return resp.StatusCode, body
}

// admin posts body to /admin/invalidate with bearer auth (none when empty).
func (s *rvSidecar) admin(t *testing.T, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.adminURL+"/admin/invalidate", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s: POST /admin/invalidate: %v", s.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// resyncs counts the change feed's completed reconnects in the sidecar's log.
func (s *rvSidecar) resyncs() int {
	return strings.Count(s.logs.String(), "notification listener reconnected")
}

func (s *rvSidecar) awaitResyncs(t *testing.T, n int) {
	t.Helper()
	for range 500 {
		if s.resyncs() >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: the change feed did not resync within 10s", s.name)
}

// untilIdentity polls until the app receives want among the identity headers and returns
// how long after start that was; it fails past rvBudget.
func (s *rvSidecar) untilIdentity(t *testing.T, start time.Time, token string, want map[string]string) time.Duration {
	t.Helper()
	var got map[string]string
	for i := 0; i < 1000 && time.Since(start) < 3*rvBudget; i++ {
		code, body := s.getBody(t, "/", token)
		got = nil
		if code == http.StatusOK && json.Unmarshal(body, &got) == nil && rvContains(got, want) {
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

// openWebSocket upgrades /ws through the sidecar and checks that bytes are echoed.
func (s *rvSidecar) openWebSocket(t *testing.T, token string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.public, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer %s\r\n"+
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", token)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: read upgrade response: %v", s.name, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%s: upgrade answered %d, want 101", s.name, resp.StatusCode)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("%s: WebSocket echo = %q, %v", s.name, echo, err)
	}
	return conn, br
}

// openEventStream opens /sse through the sidecar and reads its first event.
func (s *rvSidecar) openEventStream(t *testing.T, token string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.public+"/sse", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("%s: GET /sse: %v", s.name, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s: GET /sse = %d %q", s.name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("%s: first event line = %q, %v", s.name, line, err)
	}
	return br
}

// rvUntilClosed reads the connection until the sidecar closes it and returns how long after
// start that was; it fails if that is rvStreamCut or more.
func rvUntilClosed(t *testing.T, start time.Time, conn net.Conn, br *bufio.Reader) time.Duration {
	t.Helper()
	_ = conn.SetDeadline(start.Add(rvStreamCut + time.Second))
	_, err := io.Copy(io.Discard, br)
	d := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("WebSocket still open %v after revocation", d)
	}
	if d >= rvStreamCut {
		t.Fatalf("WebSocket closed %v after revocation, want < %v", d, rvStreamCut)
	}
	return d
}

// rvUntilStreamEnds reads events until the stream ends; the body has no deadline of its
// own, so the reading is bounded by a timer that fails the test.
func rvUntilStreamEnds(t *testing.T, start time.Time, body *bufio.Reader) time.Duration {
	t.Helper()
	ended := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, body) // EOF or an abort: either ends the stream
		ended <- time.Since(start)
	}()
	select {
	case d := <-ended:
		if d >= rvStreamCut {
			t.Fatalf("event stream ended %v after revocation, want < %v", d, rvStreamCut)
		}
		return d
	case <-time.After(time.Until(start.Add(rvStreamCut + time.Second))):
		t.Fatalf("event stream still open %v after revocation", time.Since(start))
		return 0
	}
}

// rvWarm makes two authorised requests on each replica, so the session sits in Redis and in
// every replica's in-process cache.
func rvWarm(t *testing.T, token string, replicas ...*rvSidecar) {
	t.Helper()
	for range 2 {
		for _, s := range replicas {
			if code := s.get(t, "/", token); code != http.StatusOK {
				t.Fatalf("%s: warming request answered %d, want 200", s.name, code)
			}
		}
	}
}

// rvUntilDenied polls every replica until each answers 401 for the token and returns how
// long after start the last one started denying; it fails past rvBudget.
func rvUntilDenied(t *testing.T, start time.Time, token string, replicas ...*rvSidecar) time.Duration {
	t.Helper()
	denied := make([]time.Duration, len(replicas))
	for remaining := len(replicas); remaining > 0; {
		for i, s := range replicas {
			if denied[i] != 0 {
				continue
			}
			switch code := s.get(t, "/", token); code {
			case http.StatusUnauthorized:
				denied[i] = time.Since(start)
				remaining--
			case http.StatusOK:
			default:
				t.Fatalf("%s answered %d while waiting for the revocation", s.name, code)
			}
		}
		if remaining > 0 && time.Since(start) > 3*rvBudget {
			t.Fatalf("still accepted %v after revocation (denied after: %v)", time.Since(start), denied)
		}
		time.Sleep(rvPoll)
	}
	worst := slices.Max(denied)
	if worst >= rvBudget {
		t.Errorf("both replicas deny only %v after revocation (each: %v), want < %v", worst, denied, rvBudget)
	}
	return worst
}

func rvReport(t *testing.T, path string, d time.Duration) {
	t.Helper()
	t.Logf("measured: %s took effect on both replicas after %v", path, d.Round(100*time.Microsecond))
}

// rvLog collects a process's output for the failure report.
type rvLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *rvLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *rvLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
