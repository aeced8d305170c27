package e2e

// Failover tests (issue 11): the built binary on a Sentinel-managed Redis and on a Redis
// Cluster, a master killed with SIGKILL in the middle of a concurrent load. Every answer is
// counted: no wrong decision, no 401 for a valid session, no 5xx while Postgres is up, every
// request bounded; cache writes resume on the new master and the health document is healthy
// again, without a restart.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

const (
	failoverWorkers = 16
	writesResumeBy  = 10 * time.Second // after the failover: the SPEC's bound
	healthyBy       = 15 * time.Second // after the failover: the SPEC's bound
)

// failoverLoad sends requests from failoverWorkers clients until stopped, counting every
// decision and the slowest request.
type failoverLoad struct {
	ta      *tally
	sent    atomic.Int64
	slowest atomic.Int64 // nanoseconds
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startFailoverLoad(t *testing.T, sc *Sidecar, tokens []loadToken) *failoverLoad {
	t.Helper()
	l := &failoverLoad{ta: newTally(), stop: make(chan struct{})}
	for w := range failoverWorkers {
		l.wg.Go(func() {
			for i := w; ; i += failoverWorkers {
				select {
				case <-l.stop:
					return
				default:
				}
				tok := tokens[i%len(tokens)]
				start := time.Now()
				resp, err := sc.Client.Do(newRequest(t, http.MethodGet, sc.URL+"/api/load", tok.token, nil))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := int64(time.Since(start))
				for old := l.slowest.Load(); d > old && !l.slowest.CompareAndSwap(old, d); old = l.slowest.Load() {
				}
				l.sent.Add(1)
				if err != nil {
					l.ta.record(tok, 0, "", err)
					continue
				}
				l.ta.record(tok, resp.StatusCode, resp.Header.Get("X-Seen-User"), nil)
			}
		})
	}
	return l
}

// finish stops the load and fails the test on any wrong answer, 5xx or transport failure,
// or a request slower than bound.
func (l *failoverLoad) finish(t *testing.T, bound time.Duration) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	slowest := time.Duration(l.slowest.Load())
	t.Logf("load: %d answers, correct by class %v, slowest %v", l.sent.Load(), l.ta.ok, slowest.Round(time.Millisecond))
	if len(l.ta.wrong)+len(l.ta.serverErr)+len(l.ta.failures) > 0 {
		t.Errorf("wrong %v, 5xx %v, transport failures %v; first: %s", l.ta.wrong, l.ta.serverErr, l.ta.failures, l.ta.firstProblem)
	}
	if slowest > bound {
		t.Errorf("slowest request %v, want at most %v", slowest, bound)
	}
}

// requestBound is how long one request may take while a master fails: each Redis operation
// is bounded by REDIS_OP_TIMEOUT (a lookup makes at most three), and Postgres answers the
// rest; the margin is for a loaded two-core machine.
const requestBound = 2 * time.Second

// awaitHealthy polls the health document until it is healthy in mode, failing after within.
func awaitHealthy(t *testing.T, sc *Sidecar, mode string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last healthDocument
	for time.Since(start) < within {
		last = healthDoc(t, sc)
		if last.Status == "healthy" && last.Redis.Mode == mode {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("health not healthy in mode %s within %v: %+v", mode, within, last)
	return 0
}

func TestSentinelFailoverUnderLoad(t *testing.T) {
	st := newStack(t)
	set := testenv.StartRedisSentinels(t)
	up := NewUpstream(t, echoUser)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{
		"REDIS_URL": "", "REDIS_SENTINEL_ADDRS": strings.Join(set.Addrs(), ","),
		"REDIS_SENTINEL_MASTER": testenv.SentinelMaster,
		"LOCAL_CACHE_TTL":       "0", // every request asks Redis, the layer under test
		"INVALID_TOKEN_RATE":    "0", // one loopback client floods invalid tokens by design
	}))
	tokens := seedLoadTokens(t, st, 5)
	awaitHealthy(t, sc, "sentinel", 10*time.Second)
	load := startFailoverLoad(t, sc, tokens)
	time.Sleep(2 * time.Second)

	replica := set.Replica.Addr()
	killed := time.Now()
	set.Master.Kill()
	set.AwaitMaster(replica, 30*time.Second)
	failedOver := time.Now()
	t.Logf("sentinels promoted %s %v after the kill", replica, failedOver.Sub(killed).Round(time.Millisecond))

	newMaster := redis.NewClient(&redis.Options{Addr: replica})
	t.Cleanup(func() { newMaster.Close() })
	resumed := awaitWritesResume(t, sc, st, func(key string) bool {
		return newMaster.Exists(context.Background(), key).Val() == 1
	}, failedOver)
	healthy := awaitHealthy(t, sc, "sentinel", healthyBy)
	t.Logf("measured: writes resumed %v after the failover; health healthy %v after the kill (%v polling)",
		resumed.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), healthy.Round(time.Millisecond))
	time.Sleep(time.Second) // the load runs on after recovery, still counted
	load.finish(t, requestBound)
}

