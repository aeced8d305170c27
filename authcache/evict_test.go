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
// mid-flight to line them up against an eviction.
type evSource struct {
	mu      sync.Mutex
	users   map[string]string // token hash → user id; absent or revoked → ErrNotFound
	revoked map[string]bool
	calls   int
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

func (s *evSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
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

// evStore is the Redis half of a Cache, for driving fills and evictions directly.
func evStore(rdb *redis.Client, prefix string) *redisStore {
	return New(nil, Options{Redis: rdb, Prefix: prefix, OpTimeout: time.Second,
		BreakerFailures: 5, BreakerOpenFor: time.Second}).redis
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
func evCache(t *testing.T, src Source, rdb *redis.Client, prefix string) *Cache {
	t.Helper()
	c := New(src, Options{
		Redis: rdb, Prefix: prefix, SessionTTL: time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: 10 * time.Second, LocalSize: 1000, OpTimeout: 200 * time.Millisecond,
		LookupTimeout: 5 * time.Second, BreakerFailures: 3, BreakerOpenFor: 100 * time.Millisecond,
	})
	channel := prefix + "evict"
	before := evSubscribers(t, rdb, channel)
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
	// Wait for this cache's own subscription: a peer's does not count.
	evEventually(t, 5*time.Second, "subscribed to "+channel, func() bool {
		return evSubscribers(t, rdb, channel) > before
	})
	return c
}

func evSubscribers(t *testing.T, rdb *redis.Client, channel string) int64 {
	t.Helper()
	n, err := rdb.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return n[channel]
}

func evValid(t *testing.T, c *Cache, token string) Result {
	t.Helper()
	res, err := c.Validate(context.Background(), token)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	return res
}

func evExists(t *testing.T, rdb *redis.Client, key string) bool {
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

func TestFillWithStaleEpochWritesNothing(t *testing.T) {
	rdb, prefix := evRedis(t)
	s := evStore(rdb, prefix)
	h, other := HashToken("a"), HashToken("b")
	sess := pgsession.Session{TokenHash: h, UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}

	before, err := s.get(h) // the reader's view, taken before its Postgres lookup
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.evictHash(other, []byte(`{}`)); err != nil { // any eviction moves the epoch
		t.Fatal(err)
	}
	if err := s.fill(sess, time.Minute, before.epoch); err != nil {
		t.Fatal(err)
	}
	if err := s.fillNegative(h, time.Minute, before.epoch); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s.sessionKey(h), s.negKey(h), s.userKey("u")} {
		if evExists(t, rdb, key) {
			t.Fatalf("a fill with a stale epoch wrote %s", key)
		}
	}

	after, err := s.get(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fill(sess, time.Minute, after.epoch); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s.sessionKey(h), s.userKey("u")} {
		if !evExists(t, rdb, key) {
			t.Fatalf("a fill with the current epoch did not write %s", key)
		}
	}
}

func TestLookupRacingAnEvictionNeverCachesTheRevokedSession(t *testing.T) {
	rdb, prefix := evRedis(t)
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
	if evExists(t, rdb, prefix+h) {
		t.Fatal("the lookup wrote the revoked session back to Redis")
	}
	if _, err := c.Validate(context.Background(), "tok"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate after the eviction = %v, want ErrInvalid (a stale copy was cached in process)", err)
	}
	if got := src.count(); got != 2 {
		t.Fatalf("source asked %d times, want 2", got)
	}
}

func TestEvictionReachesPeersInProcessCopy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target func(token, hash, user string) Target
	}{
		{"Token", func(tok, _, _ string) Target { return Target{Token: tok} }},
		{"TokenHash", func(_, h, _ string) Target { return Target{TokenHash: h} }},
		{"UserID", func(_, _, u string) Target { return Target{UserID: u} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := evRedis(t)
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

func TestInvalidateCountsCachedSessions(t *testing.T) {
	rdb, prefix := evRedis(t)
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

// evAfterCommand runs f once, right after the first command named name completes.
type evAfterCommand struct {
	name string
	once sync.Once
	f    func()
}

func (h *evAfterCommand) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *evAfterCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == h.name {
			h.once.Do(h.f)
		}
		return err
	}
}

func (h *evAfterCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestUserEvictionCatchesASessionFilledWhileItRuns(t *testing.T) {
	shared, prefix := evRedis(t)
	src := newEvSource()
	src.add("old", "u")
	h := src.add("new", "u")
	rdb := testenv.NewRedisClient(t)
	c := evCache(t, src, rdb, prefix)
	evValid(t, c, "old")

	// Another replica's lookup read the epoch before the eviction and fills right after the
	// eviction has read the user's index: the epoch has not moved yet, so the fill lands.
	peer := evStore(shared, prefix)
	seen, err := peer.get(h)
	if err != nil {
		t.Fatal(err)
	}
	sess := pgsession.Session{TokenHash: h, UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}
	rdb.AddHook(&evAfterCommand{name: "smembers", f: func() {
		if err := peer.fill(sess, time.Minute, seen.epoch); err != nil {
			t.Errorf("racing fill: %v", err)
		}
	}})
	if _, err := c.Invalidate(context.Background(), Target{UserID: "u"}, ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{prefix + HashToken("old"), prefix + h} {
		if evExists(t, shared, key) {
			t.Fatalf("%s survived the user's eviction", key)
		}
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
	if !evExists(t, check, prefix+h) {
		t.Fatal("session not cached in Redis")
	}

	srv.Pause()
	src.revoke(h)
	n, err := c.Invalidate(context.Background(), Target{Token: "tok"}, ReasonLogout)
	if err == nil || n != 1 {
		t.Fatalf("Invalidate with Redis stalled = %d, %v; want 1 (in process) and an error", n, err)
	}
	srv.Resume()
	evEventually(t, 3*time.Second, "the queued eviction reaches Redis", func() bool {
		return !evExists(t, check, prefix+h)
	})
	if _, err := c.Validate(context.Background(), "tok"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate after the retried eviction = %v, want ErrInvalid", err)
	}
}

func TestResubscribeDropsInProcessCache(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb, prefix := evClient(t, srv.URL())
	src := newEvSource()
	src.add("tok", "u")
	c := evCache(t, src, rdb, prefix)
	evValid(t, c, "tok")
	if c.local.len() != 1 {
		t.Fatalf("in-process cache holds %d entries, want 1", c.local.len())
	}
	// Evictions published while the subscription was down are lost, so whatever the local
	// cache holds may be stale once it is back.
	srv.Restart()
	evEventually(t, 5*time.Second, "local cache dropped after resubscribing", func() bool {
		return c.local.len() == 0
	})
}

func TestResyncedDropsLocalCacheAndEvictsListedHashes(t *testing.T) {
	rdb, prefix := evRedis(t)
	src := newEvSource()
	revoked := src.add("revoked", "u")
	kept := src.add("kept", "u")
	c := evCache(t, src, rdb, prefix)
	evValid(t, c, "revoked")
	evValid(t, c, "kept")

	// Malformed hashes (token_hash is free text to Postgres) are skipped, not fatal.
	c.Resynced([]string{"", "x", "ABC", revoked})
	if n := c.local.len(); n != 0 {
		t.Fatalf("in-process cache holds %d entries after a resync, want 0", n)
	}
	if evExists(t, rdb, prefix+revoked) {
		t.Fatal("a session revoked while the feed was down is still in Redis")
	}
	if !evExists(t, rdb, prefix+kept) {
		t.Fatal("a valid session was evicted from Redis")
	}
}

func TestChangedEvictsAndIgnoresMalformedHashes(t *testing.T) {
	rdb, prefix := evRedis(t)
	src := newEvSource()
	h := src.add("tok", "u")
	c := evCache(t, src, rdb, prefix)
	evValid(t, c, "tok")
	for _, bad := range []string{"x", "", h[:63] + "Z"} {
		c.Changed(pgsession.Event{TokenHash: bad})
	}
	if res := evValid(t, c, "tok"); res.Layer != LayerLocal {
		t.Fatalf("malformed events evicted the session (answered from %s)", res.Layer)
	}
	src.revoke(h)
	c.Changed(pgsession.Event{TokenHash: h})
	if _, err := c.Validate(context.Background(), "tok"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate after the change = %v, want ErrInvalid", err)
	}
	if rdb.SIsMember(context.Background(), prefix+"user:u", h).Val() {
		t.Fatal("the evicted hash is still in the user's index")
	}
}
