package authcache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// evSource is a session source whose sessions can be revoked, and whose lookups can be held
// mid-flight to line them up against an eviction. It counts lookups on the primary apart.
type evSource struct {
	mu      sync.Mutex
	users   map[string]string // token hash → user id; absent or revoked → ErrNotFound
	revoked map[string]bool
	calls   int
	primary int           // calls of LookupPrimary
	hold    chan struct{} // when set, a lookup reports on started and waits for hold to close
	started chan struct{}
}

func newEvSource() *evSource {
	return &evSource{users: map[string]string{}, revoked: map[string]bool{}}
}

func (s *evSource) add(token, user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := HashToken(token)
	s.users[h] = user
	return h
}

func (s *evSource) revoke(h string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[h] = true
}

func (s *evSource) count() (all, primary int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.primary
}

func (s *evSource) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	s.mu.Lock()
	s.primary++
	s.mu.Unlock()
	return s.Lookup(ctx, h)
}

func (s *evSource) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	s.mu.Lock()
	s.calls++
	user, ok := s.users[h]
	ok = ok && !s.revoked[h]
	hold, started := s.hold, s.started
	s.mu.Unlock()
	if hold != nil {
		started <- struct{}{}
		<-hold
	}
	if !ok {
		return pgsession.Session{}, pgsession.ErrNotFound
	}
	return pgsession.Session{TokenHash: h, ID: "s-" + h[:8], UserID: user, Email: user + "@example.test",
		ExpiresAt: time.Now().Add(time.Hour).UTC()}, nil
}

// evOptions are the options of every Cache these tests build.
func evOptions(rdb redis.UniversalClient, prefix string) Options {
	return Options{
		Redis: rdb, Prefix: prefix, SessionTTL: time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: 10 * time.Second, LocalSize: 1000, OpTimeout: 500 * time.Millisecond,
		LookupTimeout: 5 * time.Second, BreakerFailures: 3, BreakerOpenFor: 100 * time.Millisecond,
		PrimaryWindow: 10 * time.Second,
	}
}

// evStore is the Redis half of a Cache, for driving fills and evictions directly.
func evStore(rdb redis.UniversalClient, prefix string) *redisStore {
	return New(nil, evOptions(rdb, prefix)).redis
}

// evRedis returns a client of the shared test Redis and a fresh key prefix.
func evRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	return evClient(t, testenv.RedisURL(t))
}

func evClient(t *testing.T, url string) (*redis.Client, string) {
	t.Helper()
	rdb := testenv.RedisClient(t, url, func(o *redis.Options) {
		o.MaxRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, 200*time.Millisecond, true
	})
	return rdb, testenv.Prefix(t, rdb)
}

// evCache builds a Cache with both layers over src and runs it until cleanup.
func evCache(t *testing.T, src Source, rdb redis.UniversalClient, prefix string) *Cache {
	t.Helper()
	c := New(src, evOptions(rdb, prefix))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	evEventually(t, 5*time.Second, "subscribed to "+prefix+"evict", func() bool {
		up, _ := c.PeersUp()
		return up
	})
	return c
}

func evValid(t *testing.T, c *Cache, token string) Result {
	t.Helper()
	res, err := c.Validate(context.Background(), token)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	return res
}

func evExists(t *testing.T, rdb redis.UniversalClient, key string) bool {
	t.Helper()
	n, err := rdb.Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// evEventually polls cond every 10 ms for at most within.
func evEventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisCase is one Redis the eviction suite runs against.
type redisCase struct {
	name string
	open func(t *testing.T) (redis.UniversalClient, string) // a client and a fresh key prefix
}

// TestEvictionSuite runs every eviction behaviour against a single Redis and against a Redis
// Cluster (three masters), where each script and MGET must stay inside one slot.
func TestEvictionSuite(t *testing.T) {
	var cluster *testenv.RedisCluster
	cases := []redisCase{
		{"Single", func(t *testing.T) (redis.UniversalClient, string) { return evRedis(t) }},
		{"Cluster", func(t *testing.T) (redis.UniversalClient, string) {
			rdb := cluster.Client(t, func(o *redis.ClusterOptions) {
				o.MaxRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, 200*time.Millisecond, true
			})
			return rdb, "test:" + HashToken(t.Name())[:8] + ":"
		}},
	}
	for _, rc := range cases {
		t.Run(rc.name, func(t *testing.T) {
			if rc.name == "Cluster" {
				cluster = testenv.StartRedisCluster(t)
			}
			for _, tc := range evictionSuite {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, rc) })
			}
		})
	}
}