func TestClusterFailoverUnderLoad(t *testing.T) {
	st := newStack(t)
	cluster := testenv.StartRedisCluster(t)
	up := NewUpstream(t, echoUser)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{
		"REDIS_URL": "", "REDIS_CLUSTER_ADDRS": strings.Join(cluster.Addrs(), ","),
		"LOCAL_CACHE_TTL": "0", "INVALID_TOKEN_RATE": "0",
	}))
	tokens := seedLoadTokens(t, st, 5)
	awaitHealthy(t, sc, "cluster", 10*time.Second)
	rdb := cluster.Client(t, nil)
	load := startFailoverLoad(t, sc, tokens)
	time.Sleep(2 * time.Second)

	token, hash, _ := st.session(t, testenv.SessionSpec{})
	victim := cluster.MasterOf(st.sessionKey(hash))
	killed := time.Now()
	victim.Kill()
	cluster.AwaitOK(30 * time.Second)
	failedOver := time.Now()
	t.Logf("cluster ok again %v after the kill of %s", failedOver.Sub(killed).Round(time.Millisecond), victim.Addr())

	// The session's slot was the killed master's: its write lands on the promoted replica.
	key := st.sessionKey(hash)
	if err := rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
	var resumed time.Duration
	for resumed == 0 {
		if r := sc.Get(t, "/api/load", token); r.Status != http.StatusOK {
			t.Fatalf("valid session during the failover: %d", r.Status)
		}
		switch {
		case rdb.Exists(context.Background(), key).Val() == 1:
			resumed = time.Since(failedOver)
		case time.Since(failedOver) > writesResumeBy:
			t.Fatalf("no cache write reached the failed shard's new master within %v of the failover", writesResumeBy)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	awaitHealthy(t, sc, "cluster", healthyBy)
	t.Logf("measured: writes to the failed shard resumed %v after the failover; healthy %v after the kill",
		resumed.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	time.Sleep(time.Second)
	load.finish(t, requestBound)
}

// awaitWritesResume asks the sidecar for fresh sessions until one lands where landed says,
// failing after writesResumeBy; it returns how long after since that was.
func awaitWritesResume(t *testing.T, sc *Sidecar, st *stack, landed func(key string) bool, since time.Time) time.Duration {
	t.Helper()
	for time.Since(since) < writesResumeBy {
		token, hash, _ := st.session(t, testenv.SessionSpec{})
		if r := sc.Get(t, "/api/load", token); r.Status != http.StatusOK {
			t.Fatalf("fresh session: %d", r.Status)
		}
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if landed(st.sessionKey(hash)) {
				return time.Since(since)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Fatalf("no cache write reached the new master within %v of the failover", writesResumeBy)
	return 0
}

// metric returns the value of one series on the sidecar's /metrics page, and false if it
// is absent.
func metric(t *testing.T, sc *Sidecar, series string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(sc.Admin(t, "/metrics").Body, "\n") {
		if name, value, ok := strings.Cut(line, " "); ok && name == series {
			var v float64
			_, err := fmt.Sscan(value, &v)
			return v, err == nil
		}
	}
	return 0, false
}

// feedRoles reads each replica's change-feed role from its metrics.
func feedRoles(t *testing.T, fleet []*Sidecar) []string {
	t.Helper()
	roles := make([]string, len(fleet))
	for i, sc := range fleet {
		for _, r := range []string{"holder", "standby", "idle", "solo", "disconnected", "off"} {
			if v, _ := metric(t, sc, `authsidecar_feed_role{role="`+r+`"}`); v == 1 {
				roles[i] = r
			}
		}
	}
	return roles
}

func awaitRoles(t *testing.T, fleet []*Sidecar, want map[string]int, within time.Duration) []string {
	t.Helper()
	var roles []string
	deadline := time.Now().Add(within)
	for {
		roles = feedRoles(t, fleet)
		got := map[string]int{}
		for _, r := range roles {
			got[r]++
		}
		match := len(got) == len(want)
		for r, n := range want {
			match = match && got[r] == n
		}
		if match {
			return roles
		}
		if time.Now().After(deadline) {
			t.Fatalf("feed roles %v, want %v within %v", roles, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// untilAllDeny polls every replica until each answers 401 for token, failing after a
// second; it returns how long that took.
func untilAllDeny(t *testing.T, fleet []*Sidecar, token string, start time.Time) time.Duration {
	t.Helper()
	for _, sc := range fleet {
		eventually(t, time.Until(start.Add(time.Second)), "every replica denies the revoked session", func() bool {
			return sc.Get(t, "/api/load", token).Status == http.StatusUnauthorized
		})
	}
	return time.Since(start)
}

// commandCalls reads INFO commandstats: calls per command.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	calls := map[string]int{}
	for _, line := range strings.Split(rdb.Info(context.Background(), "commandstats").Val(), "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		var v int
		_, _ = fmt.Sscan(n, &v)
		calls[name] = v
	}
	return calls
}

func TestFleetRelaysEachRevocationOnce(t *testing.T) {
	st := newStack(t)
	srv := testenv.StartRedis(t) // private: its command counts are this test's alone
	rdb := privateClient(t, srv)
	up := NewUpstream(t, echoUser)
	env := st.env(up.URL, map[string]string{"REDIS_URL": srv.URL(), "LOG_LEVEL": "info"})
	var fleet []*Sidecar
	for range 4 {
		fleet = append(fleet, StartSidecar(t, env))
	}
	roles := awaitRoles(t, fleet, map[string]int{"holder": 1, "standby": 1, "idle": 2}, 15*time.Second)
	if n := feedConnections(t, st); n != 2 {
		t.Fatalf("%d feed connections on the primary from 4 replicas, want 2", n)
	}

	token, hash, _ := st.session(t, testenv.SessionSpec{})
	for _, sc := range fleet {
		if r := sc.Get(t, "/api/load", token); r.Status != http.StatusOK {
			t.Fatalf("warm: %d", r.Status)
		}
	}
	if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st.db.Revoke(t, hash)
	t.Logf("measured: 4 replicas deny the revoked session %v after the UPDATE", untilAllDeny(t, fleet, token, start).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond) // let the relay's last command land
	// Only the eviction script INCRs (the token's generation); scripts' commands count too.
	calls := commandCalls(t, rdb)
	evictions, publishes := calls["incr"], calls["publish"]
	t.Logf("measured: one revocation cost %d eviction scripts and %d publishes on Redis (commands: %v)", evictions, publishes, calls)
	if evictions != 1 || publishes != 1 {
		t.Errorf("one revocation cost %d eviction scripts and %d publishes, want 1 of each", evictions, publishes)
	}

	// The holder dies: the standby takes over within 3 s, and a revocation then reaches
	// every survivor.
	holder := slices.Index(roles, "holder")
	killed := time.Now()
	fleet[holder].Kill(t)
	survivors := slices.Delete(slices.Clone(fleet), holder, holder+1)
	awaitRoles(t, survivors, map[string]int{"holder": 1, "standby": 1, "idle": 1}, 3*time.Second)
	t.Logf("measured: the feed was taken over %v after the holder was killed", time.Since(killed).Round(time.Millisecond))
	token2, hash2, _ := st.session(t, testenv.SessionSpec{})
	for _, sc := range survivors {
		sc.Get(t, "/api/load", token2)
	}
	start = time.Now()
	st.db.Revoke(t, hash2)
	untilAllDeny(t, survivors, token2, start)

	// Redis down: pub/sub cannot relay, so every replica listens to Postgres itself.
	token3, hash3, _ := st.session(t, testenv.SessionSpec{})
	for _, sc := range survivors {
		sc.Get(t, "/api/load", token3) // cached in process too (LOCAL_CACHE_TTL 10 s)
	}
	srv.Kill()
	awaitRoles(t, survivors, map[string]int{"solo": 3}, 10*time.Second)
	if n := feedConnections(t, st); n != 3 {
		t.Fatalf("%d feed connections with Redis down, want one per replica (3)", n)
	}
	start = time.Now()
	st.db.Revoke(t, hash3)
	t.Logf("measured: with Redis down, 3 replicas deny %v after the UPDATE", untilAllDeny(t, survivors, token3, start).Round(time.Millisecond))
}

// feedConnections counts the change feeds' connections on the test database.
func feedConnections(t *testing.T, st *stack) int {
	t.Helper()
	var n int
	err := st.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'authsidecar-listen'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLaggingReplicaCannotReviveARevokedSession(t *testing.T) {
	pair := testenv.StartPostgresPair(t, 3*time.Second)
	db := pair.NewDB(t)
	name := db.Pool.Config().ConnConfig.Database
	rdb := testenv.NewRedisClient(t)
	st := &stack{db: db, rdb: rdb, prefix: testenv.Prefix(t, rdb)}
	up := NewUpstream(t, echoUser)
	env := st.env(up.URL, map[string]string{
		"DATABASE_URL": pair.Standby.URL(name), "DB_NOTIFY_URL": pair.Primary.URL(name),
	})
	fleet := []*Sidecar{StartSidecar(t, env), StartSidecar(t, env)}

	// A session created a moment ago is not on the replica yet: it is still accepted.
	token, hash, _ := st.session(t, testenv.SessionSpec{})
	for _, sc := range fleet {
		if r := sc.Get(t, "/api/load", token); r.Status != http.StatusOK {
			t.Fatalf("a session the replica has not replayed yet: %d, want 200 (confirmed on the primary)", r.Status)
		}
	}
	time.Sleep(pair.ApplyDelay + time.Second) // the replica has it now
	for _, sc := range fleet {
		sc.Get(t, "/api/load", token)
	}
	start := time.Now()
	st.db.Revoke(t, hash)
	took := untilAllDeny(t, fleet, token, start)
	var revokedOnReplica bool
	if conn, err := pgx.Connect(context.Background(), pair.Standby.URL(name)); err == nil {
		_ = conn.QueryRow(context.Background(), `SELECT revoked_at IS NOT NULL FROM platform.user_sessions
			WHERE token_hash = $1`, hash).Scan(&revokedOnReplica)
		_ = conn.Close(context.Background())
	}
	t.Logf("measured: both replicas deny %v after the revocation, while the replica (replay delayed %v) still shows it revoked=%v",
		took.Round(time.Millisecond), pair.ApplyDelay, revokedOnReplica)
	if revokedOnReplica {
		t.Fatal("the replica replayed the revocation already: the test did not exercise lag")
	}
	// And it stays denied while the replica catches up: nothing re-cached the old answer.
	for range 5 {
		for _, sc := range fleet {
			if r := sc.Get(t, "/api/load", token); r.Status != http.StatusUnauthorized {
				t.Fatalf("revoked session answered %d during the replica's lag", r.Status)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
}
