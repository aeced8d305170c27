package e2e

// Redis faults: killed, paused (hung), restarted, down at start.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// recoverRedis checks the sidecar picks Redis up again by itself: once Redis answers, the
// health document is 200 again — degraded while the breaker is not yet closed (a retried
// eviction in the background may close it before anyone looks) — then requests fill Redis
// again, and the document says healthy.
func (rig *faultRig) recoverRedis(t *testing.T, ts *tokenSource) {
	t.Helper()
	start := time.Now()
	eventually(t, 3*breakerOpenFor+2*time.Second, "health status degraded or healthy", func() bool {
		s, c := healthStatus(t, rig.sc)
		return (s == "degraded" || s == "healthy") && c == http.StatusOK
	})
	// A fresh session each time: one validated while the breaker was still open may sit in
	// the in-process cache and never ask Redis again.
	eventually(t, 3*breakerOpenFor+2*time.Second, "a new session is cached in Redis again", func() bool {
		token, hash, _ := rig.st.session(t, testenv.SessionSpec{})
		if r := rig.sc.Get(t, "/api/me", token); r.Status != http.StatusOK {
			t.Fatalf("status %d during recovery", r.Status)
		}
		return rig.rdb.Exists(t.Context(), "session:{"+hash+"}").Val() == 1
	})
	// Polled, not timed: "healthy" needs one probe with a ping under 100 ms, and a busy
	// machine may miss that on a probe or two.
	awaitHealth(t, rig.sc, "healthy", http.StatusOK, 10*time.Second)
	t.Logf("measured: recovered without restart %v after Redis came back", time.Since(start).Round(time.Millisecond))
	rig.durations(t, "after recovery", ts.probe(t, 2, allValid), noWait)
	rig.assertNoRedisWaitWhileOpen(t)
}

func TestFaultRedisKilled(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)
	awaitHealth(t, rig.sc, "healthy", http.StatusOK, 3*time.Second)
	rig.durations(t, "baseline", ts.probe(t, 1, allValid), noWait)
	awaitFeedRole(t, rig.sc, seriesFeedHolder, 10*time.Second) // one replica: it holds the feed
	errorsBefore := value(t, rig.sc, seriesRedisErrors)

	rig.redis.Kill()
	outs := ts.probe(t, 5, allValid)
	// go-redis retries a refused connection until REDIS_OP_TIMEOUT, so the first
	// BREAKER_FAILURES requests each cost that once; then the breaker is open.
	rig.durations(t, "redis killed", outs, opTimeout)
	waited := rig.assertNoRedisWaitWhileOpen(t)
	if waited < breakerFailures {
		t.Errorf("%d Redis failures logged, want at least the %d that open the breaker", waited, breakerFailures)
	}
	// docs/deploying.md's metric and /readyz cells: the error counter rose by at least every
	// failure the log shows (the breaker's refusals count too, unlogged), the breaker gauge
	// reads open, and readiness ignores Redis.
	if rose := value(t, rig.sc, seriesRedisErrors) - errorsBefore; rose < float64(waited) {
		t.Errorf("%s rose by %v while Redis was down, want at least the %d failures logged", seriesRedisErrors, rose, waited)
	}
	rig.awaitBreakerOpen(t, ts)
	assertReady(t, rig.sc, http.StatusOK, "with Redis killed")
	awaitHealth(t, rig.sc, "unhealthy", http.StatusServiceUnavailable, 3*time.Second)
	var doc struct{ Redis struct{ Connected *bool } }
	if err := json.Unmarshal([]byte(rig.sc.Get(t, "/api/health/redis", "").Body), &doc); err != nil ||
		doc.Redis.Connected == nil || *doc.Redis.Connected {
		t.Errorf("health document redis.connected %v (%v) with Redis killed, want false", doc.Redis.Connected, err)
	}
	// Pub/sub is down with it: the replica listens to Postgres itself.
	awaitFeedRole(t, rig.sc, seriesFeedSolo, 10*time.Second)
	assertReady(t, rig.sc, http.StatusOK, "with Redis killed")

	rig.redis.Restart()
	rig.recoverRedis(t, ts)
	// Its subscription back, the replica rejoins the election (and, alone, holds the feed).
	awaitFeedRole(t, rig.sc, seriesFeedHolder, 10*time.Second)
	if v := value(t, rig.sc, seriesBreakerState); v != 0 {
		t.Errorf("%s %v once Redis is healthy again, want 0 (closed)", seriesBreakerState, v)
	}
}

