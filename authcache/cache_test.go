package authcache_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// fixture is one database, one Redis prefix and a Store counting its lookups.
type fixture struct {
	db     *testenv.DB
	store  *pgsession.Store
	src    *countingSource
	rdb    *redis.Client
	prefix string
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	db := testenv.NewDB(tb)
	store := db.OpenStore(tb)
	rdb := testenv.NewRedisClient(tb)
	return &fixture{db: db, store: store, src: &countingSource{src: store}, rdb: rdb, prefix: testenv.Prefix(tb, rdb)}
}

// cache builds a Cache over the fixture; redisOn and localTTL pick the layers.
func (f *fixture) cache(redisOn bool, localTTL time.Duration) *authcache.Cache {
	o := authcache.Options{
		Prefix: f.prefix, SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: localTTL, LocalSize: 1000, OpTimeout: 500 * time.Millisecond,
		LookupTimeout: 2 * time.Second, BreakerFailures: 5, BreakerOpenFor: time.Second,
	}
	if redisOn {
		o.Redis = f.rdb
	}
	return authcache.New(f.src, o)
}

// The Redis key layout, as the README documents it: a hash tag on every key.
func sessionKey(prefix, h string) string { return prefix + "{" + h + "}" }
func negKey(prefix, h string) string     { return prefix + "neg:{" + h + "}" }
func userKey(prefix, u string) string    { return prefix + "user:{" + u + "}" }

type countingSource struct {
	src   authcache.Source
	calls atomic.Int64
	gate  chan struct{} // when set, every lookup waits for it to close
}

func (s *countingSource) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return s.Lookup(ctx, h)
}

func (s *countingSource) Lookup(ctx context.Context, h string) (pgsession.Session, error) {
	s.calls.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	return s.src.Lookup(ctx, h)
}

// TestBehaviourOfEveryLayer runs one behaviour suite against every combination of layers:
// whichever layers are on, the answers are the source of truth's.
func TestBehaviourOfEveryLayer(t *testing.T) {
	f := newFixture(t)
	user := f.db.User(t, testenv.UserSpec{FirstName: "José", LastName: "Müller", Username: "jm"})
	valid, _ := f.db.Session(t, user, testenv.SessionSpec{UserAgent: "ua"})
	expired, _ := f.db.Session(t, user, testenv.SessionSpec{ExpiresIn: -time.Minute})
	revoked, _ := f.db.Session(t, user, testenv.SessionSpec{Revoked: true})

	layers := []struct {
		name     string
		redis    bool
		localTTL time.Duration
	}{
		{"postgres only", false, 0},
		{"redis", true, 0},
		{"local", false, 10 * time.Second},
		{"local and redis", true, 10 * time.Second},
	}
	cases := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"valid", valid, nil},
		{"expired", expired, authcache.ErrInvalid},
		{"revoked", revoked, authcache.ErrInvalid},
		{"unknown", "no-such-token", authcache.ErrInvalid},
	}
	for _, l := range layers {
		c := f.cache(l.redis, l.localTTL)
		for _, tc := range cases {
			for round := range 3 { // cold, then answered by whatever cached it
				res, err := c.Validate(context.Background(), tc.token)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("%s/%s round %d: err = %v, want %v", l.name, tc.name, round, err, tc.wantErr)
				}
				if tc.wantErr == nil && (res.Session.UserID != user || res.Session.FirstName != "José") {
					t.Fatalf("%s/%s round %d: session = %+v", l.name, tc.name, round, res.Session)
				}
			}
		}
	}
}

