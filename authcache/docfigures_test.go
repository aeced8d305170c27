package authcache

// Figures the docs state about the cache that no behaviour test pins: the guard's lifetime
// formula, the short-lived session rule, the encoding's version byte, and the constants
// design.md and reference.md quote. The behaviour behind each constant has its own test
// (TestFailedRedisEvictionIsRetriedOnceRedisAnswers, TestOverflowedEvictionsFlushEveryCachedSession,
// TestLocalSizeIsBounded, TestWarmLoadsOnlyActiveSessions).

import (
	"context"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// TestGuardLifetimeIsFourLookupsAndAtLeastAMinute: max(1 min, 4 × (DB_QUERY_TIMEOUT + 2 ×
// REDIS_OP_TIMEOUT)), reference.md's "The guard's lifetime".
func TestGuardLifetimeIsFourLookupsAndAtLeastAMinute(t *testing.T) {
	for _, tc := range []struct {
		lookup, op, want time.Duration
	}{
		{2 * time.Second, 100 * time.Millisecond, time.Minute}, // the defaults: 8.8 s, so a minute
		{20 * time.Second, time.Second, 88 * time.Second},
		{15 * time.Second, 0, time.Minute},
	} {
		if got := newRedisStore(Options{LookupTimeout: tc.lookup, OpTimeout: tc.op}, nil).guardTTL; got != tc.want {
			t.Errorf("DB_QUERY_TIMEOUT %v, REDIS_OP_TIMEOUT %v: guard lifetime %v, want %v", tc.lookup, tc.op, got, tc.want)
		}
	}
}

func TestDocumentedConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"the retry queue's replay period (500 ms)", retryEvery, 500 * time.Millisecond},
		{"the retry queue's bound (10,000 distinct evictions)", maxRetries, 10000},
		{"the in-process cache's shards (64)", localShards, 64},
		{"warming's fills per pipelined round trip (256)", warmBatch, 256},
		{"the encoding's version byte (2)", encodeSession(pgsession.Session{})[0], byte(2)},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v", c.name, c.got)
		}
	}
}

// TestSessionAboutToExpireIsNotWrittenToRedis: reference.md, "A session with 1 ms or less
// left is not written to Redis"; one with more is.
func TestSessionAboutToExpireIsNotWrittenToRedis(t *testing.T) {
	rdb, prefix := evRedis(t)
	for _, tc := range []struct {
		left    time.Duration
		written bool
	}{{500 * time.Microsecond, false}, {time.Hour, true}} {
		src := &expiringSource{expires: time.Now().Add(tc.left)}
		c := New(src, evOptions(rdb, prefix))
		h := HashToken("tok-" + tc.left.String())
		if _, err := c.Validate(context.Background(), "tok-"+tc.left.String()); err != nil && tc.written {
			t.Fatal(err)
		}
		if got := evExists(t, rdb, c.redis.sessionKey(h)); got != tc.written {
			t.Errorf("a session with %v left: written to Redis %v, want %v", tc.left, got, tc.written)
		}
	}
}

// expiringSource knows every token, as a session that expires at expires.
type expiringSource struct{ expires time.Time }

func (s *expiringSource) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	return pgsession.Session{TokenHash: h, ID: "s", UserID: "u", ExpiresAt: s.expires}, nil
}

func (s *expiringSource) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return s.Lookup(ctx, h)
}
