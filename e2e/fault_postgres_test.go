package e2e

// Postgres faults: every connection cut, every connection stalled, both stores down, and
// Postgres down at start.

import (
	"net/http"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// awaitReady polls /readyz until it answers code.
func awaitReady(t *testing.T, sc *Sidecar, code int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, within, "/readyz "+http.StatusText(code), func() bool {
		return sc.Admin(t, "/readyz").Status == code
	})
	return time.Since(start)
}

// assertUnavailableCounted checks docs/deploying.md's metric cell for Postgres down: the
// unavailable validations rose by exactly the 503s the requests got (each caller counts
// once, also when callers share a lookup).
func (rig *faultRig) assertUnavailableCounted(t *testing.T, before float64, outs []outcome) {
	t.Helper()
	want := 0
	for _, o := range outs {
		if o.status == http.StatusServiceUnavailable {
			want++
		}
	}
	if rose := value(t, rig.sc, seriesUnavailable) - before; rose != float64(want) || want == 0 {
		t.Errorf("%s rose by %v, want %d (the 503s answered)", seriesUnavailable, rose, want)
	}
}

func TestFaultPostgresCut(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)
	known := "known-invalid-token"
	assertUnauthorized(t, rig.sc.Get(t, "/api/me", known)) // leaves a negative entry
	awaitReady(t, rig.sc, http.StatusOK, 3*time.Second)

	unavailableBefore := value(t, rig.sc, seriesUnavailable)
	rig.pg.Cut()
	outs := ts.probe(t, 3, undecidable)
	rig.durations(t, "postgres cut", outs, dbTimeout)
	rig.assertUnavailableCounted(t, unavailableBefore, outs)
	// What a cache knows stays decidable: the negative entry still refuses.
	assertUnauthorized(t, rig.sc.Get(t, "/api/me", known))
	awaitReady(t, rig.sc, http.StatusServiceUnavailable, 3*time.Second)
	if s, code := healthStatus(t, rig.sc); s != "healthy" || code != http.StatusOK {
		t.Errorf("health document %s/%d while only Postgres is down, want healthy/200", s, code)
	}

	rig.pg.Restore()
	t.Logf("/readyz 200 again %v after Postgres came back", awaitReady(t, rig.sc, http.StatusOK, 5*time.Second).Round(time.Millisecond))
	rig.durations(t, "after restore", ts.probe(t, 2, allValid), noWait)
}

func TestFaultPostgresStalled(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, nil)
	ts := rig.newTokens(t)

	unavailableBefore := value(t, rig.sc, seriesUnavailable)
	rig.pg.Pause() // connections stay open, nothing answers: each lookup runs into DB_QUERY_TIMEOUT
	outs := ts.probe(t, 2, undecidable)
	rig.durations(t, "postgres stalled", outs, dbTimeout)
	rig.assertUnavailableCounted(t, unavailableBefore, outs)
	for _, o := range outs {
		if o.class == uncached && o.duration < dbTimeout*9/10 {
			t.Errorf("an undecidable lookup answered after %v, before DB_QUERY_TIMEOUT", o.duration)
		}
	}
	awaitReady(t, rig.sc, http.StatusServiceUnavailable, 5*time.Second)

	rig.pg.Resume()
	t.Logf("/readyz 200 again %v after Postgres resumed", awaitReady(t, rig.sc, http.StatusOK, 5*time.Second).Round(time.Millisecond))
	rig.durations(t, "after resume", ts.probe(t, 2, allValid), noWait)
}

func TestFaultBothStoresDownServesWhatTheProcessHolds(t *testing.T) {
	t.Parallel()
	rig := newFaultRig(t, map[string]string{"LOCAL_CACHE_TTL": "1m"})
	ts := rig.newTokens(t)
	rig.redis.Kill()
	// Redis gone, the replica listens to Postgres alone, and drops its in-process copies
	// once when it starts to (it may have missed an event in the switch); the next request
	// caches the session in process again.
	awaitFeedRole(t, rig.sc, seriesFeedSolo, 10*time.Second)
	if r := rig.sc.Get(t, "/api/me", ts.cachedToken); r.Status != http.StatusOK {
		t.Fatalf("caching the session in process again: %d %s", r.Status, r.Body)
	}
	rig.pg.Cut()
	// The in-process copy answers; nothing else can be decided, and nobody gets a 401.
	rig.durations(t, "redis and postgres down", ts.probe(t, 3, undecidable), opTimeout)
	rig.assertNoRedisWaitWhileOpen(t)
	awaitHealth(t, rig.sc, "unhealthy", http.StatusServiceUnavailable, 3*time.Second)
	awaitReady(t, rig.sc, http.StatusServiceUnavailable, 3*time.Second)

	rig.pg.Restore()
	rig.redis.Restart()
	awaitReady(t, rig.sc, http.StatusOK, 5*time.Second)
	rig.recoverRedis(t, ts)
}

func TestFaultStartWithPostgresDown(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	fwd := testenv.NewForwarder(t, hostOf(t, st.db.URL))
	fwd.Cut()
	up := NewUpstream(t, echoUser)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"DATABASE_URL": st.db.URLVia(fwd.Addr())})) // waits for /healthz 200
	token, _, userID := st.session(t, testenv.SessionSpec{})
	awaitReady(t, sc, http.StatusServiceUnavailable, 3*time.Second)
	assertDecision(t, uncached, sc.Get(t, "/api/me", token), http.StatusServiceUnavailable, "")
	assertDecision(t, invalid, sc.Get(t, "/api/me", "unknown-token"), http.StatusServiceUnavailable, "")

	fwd.Restore()
	t.Logf("/readyz 200 %v after Postgres appeared", awaitReady(t, sc, http.StatusOK, 5*time.Second).Round(time.Millisecond))
	assertDecision(t, uncached, sc.Get(t, "/api/me", token), http.StatusOK, userID)
	assertDecision(t, invalid, sc.Get(t, "/api/me", "unknown-token"), http.StatusUnauthorized, "")
}
