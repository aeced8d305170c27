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

// Warm fills Redis with the sessions load returns, so a deploy does not start cold. The
// eviction epoch is read before load runs and every write is guarded by it, so a session
// revoked while warming is never written back. It returns how many sessions it cached.
func (c *Cache) Warm(ctx context.Context, load func(context.Context) ([]pgsession.Session, error)) (int, error) {
	if c.redis == nil {
		return 0, nil
	}
	epoch, err := c.redis.epoch()
	if err != nil {
		return 0, err
	}
	sessions, err := load(ctx)
	if err != nil {
		return 0, err
	}
	now := c.opts.Now()
	ttl := func(s pgsession.Session) time.Duration { return min(c.opts.SessionTTL, s.ExpiresAt.Sub(now)) }
	n := 0
	for i := 0; i < len(sessions) && ctx.Err() == nil; i += warmBatch {
		k, err := c.redis.fillMany(sessions[i:min(i+warmBatch, len(sessions))], ttl, epoch)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// warmAtStart runs Options.WarmFrom once, after the change feed's first resync when
// Options.AwaitResync is set, and logs how it went.
func (c *Cache) warmAtStart(ctx context.Context) {
	if c.opts.AwaitResync {
		select {
		case <-c.resynced:
		case <-ctx.Done():
			return
		}
	}
	n, err := c.Warm(ctx, c.opts.WarmFrom)
	if err != nil {
		c.log.Warn("cache warming incomplete", zap.Int("sessions", n), zap.Error(err))
		return
	}
	c.log.Info("cache warmed", zap.Int("sessions", n))
}
