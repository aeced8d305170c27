package authcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// TestRawTokenNeverReachesRedis drives every cache operation that writes to Redis (a miss
// filling a session and a negative entry, hits, warming, evictions by token, hash and user,
// which also publish) and then scans every key and value of the shared Redis, under every
// prefix and in every database, for the raw tokens. A token written anywhere turns it red,
// not only one written under this test's prefix.
func TestRawTokenNeverReachesRedis(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	user := f.db.User(t, testenv.UserSpec{FirstName: "José"})
	warmed, _ := f.db.Session(t, user, testenv.SessionSpec{LastActivityAt: time.Now()})
	valid, _ := f.db.Session(t, user, testenv.SessionSpec{})
	other, otherHash := f.db.Session(t, f.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	unknown := "unknown-" + valid
	c := f.cache(true, time.Minute)

	if _, err := c.Warm(ctx, func(ctx context.Context) ([]pgsession.Session, error) {
		return f.store.Active(ctx, time.Now().Add(-time.Minute), 100)
	}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{warmed, valid, other, valid, unknown, unknown} {
		_, _ = c.Validate(ctx, tok)
	}
	for _, target := range []authcache.Target{{Token: valid}, {TokenHash: otherHash}, {UserID: user}} {
		if _, err := c.Invalidate(ctx, target, authcache.ReasonAdmin); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = c.Validate(ctx, valid) // filled again after the evictions
	if n, err := f.rdb.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Fatalf("Redis holds %d keys (%v): the scan would prove nothing", n, err)
	}
	testenv.AssertNoRawTokens(t, testenv.TokenScan{Redis: f.rdb, Secrets: []string{warmed, valid, other, unknown}})
}
