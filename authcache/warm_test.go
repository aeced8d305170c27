package authcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

func TestWarmLoadsOnlyActiveSessions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	user := f.db.User(t, testenv.UserSpec{})
	_, active := f.db.Session(t, user, testenv.SessionSpec{LastActivityAt: time.Now().Add(-time.Minute)})
	_, expired := f.db.Session(t, user, testenv.SessionSpec{ExpiresIn: -time.Minute})
	_, revoked := f.db.Session(t, user, testenv.SessionSpec{Revoked: true})
	_, idle := f.db.Session(t, user, testenv.SessionSpec{LastActivityAt: time.Now().Add(-time.Hour)})

	c := f.cache(true, 0)
	n, err := c.Warm(ctx, func(ctx context.Context) ([]pgsession.Session, error) {
		return f.store.Active(ctx, time.Now().Add(-5*time.Minute), 100)
	})
	if err != nil || n != 1 {
		t.Fatalf("warmed %d, %v; want 1", n, err)
	}
	for hash, want := range map[string]int64{active: 1, expired: 0, revoked: 0, idle: 0} {
		if got, err := f.rdb.Exists(ctx, sessionKey(f.prefix, hash)).Result(); err != nil || got != want {
			t.Errorf("key of %s: exists = %d, %v; want %d", hash[:8], got, err, want)
		}
	}
	if ttl, _ := f.rdb.PTTL(ctx, sessionKey(f.prefix, active)).Result(); ttl <= 0 || ttl > 5*time.Minute {
		t.Errorf("warmed TTL = %v", ttl)
	}
	if m, _ := f.rdb.SIsMember(ctx, userKey(f.prefix, user), active).Result(); !m {
		t.Error("warmed session missing from the user index")
	}
	// Warming reads through Active in one query, not one Lookup per session.
	if f.src.calls.Load() != 0 {
		t.Fatal("warming must not go through Lookup")
	}
}
