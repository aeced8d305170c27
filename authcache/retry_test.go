package authcache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// TestOverflowedEvictionsFlushEveryCachedSession: when more evictions failed than the queue
// remembers, nothing revoked may survive, so the whole prefix goes once Redis answers, and
// lookups that started before it went are kept from filling.
func TestOverflowedEvictionsFlushEveryCachedSession(t *testing.T) {
	rdb := testenv.NewRedisClient(t)
	prefix := testenv.Prefix(t, rdb)
	c := New(nil, Options{Redis: rdb, Prefix: prefix, OpTimeout: time.Second, LookupTimeout: time.Second,
		BreakerFailures: 5, BreakerOpenFor: time.Second})
	ctx := context.Background()
	for _, k := range []string{"{aaaa}", "neg:{bbbb}", "user:{u1}", "gen:{aaaa}"} {
		if err := rdb.Set(ctx, prefix+k, "7", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range maxRetries + 1 {
		c.retry.add(eviction{tokenHash: fmt.Sprintf("%064d", i)})
	}
	if !c.retry.busy() {
		t.Fatal("the queue does not say evictions wait")
	}
	before := time.Now()
	c.retryPending(ctx)
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys after flush = %v, %v; want none", keys, err)
	}
	if pending, overflowed := c.retry.take(); len(pending) != 0 || overflowed || c.retry.busy() {
		t.Fatalf("queue after flush: %d pending, overflowed %v, busy %v", len(pending), overflowed, c.retry.busy())
	}
	if c.fillable(before) || !c.fillable(time.Now()) {
		t.Fatal("a lookup that started before the flush may fill, or one after may not")
	}
}
