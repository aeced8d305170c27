package authcache

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/pgsession"
)

// Reasons an eviction happens, as counted in cache_invalidations_total{reason}.
const (
	ReasonLogout = "logout"
	ReasonAdmin  = "admin"
	ReasonNotify = "notify" // a Postgres change notification
	ReasonResync = "resync" // revocations found after the change feed reconnected
	ReasonPeer   = "peer"   // another replica's eviction, received on {prefix}evict
)

// ErrBadTarget is returned for an eviction target that names nothing usable.
var ErrBadTarget = errors.New("authcache: target needs exactly one of token, tokenHash or userId")

// Target names what to evict: exactly one of a raw token, a token hash or a user id.
type Target struct {
	Token     string `json:"token,omitempty"`
	TokenHash string `json:"tokenHash,omitempty"`
	UserID    string `json:"userId,omitempty"`
}

// event is a Target reduced to what is published: never the raw token.
func (t Target) event() (pgsession.Event, error) {
	n := 0
	for _, v := range [...]string{t.Token, t.TokenHash, t.UserID} {
		if v != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return pgsession.Event{}, ErrBadTarget
	case t.Token != "":
		return pgsession.Event{TokenHash: HashToken(t.Token)}, nil
	case t.TokenHash != "" && !isTokenHash(t.TokenHash):
		return pgsession.Event{}, ErrBadTarget
	case len(t.UserID) > 128:
		return pgsession.Event{}, ErrBadTarget
	}
	return pgsession.Event{TokenHash: t.TokenHash, UserID: t.UserID}, nil
}

func isTokenHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Invalidate evicts the target from this replica's caches and from Redis, and tells every
// other replica to drop its in-process copy. It returns how many cached sessions it removed.
// If Redis cannot be reached the eviction is retried in the background until it succeeds,
// and the error is returned so the caller can say so.
func (c *Cache) Invalidate(_ context.Context, t Target, reason string) (int, error) {
	ev, err := t.event()
	if err != nil {
		return 0, err
	}
	return c.evict(ev, reason)
}

// OnChange handles a Postgres change notification (pgsession.ListenHandler.OnEvent).
func (c *Cache) OnChange(ev pgsession.Event) {
	if ev.UserID == "" && !isTokenHash(ev.TokenHash) {
		c.log.Warn("ignoring change notification without a user id or a well-formed token hash")
		return
	}
	_, _ = c.evict(ev, ReasonNotify) // failures are logged and retried by evict
}

// OnResync handles a reconnect of the change feed: events may have been missed while it was
// down, so the in-process cache is dropped and the sessions revoked since are evicted.
func (c *Cache) OnResync(hashes []string) {
	if c.local != nil {
		c.local.clear()
	}
	for _, h := range hashes {
		// token_hash is free text to Postgres; a malformed one names nothing cached.
		if isTokenHash(h) {
			_, _ = c.evict(pgsession.Event{TokenHash: h}, ReasonResync)
		}
	}
}

func (c *Cache) evict(ev pgsession.Event, reason string) (int, error) {
	evicted := map[string]bool{}
	if c.local != nil {
		if ev.UserID != "" {
			for _, h := range c.local.deleteUser(ev.UserID) {
				evicted[h] = true
			}
		} else if c.local.deleteHash(ev.TokenHash) {
			evicted[ev.TokenHash] = true
		}
	}
	var err error
	if c.redis != nil {
		var hashes []string
		if hashes, err = c.evictRedis(ev); err != nil {
			c.redisFailed("evict", err)
			c.retry.add(ev)
		}
		for _, h := range hashes {
			evicted[h] = true
		}
	}
	c.m.invalidation(reason, len(evicted))
	return len(evicted), err
}

func (c *Cache) evictRedis(ev pgsession.Event) ([]string, error) {
	payload, _ := json.Marshal(ev)
	if ev.UserID != "" {
		return c.redis.evictUser(ev.UserID, payload)
	}
	deleted, err := c.redis.evictHash(ev.TokenHash, payload)
	if deleted {
		return []string{ev.TokenHash}, err
	}
	return nil, err
}

// Run receives other replicas' evictions and retries failed Redis evictions until ctx ends.
// Without Redis it returns at once.
func (c *Cache) Run(ctx context.Context) {
	if c.redis == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.retryLoop(ctx)
	}()
	c.subscribe(ctx)
	wg.Wait()
}

// subscribe drops local copies of what other replicas evict. go-redis resubscribes by itself
// after a lost connection; messages published meanwhile are lost, so every resubscription
// after the first clears the in-process cache.
func (c *Cache) subscribe(ctx context.Context) {
	ps := c.redis.rdb.Subscribe(ctx, c.redis.evictChannel())
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions()
	subscribed := false
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-msgs:
			switch m := msg.(type) {
			case *redis.Subscription:
				if subscribed && c.local != nil {
					c.local.clear()
				}
				subscribed = true
			case *redis.Message:
				c.onPeerEviction(m.Payload)
			}
		}
	}
}

func (c *Cache) onPeerEviction(payload string) {
	var ev pgsession.Event
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		c.log.Warn("ignoring malformed eviction message", zap.Error(err))
		return
	}
	if c.local == nil {
		return
	}
	n := 0
	if ev.UserID != "" {
		n = len(c.local.deleteUser(ev.UserID))
	} else if isTokenHash(ev.TokenHash) && c.local.deleteHash(ev.TokenHash) {
		n = 1
	}
	c.m.invalidation(ReasonPeer, n)
}

// retryQueue holds Redis evictions that failed, so a revocation made while Redis was
// unreachable still lands once it is back. It is bounded: past maxRetries it stops
// remembering single evictions and instead flushes every cached session once Redis answers.
type retryQueue struct {
	mu      sync.Mutex
	pending map[pgsession.Event]struct{}
	dropped bool
}

const maxRetries = 10000

func (q *retryQueue) add(ev pgsession.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil {
		q.pending = make(map[pgsession.Event]struct{})
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
}

func (q *retryQueue) take() (map[pgsession.Event]struct{}, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, d := q.pending, q.dropped
	q.pending, q.dropped = nil, false
	return p, d
}

func (c *Cache) retryLoop(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.retryPending(ctx)
		}
	}
}

// retryPending replays the evictions that failed, or flushes everything after an overflow.
func (c *Cache) retryPending(ctx context.Context) {
	pending, overflowed := c.retry.take()
	if overflowed {
		if err := c.redis.flush(ctx); err != nil {
			c.log.Warn("flushing the cache after lost evictions failed; retrying", zap.Error(err))
			c.retry.overflow()
			return
		}
		c.log.Warn("flushed every cached session: more evictions failed while redis was down than could be remembered",
			zap.Int("limit", maxRetries))
		return
	}
	for ev := range pending {
		if _, err := c.evictRedis(ev); err != nil {
			c.retry.add(ev)
		}
	}
}
