package authcache

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

const localShards = 64

// local is the bounded in-process cache in front of Redis. It holds both sessions and
// negative entries (valid == false). It is sharded so concurrent hits rarely share a lock.
//
// Fills race with evictions: a lookup that read Postgres before a revocation must not put the
// session back after the eviction ran. Every eviction first bumps gen and then deletes under
// the shard lock; a fill carries the gen it saw before its lookup and is dropped, under the
// same lock, if gen has moved since.
type local struct {
	gen      atomic.Uint64
	perShard int
	used     uint // shards in use: fewer than localShards when size is smaller, so the bound holds
	shards   [localShards]localShard
}

type localShard struct {
	mu      sync.RWMutex
	entries map[string]localEntry
}

type localEntry struct {
	session pgsession.Session
	valid   bool
	until   time.Time
}

func newLocal(size int) *local {
	used := uint(min(max(size, 1), localShards))
	l := &local{perShard: max(1, size/int(used)), used: used}
	for i := range l.shards {
		l.shards[i].entries = make(map[string]localEntry)
	}
	return l
}

func (l *local) shard(tokenHash string) *localShard {
	// The key is a hex SHA-256: its first two characters are uniformly distributed.
	return &l.shards[(fromHex(tokenHash[0])<<4|fromHex(tokenHash[1]))%l.used]
}

func fromHex(c byte) uint {
	if c >= 'a' {
		return uint(c-'a') + 10
	}
	return uint(c - '0')
}

// get returns the entry for tokenHash if it has not expired at now.
func (l *local) get(tokenHash string, now time.Time) (localEntry, bool) {
	s := l.shard(tokenHash)
	s.mu.RLock()
	e, ok := s.entries[tokenHash]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return localEntry{}, false
	}
	return e, true
}

// put stores e unless an eviction happened since gen was read. A new entry first makes
// room (localShard.makeRoom), so expired entries do not pile up in a shard.
func (l *local) put(tokenHash string, e localEntry, gen uint64, now time.Time) {
	s := l.shard(tokenHash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.gen.Load() != gen {
		return
	}
	if _, ok := s.entries[tokenHash]; !ok {
		s.makeRoom(l.perShard, now)
	}
	s.entries[tokenHash] = e
}

// sweepPerPut is how many entries a new entry looks at. Each removes those that have
// expired, so while tokens keep arriving, at most about a quarter of a shard is dead
// entries rather than the whole of it up to its bound.
const sweepPerPut = 4

// makeRoom removes the expired entries among the first sweepPerPut in (randomised) map
// order, and one more if the shard is still full: an arbitrary one, which approximates
// random eviction without the per-hit bookkeeping an LRU needs.
func (s *localShard) makeRoom(limit int, now time.Time) {
	looked := 0
	for k, e := range s.entries {
		if looked == sweepPerPut && len(s.entries) < limit {
			return
		}
		looked++
		if !now.Before(e.until) || len(s.entries) >= limit {
			delete(s.entries, k)
		}
	}
}

// deleteHash removes one token's entry and reports whether a session was held.
func (l *local) deleteHash(tokenHash string) bool {
	l.gen.Add(1)
	s := l.shard(tokenHash)
	s.mu.Lock()
	e, ok := s.entries[tokenHash]
	delete(s.entries, tokenHash)
	s.mu.Unlock()
	return ok && e.valid
}

// deleteUser removes every session of userID and returns their token hashes. It scans every
// shard: user-level events are rare and the scan of a full cache takes about a millisecond.
func (l *local) deleteUser(userID string) []string {
	l.gen.Add(1)
	var hashes []string
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if e.valid && e.session.UserID == userID {
				delete(s.entries, k)
				hashes = append(hashes, k)
			}
		}
		s.mu.Unlock()
	}
	return hashes
}

// clear drops everything, for when eviction events may have been missed.
func (l *local) clear() {
	l.gen.Add(1)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		clear(s.entries)
		s.mu.Unlock()
	}
}

func (l *local) len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
