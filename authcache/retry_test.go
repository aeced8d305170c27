package authcache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// TestOverflowedEvictionsFlushEveryCachedSession: when more evictions failed than the queue
// remembers, nothing revoked may survive, so the whole prefix goes once Redis answers.
func TestOverflowedEvictionsFlushEveryCachedSession(t *testing.T) {
	rdb := testenv.NewRedisClient(t)
	prefix := testenv.Prefix(t, rdb)
	c := New(nil, Options{Redis: rdb, Prefix: prefix, OpTimeout: time.Second, BreakerFailures: 5, BreakerOpenFor: time.Second})
	ctx := context.Background()
	for _, k := range []string{"aaaa", "neg:bbbb", "user:u1", "epoch"} {
		if err := rdb.Set(ctx, prefix+k, "7", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range maxRetries + 1 {
		c.retry.add(eviction{tokenHash: fmt.Sprintf("%064d", i)})
	}
	c.retryPending(ctx)
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 1 || keys[0] != prefix+"epoch" {
		t.Fatalf("keys after flush = %v, %v; want only the epoch", keys, err)
	}
	if epoch, _ := rdb.Get(ctx, prefix+"epoch").Result(); epoch == "7" {
		t.Fatal("the epoch must move, so in-flight fills are dropped")
	}
	if pending, overflowed := c.retry.take(); len(pending) != 0 || overflowed {
		t.Fatalf("queue after flush: %d pending, overflowed %v", len(pending), overflowed)
	}
}
