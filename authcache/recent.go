package authcache

import (
	"sync"
	"time"
)

// recent remembers the tokens and users evicted within the primary window, so their next
// lookups read the primary (DB_PRIMARY_WINDOW): a read replica that lags by seconds would
// otherwise show a session the primary already revoked, and it would be cached again.
type recent struct {
	window time.Duration // 0: never

	mu     sync.Mutex
	hashes map[string]time.Time // token hash → until
	users  map[string]time.Time // user id → until
	// all sends every lookup to the primary until then: set when the maps were full of
	// live entries, so that forgetting one can never let a lagging replica answer.
	all time.Time
}

// maxRecent bounds each map: a bulk revocation larger than this sends every lookup to the
// primary for one window instead.
const maxRecent = 100000

// add remembers an eviction of one token or of every session of one user.
func (r *recent) add(ev eviction) {
	if r.window <= 0 {
		return
	}
	now := time.Now()
	until := now.Add(r.window)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hashes == nil {
		r.hashes, r.users = map[string]time.Time{}, map[string]time.Time{}
	}
	m, key := r.hashes, ev.tokenHash
	if ev.userID != "" {
		m, key = r.users, ev.userID
	}
	if len(m) >= maxRecent {
		for k, t := range m {
			if !now.Before(t) {
				delete(m, k)
			}
		}
		if len(m) >= maxRecent {
			clear(m)
			r.all = until
		}
	}
	m[key] = until
}

// hash reports whether lookups of this token should read the primary.
func (r *recent) hash(h string) bool {
	return r.has(func() map[string]time.Time { return r.hashes }, h)
}

// user reports whether lookups of this user's sessions should read the primary.
func (r *recent) user(u string) bool { return r.has(func() map[string]time.Time { return r.users }, u) }

func (r *recent) has(m func() map[string]time.Time, key string) bool {
	if r.window <= 0 {
		return false
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.all) {
		return true
	}
	until, ok := m()[key]
	return ok && now.Before(until)
}
