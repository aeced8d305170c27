package e2e

// The revocation test's long-lived cases: open WebSockets and event streams end within
// rvStreamCut of their session's eviction (whatever its source, see
// TestLongLivedConnectionsCloseOnEveryEviction) or expiry, and a revocation made while the
// change feed is disconnected still reaches both replicas through the resync.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

func (e *rvEnv) webSocketClosedOnRevocation(t *testing.T, s *rvReplica) {
	token, hash, _ := e.session(t, testenv.SessionSpec{})
	conn, br, _ := dialWebSocket(t, s.Sidecar, token, nil)
	wsEcho(t, conn, br, "ping")
	upstreamClosed := e.nextWebSocketClosed(t)
	start := time.Now()
	e.db.Revoke(t, hash)
	cut := e.closeBound(t)
	d := rvUntilClosed(t, start, conn, br, cut)
	select {
	case <-upstreamClosed:
	case <-time.After(time.Until(start.Add(cut))):
		t.Fatalf("the app's side of the WebSocket is still open %v after revocation", cut)
	}
	t.Logf("measured: WebSocket closed %v after revocation (bound %v)", d, cut)
}

func (e *rvEnv) eventStreamEndsOnRevocation(t *testing.T, s *rvReplica) {
	token, hash, _ := e.session(t, testenv.SessionSpec{})
	body := s.openEventStream(t, token)
	start := time.Now()
	e.db.Revoke(t, hash)
	cut := e.closeBound(t)
	d := rvUntilStreamEnds(t, start, body, cut)
	t.Logf("measured: event stream ended %v after revocation (bound %v)", d, cut)
}

func (e *rvEnv) eventStreamEndsAtExpiry(t *testing.T, s *rvReplica) {
	token, hash, _ := e.session(t, testenv.SessionSpec{ExpiresIn: 1500 * time.Millisecond})
	var expires time.Time
	if err := e.db.Pool.QueryRow(context.Background(),
		`SELECT expires_at FROM platform.user_sessions WHERE token_hash = $1`, hash).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	body := s.openEventStream(t, token)
	cut := e.closeBound(t)
	// No event announces an expiry: the watch's one timer, at expires_at, must notice it.
	d := rvUntilStreamEnds(t, expires, body, cut)
	t.Logf("measured: event stream ended %v after its session expired (bound %v)", d, cut)
}

// closeBound is rvStreamCut plus what this machine adds now (testenv.Slack, calibrated
// once per environment on a refused request): closing waits on no timeout of the product.
func (e *rvEnv) closeBound(t *testing.T) time.Duration {
	t.Helper()
	if e.cut == 0 {
		s := e.replicas[0]
		e.cut = rvStreamCut + testenv.Slack(t, func() { s.Get(t, "/", "") })
	}
	return e.cut
}

// listenConnectionTerminated revokes a session while both feed connections (the holder's and
// the standby's) are gone: the revocation commits after the backends were terminated, so no
// notification carries it; only the takeover's resync does. No notification means no
// one-second promise: the SPEC's bound is the takeover's, 3 s, with nothing lost (measured
// idle: about 230 ms; with two busy-loop burners: 1.25 s, most of it the reconnect).
func (e *rvEnv) listenConnectionTerminated(t *testing.T) {
	away, awayHash, _ := e.session(t, testenv.SessionSpec{})
	after, afterHash, _ := e.session(t, testenv.SessionSpec{})
	e.warm(t, away)
	e.warm(t, after)
	old := e.listenPIDs(t)
	resyncs := make([]int, len(e.replicas))
	for i, s := range e.replicas {
		resyncs[i] = s.resyncs()
	}
	start := time.Now()
	e.revokeAndTerminateListeners(t, awayHash, old)
	rvReport(t, "RevokedWhileDisconnected", e.untilDeniedWithin(t, start, away, rvResync))

	e.awaitListeners(t, old, 2)
	// The replica that holds the feed now resynced (the other waits as the standby); the
	// resync evicts: let it finish before warming again.
	eventually(t, 10*time.Second, "the change feed resyncs", func() bool {
		for i, s := range e.replicas {
			if s.resyncs() > resyncs[i] {
				return true
			}
		}
		return false
	})
	e.warm(t, after)
	start = time.Now()
	e.db.Revoke(t, afterHash)
	rvReport(t, "RevokedAfterReconnect", e.untilDenied(t, start, after))
}

// resyncs counts the change feed's completed (re)connects, with their resync, in the
// sidecar's log.
func (s *rvReplica) resyncs() int {
	return strings.Count(s.Stderr(), "change feed listening")
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

// awaitListeners waits until n LISTEN connections other than old are up, so no
// notification can be missed.
func (e *rvEnv) awaitListeners(t *testing.T, old []int32, n int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%d new LISTEN connections", n), func() bool {
		fresh := 0
		for _, pid := range e.listenPIDs(t) {
			if !slices.Contains(old, pid) {
				fresh++
			}
		}
		return fresh == n
	})
}

// awaitSubscribers waits until n replicas listen for each other's evictions on Redis.
func (e *rvEnv) awaitSubscribers(t *testing.T, n int64) {
	t.Helper()
	channel := e.prefix + "evict"
	eventually(t, 10*time.Second, fmt.Sprintf("%d replicas subscribed to %s", n, channel), func() bool {
		subs, err := e.rdb.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && subs[channel] == n
	})
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

// openEventStream opens /sse through the sidecar and reads its first event.
func (s *rvReplica) openEventStream(t *testing.T, token string) *bufio.Reader {
	t.Helper()
	resp, err := s.Client.Do(newRequest(t, http.MethodGet, s.URL+"/sse", token, nil))
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
// start that was; it fails if that is cut or more.
func rvUntilClosed(t *testing.T, start time.Time, conn net.Conn, br *bufio.Reader, cut time.Duration) time.Duration {
	t.Helper()
	d := <-wsClosedAfter(start, conn, br, cut)
	switch {
	case d < 0:
		t.Fatalf("WebSocket still open %v after revocation", time.Since(start))
	case d >= cut:
		t.Fatalf("WebSocket closed %v after revocation, want < %v", d, cut)
	}
	return d
}

// wsClosedAfter reads the connection until the sidecar closes it, under a deadline of
// cut plus a second from start, and sends how long after start it closed, or -1 if the
// deadline passed first.
func wsClosedAfter(start time.Time, conn net.Conn, br *bufio.Reader, cut time.Duration) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	_ = conn.SetDeadline(start.Add(cut + time.Second))
	go func() {
		_, err := io.Copy(io.Discard, br)
		d := time.Since(start)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			d = -1
		}
		out <- d
	}()
	return out
}

// streamEndedAfter reads events until the stream ends, and sends how long after start that
// was; the body has no deadline of its own: the reader waits on it, bounded by its caller.
func streamEndedAfter(start time.Time, body *bufio.Reader) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, body) // EOF or an abort: either ends the stream
		out <- time.Since(start)
	}()
	return out
}

// rvUntilStreamEnds reads events until the stream ends, bounded by a timer that fails the
// test, and returns how long after start it ended; it fails if that is cut or more.
func rvUntilStreamEnds(t *testing.T, start time.Time, body *bufio.Reader, cut time.Duration) time.Duration {
	t.Helper()
	select {
	case d := <-streamEndedAfter(start, body):
		if d >= cut {
			t.Fatalf("event stream ended %v after revocation, want < %v", d, cut)
		}
		return d
	case <-time.After(time.Until(start.Add(cut + time.Second))):
		t.Fatalf("event stream still open %v after revocation", time.Since(start))
		return 0
	}
}