func TestLayersAnswerInOrder(t *testing.T) {
	f := newFixture(t)
	token, _ := f.db.Session(t, f.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	c := f.cache(true, 10*time.Second)
	for _, want := range []authcache.Layer{authcache.LayerPostgres, authcache.LayerLocal} {
		res, err := c.Validate(context.Background(), token)
		if err != nil || res.Layer != want {
			t.Fatalf("layer = %q, %v; want %q", res.Layer, err, want)
		}
	}
	// A second replica, sharing Redis but not the process, is answered by Redis.
	res, err := f.cache(true, 10*time.Second).Validate(context.Background(), token)
	if err != nil || res.Layer != authcache.LayerRedis {
		t.Fatalf("other replica: layer = %q, %v; want redis", res.Layer, err)
	}
	if n := f.src.calls.Load(); n != 1 {
		t.Fatalf("postgres lookups = %d, want 1", n)
	}
}

func TestRedisKeysAndTTLs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	user := f.db.User(t, testenv.UserSpec{})
	long, longHash := f.db.Session(t, user, testenv.SessionSpec{ExpiresIn: time.Hour})
	short, shortHash := f.db.Session(t, user, testenv.SessionSpec{ExpiresIn: 30 * time.Second})
	c := f.cache(true, 0)
	for _, tok := range []string{long, short, "unknown-token"} {
		_, _ = c.Validate(ctx, tok)
	}
	ttl := func(key string) time.Duration {
		t.Helper()
		d, err := f.rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	checks := []struct {
		key      string
		min, max time.Duration
	}{
		{sessionKey(f.prefix, longHash), 4*time.Minute + 50*time.Second, 5 * time.Minute},
		{sessionKey(f.prefix, shortHash), 20 * time.Second, 30 * time.Second}, // capped at the session's expiry
		{userKey(f.prefix, user), 4*time.Minute + 50*time.Second, 5 * time.Minute},
		{negKey(f.prefix, authcache.HashToken("unknown-token")), 4 * time.Second, 5 * time.Second},
	}
	for _, ck := range checks {
		if d := ttl(ck.key); d < ck.min || d > ck.max {
			t.Errorf("TTL of %s = %v, want in [%v, %v]", ck.key, d, ck.min, ck.max)
		}
	}
	members, err := f.rdb.SMembers(ctx, userKey(f.prefix, user)).Result()
	if err != nil || len(members) != 2 {
		t.Fatalf("user index = %v, %v; want both hashes", members, err)
	}
	raw, err := f.rdb.Get(ctx, sessionKey(f.prefix, longHash)).Result()
	if err != nil || strings.Contains(raw, long) || strings.Contains(raw, longHash) {
		t.Fatalf("cached value must hold neither the token nor its hash (err %v)", err)
	}
}

func TestCachedSessionFitsIn512Bytes(t *testing.T) {
	f := newFixture(t)
	ua := "Mozilla/5.0 (Macintosh; Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	if len(ua) != 111 {
		t.Fatalf("user agent is %d bytes, want 111", len(ua))
	}
	user := f.db.User(t, testenv.UserSpec{Email: "jose.muller@example.com", FirstName: "José", LastName: "Müller",
		Username: "jose.muller", AvatarURL: "https://cdn.example.com/avatars/3f2a9c1e.png"})
	token, hash := f.db.Session(t, user, testenv.SessionSpec{UserAgent: ua, IPAddress: "203.0.113.195"})
	if _, err := f.cache(true, 0).Validate(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	n, err := f.rdb.MemoryUsage(context.Background(), sessionKey(f.prefix, hash)).Result()
	if err != nil || n > 512 {
		t.Fatalf("MEMORY USAGE = %d, %v; want ≤ 512", n, err)
	}
	size, _ := f.rdb.StrLen(context.Background(), sessionKey(f.prefix, hash)).Result()
	t.Logf("MEMORY USAGE of one cached session: %d bytes (value %d bytes, key %d bytes)", n, size, len(sessionKey(f.prefix, hash)))
}

func TestExpiredCopyInRedisIsRecheckedAgainstPostgres(t *testing.T) {
	f := newFixture(t)
	token, hash := f.db.Session(t, f.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{ExpiresIn: 2 * time.Second})
	now := time.Now()
	clock := func() time.Time { return now }
	o := authcache.Options{Redis: f.rdb, Prefix: f.prefix, SessionTTL: time.Minute, OpTimeout: time.Second,
		LookupTimeout: time.Second, BreakerFailures: 5, BreakerOpenFor: time.Second, Now: clock}
	if _, err := authcache.New(f.src, o).Validate(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	// Redis still holds the copy (its TTL is still running), but its expiresAt has passed.
	time.Sleep(2100 * time.Millisecond)
	now = time.Now()
	if err := f.rdb.PExpire(context.Background(), sessionKey(f.prefix, hash), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := authcache.New(f.src, o).Validate(context.Background(), token); !errors.Is(err, authcache.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if n := f.src.calls.Load(); n != 2 {
		t.Fatalf("postgres lookups = %d, want 2 (the expired copy must not answer)", n)
	}
}

func TestConcurrentMissesShareOneLookup(t *testing.T) {
	f := newFixture(t)
	token, _ := f.db.Session(t, f.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	f.src.gate = make(chan struct{})
	c := f.cache(true, 10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			_, err := c.Validate(context.Background(), token)
			errs <- err
		})
	}
	time.Sleep(100 * time.Millisecond) // let every caller join the flight
	close(f.src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.src.calls.Load(); n != 1 {
		t.Fatalf("postgres lookups = %d, want 1", n)
	}
}

func TestCancelledCallerDoesNotFailOtherWaiters(t *testing.T) {
	f := newFixture(t)
	token, _ := f.db.Session(t, f.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	f.src.gate = make(chan struct{})
	c := f.cache(false, 0)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := c.Validate(ctx, token); first <- err }()
	second := make(chan error, 1)
	time.Sleep(50 * time.Millisecond)
	go func() { _, err := c.Validate(context.Background(), token); second <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v, want context.Canceled", err)
	}
	close(f.src.gate)
	if err := <-second; err != nil {
		t.Fatalf("other waiter: err = %v, want the session", err)
	}
	if n := f.src.calls.Load(); n != 1 {
		t.Fatalf("postgres lookups = %d, want 1 shared lookup", n)
	}
}

func TestUnreachableRedisFallsBackToPostgres(t *testing.T) {
	f := newFixture(t)
	token, _ := f.db.Session(t, f.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { dead.Close() })
	c := authcache.New(f.src, authcache.Options{Redis: dead, Prefix: f.prefix, SessionTTL: time.Minute,
		OpTimeout: 100 * time.Millisecond, LookupTimeout: time.Second, BreakerFailures: 2, BreakerOpenFor: time.Minute})
	for range 5 {
		if res, err := c.Validate(context.Background(), token); err != nil || res.Layer != authcache.LayerPostgres {
			t.Fatalf("layer = %q, %v; want postgres", res.Layer, err)
		}
	}
	if got := c.BreakerState(); got != "open" {
		t.Fatalf("breaker = %q, want open", got)
	}
	if st := c.Stats(); st.Requests["redis"]["error"] != 5 || st.Misses != 5 {
		t.Fatalf("counters = %+v, want 5 errors and 5 misses", st)
	}
}

func TestUnavailableSourceIsNotInvalid(t *testing.T) {
	f := newFixture(t)
	fwd := testenv.NewForwarder(t, hostPort(t, f.db.URL))
	store, err := pgsession.Open(context.Background(), pgsession.Options{URL: f.db.URLVia(fwd.Addr()), QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	fwd.Cut()
	c := authcache.New(store, authcache.Options{LookupTimeout: time.Second})
	if _, err := c.Validate(context.Background(), "some-token"); !errors.Is(err, authcache.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func hostPort(tb testing.TB, dsn string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return u.Host
}

func TestValidateCachedNeverAsksTheSource(t *testing.T) {
	f := newFixture(t)
	user := f.db.User(t, testenv.UserSpec{})
	cachedToken, _ := f.db.Session(t, user, testenv.SessionSpec{})
	uncachedToken, _ := f.db.Session(t, user, testenv.SessionSpec{})
	c := f.cache(true, 0)
	ctx := context.Background()
	if _, err := c.Validate(ctx, cachedToken); err != nil {
		t.Fatal(err)
	}
	calls := f.src.calls.Load()
	if res, err := c.ValidateCached(ctx, cachedToken); err != nil || res.Layer != authcache.LayerRedis {
		t.Fatalf("cached token: %v from %q, want valid from redis", err, res.Layer)
	}
	for _, token := range []string{uncachedToken, "never-seen"} {
		if _, err := c.ValidateCached(ctx, token); !errors.Is(err, authcache.ErrNotCached) {
			t.Fatalf("uncached token: %v, want ErrNotCached", err)
		}
	}
	if got := f.src.calls.Load(); got != calls {
		t.Fatalf("ValidateCached asked the source %d times", got-calls)
	}
}
