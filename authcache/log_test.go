package authcache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
)

// oneSession is a Source that knows one token.
type oneSession struct{ token string }

func (o oneSession) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return o.Lookup(ctx, h)
}

func (s oneSession) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	if h != authcache.HashToken(s.token) {
		return pgsession.Session{}, pgsession.ErrNotFound
	}
	return pgsession.Session{TokenHash: h, ID: "s1", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func localCache(log *zap.Logger, token string) *authcache.Cache {
	return authcache.New(oneSession{token}, authcache.Options{
		LocalTTL: time.Minute, LocalSize: 100, NegativeTTL: time.Minute, LookupTimeout: time.Second, Logger: log,
	})
}

func TestCacheEventsAreLoggedAtDebugWithLatency(t *testing.T) {
	const token = "raw-token-never-logged"
	core, logs := observer.New(zapcore.DebugLevel)
	c := localCache(zap.New(core), token)
	for _, tok := range []string{token, token, "other-token"} {
		_, _ = c.Validate(context.Background(), tok)
	}

	type event struct {
		msg, source, hash string
		valid             bool
	}
	h, other := authcache.HashToken(token)[:8], authcache.HashToken("other-token")[:8]
	want := []event{{"cache miss", "postgres", h, true}, {"cache hit", "local", h, true}, {"cache miss", "postgres", other, false}}
	entries := logs.All()
	if len(entries) != len(want) {
		t.Fatalf("%d log entries, want %d: %v", len(entries), len(want), entries)
	}
	for i, e := range entries {
		f := e.ContextMap()
		got := event{e.Message, fmt.Sprint(f["source"]), fmt.Sprint(f["tokenHash"]), f["valid"] == true}
		if _, hasLatency := f["latency"].(time.Duration); got != want[i] || e.Level != zapcore.DebugLevel || !hasLatency {
			t.Errorf("entry %d = %s %v, want %+v at debug with a latency", i, e.Level, f, want[i])
		}
	}
}

func TestCacheEventLogCostsNothingWhenDebugIsOff(t *testing.T) {
	const token = "some-token"
	core, logs := observer.New(zapcore.InfoLevel)
	allocs := func(log *zap.Logger) float64 {
		c := localCache(log, token)
		_, _ = c.Validate(context.Background(), token) // fill the local cache
		return testing.AllocsPerRun(200, func() { _, _ = c.Validate(context.Background(), token) })
	}
	withInfo, withNop := allocs(zap.New(core)), allocs(zap.NewNop())
	if withInfo != withNop || logs.Len() != 0 {
		t.Fatalf("a local hit allocates %.0f times with an info logger, %.0f with none (%d entries); want equal and no entries",
			withInfo, withNop, logs.Len())
	}
}