var evictionSuite = []struct {
	name string
	run  func(t *testing.T, rc redisCase)
}{
	{"FillAfterAnEvictionOfItsTokenWritesNothing", testFillAfterEviction},
	{"EvictionOfAnotherTokenStopsNoFill", testOtherEvictionStopsNoFill},
	{"LookupRacingAnEvictionNeverCachesTheRevokedSession", testLookupRacingEviction},
	{"UserEvictionBetweenIndexAndFill", testUserEvictionBetweenIndexAndFill},
	{"UserEvictionBeforeTheFillStopsIt", testUserEvictionBeforeFill},
	{"EvictionReachesPeersInProcessCopy", testEvictionReachesPeers},
	{"InvalidateCountsCachedSessions", testInvalidateCounts},
	{"WarmSkipsRecentlyEvictedSessions", testWarmSkipsEvicted},
	{"FlushDeletesEveryKeyUnderThePrefix", testFlush},
}

func testFillAfterEviction(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	s := evStore(rdb, prefix)
	h := HashToken("a")
	sess := pgsession.Session{TokenHash: h, UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}
	before, err := s.get(h) // the reader's view, taken before its Postgres lookup
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.evictHash(h, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.fill(sess, time.Minute, before); err != nil {
		t.Fatal(err)
	}
	if err := s.fillNegative(h, time.Minute, before); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s.sessionKey(h), s.negKey(h)} {
		if evExists(t, rdb, key) {
			t.Fatalf("a fill from before the eviction wrote %s", key)
		}
	}
	after, err := s.get(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fill(sess, time.Minute, after); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s.sessionKey(h), s.userKey("u")} {
		if !evExists(t, rdb, key) {
			t.Fatalf("a fill read after the eviction did not write %s", key)
		}
	}
	if ttl := rdb.PTTL(context.Background(), s.genKey(h)).Val(); ttl <= 0 || ttl > s.guardTTL {
		t.Fatalf("generation TTL %v, want in (0, %v]: generations must not pile up", ttl, s.guardTTL)
	}
}

