package authcache

import (
	"context"
	"sync"
)

// Run does the cache's background work until ctx ends: it receives other replicas'
// evictions, retries failed Redis evictions, and warms Redis once if Options.WarmFrom is
// set. Without Redis there is nothing to do and it returns at once.
func (c *Cache) Run(ctx context.Context) {
	if c.redis == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.retryLoop(ctx) })
	if c.opts.WarmFrom != nil {
		wg.Go(func() { c.warmAtStart(ctx) })
	}
	c.redis.subscribe(ctx, c.onPeers, c.onPeerMessage)
	wg.Wait()
}