func TestFaultRedisPaused(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)
	awaitHealth(t, rig.sc, "healthy", http.StatusOK, 3*time.Second)

	rig.redis.Pause()
	start := time.Now()
	outs := ts.probe(t, 5, allValid)
	elapsed := time.Since(start)
	rig.durations(t, "redis paused", outs, opTimeout)
	if outs[0].duration < opTimeout*9/10 {
		t.Errorf("first request under a hung Redis took %v: it did not wait for Redis at all", outs[0].duration)
	}
	// Each of the first BREAKER_FAILURES requests waits out REDIS_OP_TIMEOUT once; then the
	// breaker is open and only its probe, once per BREAKER_OPEN_FOR, waits again. Counted
	// from the sidecar's log, in order, not from the clock.
	waited := rig.assertNoRedisWaitWhileOpen(t)
	if maxWaits := breakerFailures + 1 + int(elapsed/breakerOpenFor); waited < breakerFailures || waited > maxWaits {
		t.Errorf("%d requests waited on the hung Redis, want %d to %d", waited, breakerFailures, maxWaits)
	}
	awaitHealth(t, rig.sc, "unhealthy", http.StatusServiceUnavailable, 5*time.Second)
	rig.awaitBreakerOpen(t, ts)
	assertReady(t, rig.sc, http.StatusOK, "with Redis hung")

	rig.redis.Resume()
	rig.recoverRedis(t, ts)
}

func TestFaultRedisRestartedLosesItsData(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)
	rig.redis.Restart() // a fresh, empty server on the same port: pooled connections are dead
	outs := ts.probe(t, 3, allValid)
	rig.durations(t, "redis restarted", outs, opTimeout)
	rig.assertNoRedisWaitWhileOpen(t)
	token := ts.cachedToken
	eventually(t, 3*breakerOpenFor+2*time.Second, "the cached session is cached again", func() bool {
		if r := rig.sc.Get(t, "/api/me", token); r.Status != http.StatusOK {
			t.Fatalf("status %d", r.Status)
		}
		return rig.rdb.Exists(t.Context(), "session:{"+testenv.Hash(token)+"}").Val() == 1
	})
	awaitHealth(t, rig.sc, "healthy", http.StatusOK, 3*breakerOpenFor+2*time.Second)
}

func TestFaultStartWithRedisDown(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	srv := testenv.StartRedis(t)
	srv.Kill()
	rig := &faultRig{st: st, redis: srv, rdb: privateClient(t, srv), pg: testenv.NewForwarder(t, hostOf(t, st.db.URL))}
	rig.up = NewUpstream(t, echoUser)
	rig.sc = StartSidecar(t, faultEnv(st, srv.URL(), st.db.URL, rig.up.URL, nil))
	rig.calibrate(t)

	ts := &tokenSource{rig: rig}
	ts.cachedToken, _, ts.cachedUserID = st.session(t, testenv.SessionSpec{})
	rig.durations(t, "started without redis", ts.probe(t, 3, allValid), opTimeout)
	rig.assertNoRedisWaitWhileOpen(t)
	awaitHealth(t, rig.sc, "unhealthy", http.StatusServiceUnavailable, 3*time.Second)

	srv.Restart()
	rig.recoverRedis(t, ts)
}

func TestFaultShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	started := make(chan struct{}, 1)
	up := NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(time.Second)
		_, _ = w.Write([]byte("done"))
	})
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"SHUTDOWN_TIMEOUT": "10s"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	type result struct {
		r   *http.Response
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := sc.Client.Do(newRequest(t, http.MethodGet, sc.URL+"/api/slow", token, nil))
		done <- result{resp, err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the app")
	}
	sc.Terminate(t)
	// New connections are refused at once while the in-flight request drains.
	eventually(t, 2*time.Second, "listener closed after SIGTERM", func() bool {
		resp, err := http.Get(sc.URL + "/api/other")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	res := <-done
	if res.err != nil {
		t.Fatalf("in-flight request failed during shutdown: %v", res.err)
	}
	body, err := io.ReadAll(res.r.Body)
	res.r.Body.Close()
	if err != nil {
		t.Fatalf("reading the drained answer: %v", err)
	}
	if res.r.StatusCode != http.StatusOK || string(body) != "done" {
		t.Fatalf("in-flight request: %d %q", res.r.StatusCode, body)
	}
	if code := sc.Stop(t); code != 0 {
		t.Fatalf("exit code %d after draining; stderr:\n%s", code, sc.Stderr())
	}
}

// TestFaultShutdownKeepsWebSocketsUntilTheDrainTime: http.Server.Shutdown does not track
// upgraded connections, so the sidecar waits for them itself, then closes them at
// SHUTDOWN_TIMEOUT and still exits 0. Checked by order, not by a window on the clock: the
// WebSocket still echoes after SIGTERM, is not closed before SHUTDOWN_TIMEOUT has passed
// (a lower bound, which a busy machine only makes easier), is closed (a read bounded only
// against a hang) and the process exits 0 by itself (Stop's 30 s bound).
func TestFaultShutdownKeepsWebSocketsUntilTheDrainTime(t *testing.T) {
	t.Parallel()
	const drain = 2 * time.Second
	st := newStack(t)
	up := NewUpstream(t, echoWebSocket(nil))
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"SHUTDOWN_TIMEOUT": drain.String()}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	conn, br, _ := dialWebSocket(t, sc, token, http.Header{})
	wsEcho(t, conn, br, "before")

	start := time.Now()
	sc.Terminate(t)
	wsEcho(t, conn, br, "while draining")
	_ = conn.SetReadDeadline(time.Now().Add(drain + 30*time.Second)) // a hang, not a timing, bound
	_, err := io.Copy(io.Discard, br)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the WebSocket is still open %v after SIGTERM", took)
	}
	if took < drain {
		t.Errorf("WebSocket closed %v after SIGTERM, before SHUTDOWN_TIMEOUT (%v)", took, drain)
	}
	t.Logf("measured: WebSocket closed %v after SIGTERM (SHUTDOWN_TIMEOUT %v)", took.Round(time.Millisecond), drain)
	if code := sc.Stop(t); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, sc.Stderr())
	}
}

// TestFaultShutdownASecondSIGTERMDoesNotCutTheDrain: the signal handler stays registered
// for the whole drain, so a second SIGTERM (an impatient supervisor, `docker stop` sent
// twice) is ignored: the in-flight request still gets its whole answer, after the second
// signal, and the process exits 0. Checked by order: the app answers only once the test
// released it, after the second signal, so a process that died of that signal fails the
// request; a busy machine can only delay the death, never fake the answer.
func TestFaultShutdownASecondSIGTERMDoesNotCutTheDrain(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	started, release := make(chan struct{}, 1), make(chan struct{})
	up := NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-time.After(20 * time.Second): // a hang bound only
		}
		_, _ = w.Write([]byte("done"))
	})
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"SHUTDOWN_TIMEOUT": "20s"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	type result struct {
		r   Response
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := sc.Client.Do(newRequest(t, http.MethodGet, sc.URL+"/api/slow", token, nil))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- result{Response{Status: resp.StatusCode, Body: string(body)}, err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the app")
	}
	sc.Terminate(t)
	eventually(t, 5*time.Second, "listener closed after the first SIGTERM: the drain runs", func() bool {
		resp, err := http.Get(sc.URL + "/api/other")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	sc.Terminate(t)
	// Time for the second signal to land; a process it killed is gone by then, or dies
	// before the answer below can reach the client.
	select {
	case <-sc.Exited():
		t.Fatalf("the process exited on the second SIGTERM, in the middle of the drain; stderr:\n%s", sc.Stderr())
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	res := <-done
	if res.err != nil || res.r.Status != http.StatusOK || res.r.Body != "done" {
		t.Fatalf("in-flight request after the second SIGTERM: %d %q, %v; want 200 \"done\"", res.r.Status, res.r.Body, res.err)
	}
	if code := sc.Stop(t); code != 0 {
		t.Fatalf("exit code %d after two SIGTERMs and a drain; stderr:\n%s", code, sc.Stderr())
	}
}