// The guard is per token: a revocation elsewhere no longer cancels every fill in flight.
func testOtherEvictionStopsNoFill(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	s := evStore(rdb, prefix)
	h := HashToken("a")
	before, err := s.get(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.evictHash(HashToken("b"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.evictUser("someone-else", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	sess := pgsession.Session{TokenHash: h, UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.fill(sess, time.Minute, before); err != nil {
		t.Fatal(err)
	}
	if !evExists(t, rdb, s.sessionKey(h)) {
		t.Fatal("an eviction of another token or user stopped the fill")
	}
}

func testLookupRacingEviction(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	src := newEvSource()
	h := src.add("tok", "u")
	c := evCache(t, src, rdb, prefix)
	hold := make(chan struct{})
	src.hold, src.started = hold, make(chan struct{}, 1)

	result := make(chan error, 1)
	go func() {
		_, err := c.Validate(context.Background(), "tok")
		result <- err
	}()
	<-src.started // the lookup has read Postgres's old answer and not yet filled
	src.revoke(h)
	if _, err := c.Invalidate(context.Background(), Target{TokenHash: h}, ReasonNotify); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.hold = nil // later lookups run straight through
	src.mu.Unlock()
	close(hold)
	// The in-flight lookup answers from before the revocation; it must not cache that.
	if err := <-result; err != nil {
		t.Fatalf("in-flight validate: %v", err)
	}
	if evExists(t, rdb, c.redis.sessionKey(h)) {
		t.Fatal("the lookup wrote the revoked session back to Redis")
	}
	if _, err := c.Validate(context.Background(), "tok"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate after the eviction = %v, want ErrInvalid (a stale copy was cached in process)", err)
	}
	if all, primary := src.count(); all != 2 || primary != 1 {
		t.Fatalf("source asked %d times (%d on the primary), want 2 (the second on the primary)", all, primary)
	}
}

// On a cluster a fill indexes the session (the user's slot) before writing it (the token's
// slot). A user eviction that runs between the two finds the hash in the index and bumps
// its generation, so the write that follows lands nothing.
func testUserEvictionBetweenIndexAndFill(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	s := evStore(rdb, prefix)
	h := HashToken("new")
	seen, err := s.get(h)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := indexScript.Run(ctx, rdb, s.indexKeys("u"), h, 60000).Err(); err != nil {
		t.Fatal(err)
	}
	evicted, err := s.evictUser("u", []byte(`{}`))
	if err != nil || len(evicted) != 0 {
		t.Fatalf("evictUser = %v, %v; want nothing cached yet", evicted, err)
	}
	if err := fillScript.Run(ctx, rdb, []string{s.genKey(h), s.sessionKey(h)}, seen.gen, "v", 60000).Err(); err != nil {
		t.Fatal(err)
	}
	if evExists(t, rdb, s.sessionKey(h)) {
		t.Fatal("a session indexed before the user's eviction was written after it")
	}
}

// A user eviction that runs before a fill indexes its session leaves user-evicted:{u}, which
// stops the fill altogether.
func testUserEvictionBeforeFill(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	s := evStore(rdb, prefix)
	h := HashToken("new")
	seen, err := s.get(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.evictUser("u", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	sess := pgsession.Session{TokenHash: h, UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.fill(sess, time.Minute, seen); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s.sessionKey(h), s.userKey("u")} {
		if evExists(t, rdb, key) {
			t.Fatalf("a fill after the user's eviction wrote %s", key)
		}
	}
}

func testEvictionReachesPeers(t *testing.T, rc redisCase) {
	for _, tc := range []struct {
		name   string
		target func(token, hash, user string) Target
	}{
		{"Token", func(tok, _, _ string) Target { return Target{Token: tok} }},
		{"TokenHash", func(_, h, _ string) Target { return Target{TokenHash: h} }},
		{"UserID", func(_, _, u string) Target { return Target{UserID: u} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := rc.open(t)
			src := newEvSource()
			h := src.add("tok", "u")
			a := evCache(t, src, rdb, prefix)
			b := evCache(t, src, rdb, prefix)
			evValid(t, a, "tok")
			if res := evValid(t, b, "tok"); res.Layer != LayerRedis {
				t.Fatalf("peer answered from %s, want redis", res.Layer)
			}
			if res := evValid(t, b, "tok"); res.Layer != LayerLocal {
				t.Fatalf("peer answered from %s, want its in-process copy", res.Layer)
			}
			src.revoke(h)
			if _, err := a.Invalidate(context.Background(), tc.target("tok", h, "u"), ReasonAdmin); err != nil {
				t.Fatal(err)
			}
			evEventually(t, time.Second, "peer drops its copy", func() bool {
				_, err := b.Validate(context.Background(), "tok")
				return errors.Is(err, ErrInvalid)
			})
		})
	}
}

func testInvalidateCounts(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	src := newEvSource()
	src.add("one", "alice")
	src.add("two", "alice")
	src.add("three", "bob")
	c := evCache(t, src, rdb, prefix)
	for _, tok := range []string{"one", "two", "three"} {
		evValid(t, c, tok)
	}
	for _, tc := range []struct {
		target Target
		want   int
	}{
		{Target{Token: "one"}, 1},
		{Target{Token: "one"}, 0}, // already gone
		{Target{UserID: "alice"}, 1},
		{Target{TokenHash: HashToken("three")}, 1},
		{Target{UserID: "nobody"}, 0},
	} {
		n, err := c.Invalidate(context.Background(), tc.target, ReasonAdmin)
		if err != nil || n != tc.want {
			t.Fatalf("Invalidate(%+v) = %d, %v; want %d", tc.target, n, err, tc.want)
		}
	}
	for _, bad := range []Target{{}, {Token: "x", UserID: "u"}, {TokenHash: "abc"}, {TokenHash: HashToken("x")[:63] + "G"}} {
		if _, err := c.Invalidate(context.Background(), bad, ReasonAdmin); !errors.Is(err, ErrBadTarget) {
			t.Errorf("Invalidate(%+v) = %v, want ErrBadTarget", bad, err)
		}
	}
}

func testWarmSkipsEvicted(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	c := New(nil, evOptions(rdb, prefix))
	var sessions []pgsession.Session
	for _, tok := range []string{"a", "b", "c", "d"} {
		sessions = append(sessions, pgsession.Session{TokenHash: HashToken(tok), UserID: "u-" + tok,
			ExpiresAt: time.Now().Add(time.Hour)})
	}
	// b was revoked moments ago, d's user was evicted: neither may be written back.
	if _, err := c.Invalidate(context.Background(), Target{Token: "b"}, ReasonNotify); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invalidate(context.Background(), Target{UserID: "u-d"}, ReasonNotify); err != nil {
		t.Fatal(err)
	}
	n, err := c.Warm(context.Background(), func(context.Context) ([]pgsession.Session, error) { return sessions, nil })
	if err != nil || n != 2 {
		t.Fatalf("warmed %d, %v; want 2", n, err)
	}
	for tok, want := range map[string]bool{"a": true, "b": false, "c": true, "d": false} {
		if got := evExists(t, rdb, c.redis.sessionKey(HashToken(tok))); got != want {
			t.Errorf("session %s cached = %v, want %v", tok, got, want)
		}
	}
}

func testFlush(t *testing.T, rc redisCase) {
	rdb, prefix := rc.open(t)
	s := evStore(rdb, prefix)
	ctx := context.Background()
	var keys []string
	for i := range 50 { // spread over many slots
		h := HashToken(string(rune('a' + i)))
		keys = append(keys, s.sessionKey(h), s.negKey(h), s.genKey(h))
	}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "x", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	other := "other:" + prefix + "{x}"
	if err := rdb.Set(ctx, other, "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Del(context.Background(), other) })
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if evExists(t, rdb, k) {
			t.Fatalf("%s survived the flush", k)
		}
	}
	if !evExists(t, rdb, other) {
		t.Fatal("the flush deleted a key outside its prefix")
	}
}

func TestFailedRedisEvictionIsRetriedOnceRedisAnswers(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb, prefix := evClient(t, srv.URL())
	check, _ := evClient(t, srv.URL())
	src := newEvSource()
	h := src.add("tok", "u")
	c := evCache(t, src, rdb, prefix)
	evValid(t, c, "tok")
	key := c.redis.sessionKey(h)
	if !evExists(t, check, key) {
		t.Fatal("session not cached in Redis")
	}

	srv.Pause()
	src.revoke(h)
	n, err := c.Invalidate(context.Background(), Target{Token: "tok"}, ReasonLogout)
	if err == nil || n != 1 {
		t.Fatalf("Invalidate with Redis stalled = %d, %v; want 1 (in process) and an error", n, err)
	}
	srv.Resume()
	// Until the eviction is replayed, Redis may still hold the revoked copy: it is not read.
	if _, err := c.Validate(context.Background(), "tok"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate while the eviction waits = %v, want ErrInvalid", err)
	}
	evEventually(t, 3*time.Second, "the queued eviction reaches Redis", func() bool {
		return !evExists(t, check, key)
	})
	if _, err := c.Validate(context.Background(), "tok"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate after the retried eviction = %v, want ErrInvalid", err)
	}
}

func TestPeersUpFollowsTheSubscription(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb, prefix := evClient(t, srv.URL())
	src := newEvSource()
	src.add("tok", "u")
	c := evCache(t, src, rdb, prefix) // returns once PeersUp
	evValid(t, c, "tok")
	_, changed := c.PeersUp()
	srv.Pause() // hung: only the unanswered ping can tell
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("PeersUp did not change after Redis stopped answering")
	}
	if up, _ := c.PeersUp(); up {
		t.Fatal("PeersUp still true with Redis stopped")
	}
	srv.Resume()
	evEventually(t, 10*time.Second, "subscribed again", func() bool {
		up, _ := c.PeersUp()
		return up
	})
	// Evictions published while the subscription was down are lost, so whatever the local
	// cache held may be stale once it is back.
	if n := c.local.len(); n != 0 {
		t.Fatalf("in-process cache holds %d entries after resubscribing, want 0", n)
	}
}

func TestRecentEvictionsAreLookedUpOnThePrimary(t *testing.T) {
	src := newEvSource()
	src.add("tok", "alice")
	src.add("other", "bob")
	c := New(src, Options{LocalTTL: 0, LookupTimeout: time.Second, PrimaryWindow: time.Minute})
	ctx := context.Background()
	evValid(t, c, "tok")
	if _, primary := src.count(); primary != 0 {
		t.Fatalf("a plain lookup read the primary %d times", primary)
	}
	// A token evicted moments ago: its next lookup goes to the primary.
	if _, err := c.Invalidate(ctx, Target{Token: "tok"}, ReasonNotify); err != nil {
		t.Fatal(err)
	}
	evValid(t, c, "tok")
	if _, primary := src.count(); primary != 1 {
		t.Fatalf("after a token eviction, primary lookups = %d, want 1", primary)
	}
	// A user evicted moments ago: a replica's answer naming that user is asked again.
	if _, err := c.Invalidate(ctx, Target{UserID: "bob"}, ReasonNotify); err != nil {
		t.Fatal(err)
	}
	evValid(t, c, "other")
	if all, primary := src.count(); primary != 2 || all != 4 {
		t.Fatalf("after a user eviction: %d lookups, %d on the primary; want 4 and 2", all, primary)
	}
}
