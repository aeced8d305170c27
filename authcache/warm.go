package authcache

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/pgsession"
)

// warmBatch is how many fills Warm sends per pipelined round trip: one fill at a time took
// 6.5 s for 10,000 sessions on a loaded 2-core machine, by which time the traffic it was
// meant to serve had already gone to Postgres; batches take a fraction of a second.
const warmBatch = 256

// Warm fills Redis with the sessions load returns, so a deploy does not start cold. It
// writes only sessions that no eviction touched within the guard's lifetime (their
// generation key is absent), and only while the load is recent enough for that to hold
// (fillable), so a session revoked while warming is never written back. It returns how
// many sessions it cached.
func (c *Cache) Warm(ctx context.Context, load func(context.Context) ([]pgsession.Session, error)) (int, error) {
	if c.redis == nil {
		return 0, nil
	}
	started := time.Now()
	sessions, err := load(ctx)
	if err != nil {
		return 0, err
	}
	now := c.opts.Now()
	ttl := func(s pgsession.Session) time.Duration { return min(c.opts.SessionTTL, s.ExpiresAt.Sub(now)) }
	n := 0
	for i := 0; i < len(sessions) && ctx.Err() == nil && c.fillable(started); i += warmBatch {
		k, err := c.redis.fillMany(sessions[i:min(i+warmBatch, len(sessions))], ttl)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// warmAtStart runs Options.WarmFrom once and logs how it went. It need not wait for the
// change feed's first resync: a resync eviction either runs after a warmed write and
// deletes it, or before, and leaves the generation that stops the write.
func (c *Cache) warmAtStart(ctx context.Context) {
	n, err := c.Warm(ctx, c.opts.WarmFrom)
	if err != nil {
		c.log.Warn("cache warming incomplete", zap.Int("sessions", n), zap.Error(err))
		return
	}
	c.log.Info("cache warmed", zap.Int("sessions", n))
}
