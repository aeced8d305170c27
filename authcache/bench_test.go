package authcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// benchSource answers every lookup with one session, as Postgres would for a valid token.
type benchSource struct{ s pgsession.Session }

func (b benchSource) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return b.Lookup(ctx, h)
}

func (b benchSource) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	s := b.s
	s.TokenHash = h
	return s, nil
}

func benchSession() pgsession.Session {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return pgsession.Session{
		ID: "2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01", UserID: "7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01",
		Email: "jose.muller@example.com", FirstName: "José", LastName: "Müller", Username: "jose.muller",
		AvatarURL: "https://cdn.example.com/avatars/7c1e5a52.png", IPAddress: "203.0.113.7",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0",
		ExpiresAt: now.Add(24 * time.Hour), LastActivityAt: now, CreatedAt: now.Add(-time.Hour),
	}
}

func benchValidate(b *testing.B, c *authcache.Cache, want authcache.Layer) {
	b.Helper()
	ctx := context.Background()
	const token = "bench-hot-token"
	if _, err := c.Validate(ctx, token); err != nil { // fill the caches
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := c.Validate(ctx, token)
		if err != nil || res.Layer != want {
			b.Fatalf("Validate = %v, %v; want a %s hit", res.Layer, err, want)
		}
	}
}

// BenchmarkValidateLocalHit is the hot path of a sidecar with the in-process cache on.
func BenchmarkValidateLocalHit(b *testing.B) {
	c := authcache.New(benchSource{benchSession()}, authcache.Options{
		SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: time.Hour, LocalSize: 100000, LookupTimeout: time.Second,
	})
	benchValidate(b, c, authcache.LayerLocal)
}

// BenchmarkValidateRedisHit is LOCAL_CACHE_TTL=0: one MGET to the test Redis per call.
func BenchmarkValidateRedisHit(b *testing.B) {
	opts, err := redis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	b.Cleanup(func() { rdb.Close() })
	c := authcache.New(benchSource{benchSession()}, authcache.Options{
		Redis: rdb, Prefix: testenv.Prefix(b, rdb), SessionTTL: 5 * time.Minute,
		NegativeTTL: 5 * time.Second, OpTimeout: time.Second, LookupTimeout: time.Second,
		BreakerFailures: 5, BreakerOpenFor: time.Second,
	})
	benchValidate(b, c, authcache.LayerRedis)
}

// BenchmarkHashToken is the per-request cost of deriving the cache key.
func BenchmarkHashToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = authcache.HashToken("bench-hot-token-0123456789abcdef0123456789abcdef")
	}
}
