package e2e

// Redis faults: killed, paused (hung), restarted, down at start.

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// recoverRedis checks the sidecar picks Redis up again by itself: while the breaker is not
// yet closed the health document says degraded, then requests close it, fill Redis again,
// and the document says healthy.
func (rig *faultRig) recoverRedis(t *testing.T, ts *tokenSource) {
	t.Helper()
	start := time.Now()
	awaitHealth(t, rig.sc, "degraded", http.StatusOK, 3*breakerOpenFor+2*time.Second)
	// A fresh session each time: one validated while the breaker was still open may sit in
	// the in-process cache and never ask Redis again.
	eventually(t, 3*breakerOpenFor+2*time.Second, "a new session is cached in Redis again", func() bool {
		token, hash, _ := rig.st.session(t, testenv.SessionSpec{})
		if r := rig.sc.Get(t, "/api/me", token); r.Status != http.StatusOK {
			t.Fatalf("status %d during recovery", r.Status)
		}
		return rig.rdb.Exists(t.Context(), "session:{"+hash+"}").Val() == 1
	})
	awaitHealth(t, rig.sc, "healthy", http.StatusOK, 3*time.Second)
	t.Logf("recovered without restart %v after Redis came back", time.Since(start).Round(time.Millisecond))
	durations(t, "after recovery", ts.probe(t, 2, allValid), fast+slack)
}

func TestFaultRedisKilled(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)
	awaitHealth(t, rig.sc, "healthy", http.StatusOK, 3*time.Second)
	durations(t, "baseline", ts.probe(t, 1, allValid), fast+slack)

	rig.redis.Kill()
	outs := ts.probe(t, 5, allValid)
	// go-redis retries a refused connection until REDIS_OP_TIMEOUT, so the first
	// BREAKER_FAILURES requests each cost that once; then the breaker is open.
	durations(t, "redis killed", outs, opTimeout+slack)
	awaitHealth(t, rig.sc, "unhealthy", http.StatusServiceUnavailable, 3*time.Second)

	rig.redis.Restart()
	rig.recoverRedis(t, ts)
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
	slow := durations(t, "redis paused", outs, opTimeout+slack)
	if outs[0].duration < opTimeout*9/10 {
		t.Errorf("first request under a hung Redis took %v: it did not wait for Redis at all", outs[0].duration)
	}
	// Each of the first BREAKER_FAILURES requests waits out REDIS_OP_TIMEOUT once; then the
	// breaker is open and only its probe, once per BREAKER_OPEN_FOR, waits again.
	if maxSlow := breakerFailures + 1 + int(elapsed/breakerOpenFor); slow > maxSlow {
		t.Errorf("%d requests waited on the hung Redis, want ≤ %d", slow, maxSlow)
	}
	awaitHealth(t, rig.sc, "unhealthy", http.StatusServiceUnavailable, 5*time.Second)

	rig.redis.Resume()
	rig.recoverRedis(t, ts)
}

func TestFaultRedisRestartedLosesItsData(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)
	rig.redis.Restart() // a fresh, empty server on the same port: pooled connections are dead
	outs := ts.probe(t, 3, allValid)
	durations(t, "redis restarted", outs, opTimeout+slack)
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

	ts := &tokenSource{rig: rig}
	ts.cachedToken, _, ts.cachedUserID = st.session(t, testenv.SessionSpec{})
	durations(t, "started without redis", ts.probe(t, 3, allValid), opTimeout+slack)
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
// SHUTDOWN_TIMEOUT and still exits 0.
func TestFaultShutdownKeepsWebSocketsUntilTheDrainTime(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, echoWebSocket(nil))
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"SHUTDOWN_TIMEOUT": "2s"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	conn, br, _ := dialWebSocket(t, sc, token, http.Header{})
	wsEcho(t, conn, br, "before")

	start := time.Now()
	sc.Terminate(t)
	time.Sleep(500 * time.Millisecond)
	wsEcho(t, conn, br, "while draining")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("the WebSocket outlived the drain time")
	}
	if took := time.Since(start); took < 1500*time.Millisecond || took > 4*time.Second {
		t.Fatalf("WebSocket closed %v after SIGTERM, want about SHUTDOWN_TIMEOUT (2s)", took)
	}
	if code := sc.Stop(t); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, sc.Stderr())
	}
}
