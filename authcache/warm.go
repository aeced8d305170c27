package authcache

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/pgsession"
)

// Warm fills Redis with the sessions load returns, so a deploy does not start cold. The
// eviction epoch is read before load runs and every write is guarded by it, so a session
// revoked while warming is never written back. It returns how many sessions it cached.
func (c *Cache) Warm(ctx context.Context, load func(context.Context) ([]pgsession.Session, error)) (int, error) {
	if c.redis == nil {
		return 0, nil
	}
	var epoch string
	err := c.redis.do(func(ctx context.Context) error {
		v, err := c.redis.rdb.Get(ctx, c.redis.epochKey()).Result()
		if err == redis.Nil {
			return nil
		}
		epoch = v
		return err
	})
	if err != nil {
		return 0, err
	}
	sessions, err := load(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sessions {
		if ctx.Err() != nil {
			break
		}
		ttl := min(c.opts.SessionTTL, s.ExpiresAt.Sub(c.opts.Now()))
		if ttl <= time.Millisecond {
			continue
		}
		if err := c.redis.fill(s.TokenHash, s.UserID, encodeSession(s), ttl, epoch); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
