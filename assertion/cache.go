package assertion

import (
	"hash/maphash"
	"math"
	"sync"
)

// cacheShards spreads sessions over locks, so concurrent requests rarely share one.
const cacheShards = 16

// cache keeps the last assertion signed for each session, bounded: a full shard drops the
// assertions due for renewal among a random sample (Go's map order), or the one nearest to
// renewal.
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]struct {
		mu sync.RWMutex
		m  map[string]cached
	}
}

// cacheKey is everything an assertion states about a session but the times: a session
// whose user changed email or name gets a fresh assertion at once.
type cacheKey struct {
	UserID, SessionID, Email, FirstName, LastName, Username string
	SessionExpiresAt                                        int64
}

func cacheKeyOf(id Identity) cacheKey {
	return cacheKey{id.UserID, id.SessionID, id.Email, id.FirstName, id.LastName, id.Username, id.SessionExpiresAt.Unix()}
}

type cached struct {
	key       cacheKey
	token     string
	iat       int64 // a clock that went back must not reuse an assertion from the future
	refreshAt int64 // Unix seconds; from then on the assertion is signed again
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cached)
	}
	return c
}

func (c *cache) shard(sessionID string) int {
	return int(maphash.String(c.seed, sessionID) % cacheShards)
}

func (c *cache) get(k cacheKey, now int64) (string, bool) {
	sh := &c.shards[c.shard(k.SessionID)]
	sh.mu.RLock()
	e, ok := sh.m[k.SessionID]
	sh.mu.RUnlock()
	if !ok || e.key != k || now >= e.refreshAt || now < e.iat {
		return "", false
	}
	return e.token, true
}

func (c *cache) put(k cacheKey, token string, refreshAt, iat int64) {
	sh := &c.shards[c.shard(k.SessionID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[k.SessionID]; !ok && len(sh.m) >= c.perShard {
		c.evict(sh.m, iat)
	}
	sh.m[k.SessionID] = cached{key: k, token: token, iat: iat, refreshAt: refreshAt}
}

// evictSample bounds the work of making room: that many entries, in Go's random map order.
const evictSample = 32

// evict makes room in a full shard: it drops the entries due for renewal among a random
// sample or, if none is, the one of the sample nearest to renewal.
func (c *cache) evict(m map[string]cached, now int64) {
	n, freed := 0, false
	var soonest string
	first := int64(math.MaxInt64)
	for sid, e := range m {
		if e.refreshAt <= now {
			delete(m, sid)
			freed = true
		} else if e.refreshAt < first {
			soonest, first = sid, e.refreshAt
		}
		if n++; n == evictSample {
			break
		}
	}
	if !freed {
		delete(m, soonest)
	}
}

// len is the number of assertions held, for tests.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
