package authcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// retryQueue holds Redis evictions that failed, so a revocation made while Redis was
// unreachable still lands once it is back. It is bounded: past maxRetries it stops
// remembering single evictions and instead flushes every cached session once Redis answers.
type retryQueue struct {
	mu      sync.Mutex
	pending map[eviction]struct{}
	dropped bool
	waiting atomic.Bool // pending or dropped: read on every Redis lookup without the lock
}

const maxRetries = 10000

// retryEvery is how often failed evictions are replayed.
const retryEvery = 500 * time.Millisecond

func (q *retryQueue) add(ev eviction) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting.Store(true)
	if q.pending == nil {
		q.pending = make(map[eviction]struct{})
	}
	if len(q.pending) >= maxRetries {
		q.dropped = true
		return
	}
	q.pending[ev] = struct{}{}
}

// overflow forgets single evictions in favour of one flush.
func (q *retryQueue) overflow() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending, q.dropped = nil, true
	q.waiting.Store(true)
}

// take hands the waiting evictions to the caller, which puts back (add, overflow) what
// it could not replay, and then calls settled.
func (q *retryQueue) take() (map[eviction]struct{}, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, d := q.pending, q.dropped
	q.pending, q.dropped = nil, false
	return p, d
}

// settled clears waiting if nothing was put back since take, and reports whether it did.
func (q *retryQueue) settled() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) > 0 || q.dropped {
		return false
	}
	q.waiting.Store(false)
	return true
}

// busy reports whether evictions wait to be replayed in Redis.
func (q *retryQueue) busy() bool { return q.waiting.Load() }

// retryLoop replays failed evictions every retryEvery until ctx ends.
func (c *Cache) retryLoop(ctx context.Context) {
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.BreakerState() != "closed" {
				// While Redis is skipped, keep a cluster's map of masters current, so the
				// breaker's probe finds one that took over.
				c.redis.refreshTopology()
			}
			c.retryPending(ctx)
		}
	}
}

// retryPending replays the evictions that failed, or flushes everything after an overflow.
// Until they have all landed, lookups skip Redis (Cache.loadRedis); once they have, a
// lookup that started before is still kept from filling (Cache.fillable): it may have read
// Postgres before a revocation whose eviction only just landed.
func (c *Cache) retryPending(ctx context.Context) {
	pending, overflowed := c.retry.take()
	if !overflowed && len(pending) == 0 {
		return
	}
	if overflowed {
		if err := c.redis.flush(ctx); err != nil {
			c.redisFailed("flush after lost evictions", err)
			c.retry.overflow()
			return
		}
		c.log.Warn("flushed every cached session: more evictions failed while redis was down than could be remembered",
			zap.Int("limit", maxRetries))
		pending = nil // the flush covers them
	}
	for ev := range pending {
		if _, err := c.evictRedis(ev); err != nil {
			c.redisFailed("evict retry", err)
			c.retry.add(ev)
		}
	}
	c.fillsAfter.Store(time.Now().UnixNano())
	c.retry.settled()
}
