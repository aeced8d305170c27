package authcache

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/pgsession"
)

// Watch registers a long-lived connection (a WebSocket, a stream) opened under session s,
// presented with the token whose hash is tokenHash, and calls end, once, when the session
// may no longer be used. It is driven by evictions, not by polling:
//
//   - every eviction that names the token or s.UserID passes through evictLocal, whatever
//     its source (the change feed, a resync, a logout, the admin API, a peer's message);
//     it makes the watch ask the primary, past every cache, whether the session is still
//     valid. Invalid (revoked, deleted, expired) ends the connection; still valid (the
//     trigger also announces a changed expires_at or a changed user) keeps it, with its
//     expiry timer moved to the new expires_at; a primary that cannot answer keeps it too:
//     an outage must not log anyone out.
//   - when this replica may have missed evictions — the change feed resynced after a
//     reconnect, or the subscription to the other replicas' evictions came back — every
//     watch asks the primary the same way.
//   - one timer at s.ExpiresAt: the primary is asked once more, and unless it shows the
//     session extended, the connection ends (an expired session is not kept open by an
//     outage).
//
// There is no periodic revalidation: an eviction this replica never hears of is one
// published while its subscription was down (the resubscription checks every watch), one
// the change feed missed while disconnected (the resync checks every watch), or one that
// never reached Redis (the retry queue publishes it once Redis answers); a replica whose
// subscription is down listens to Postgres itself.
//
// end runs on its own goroutine, never under a lock of the Cache. stop unregisters the
// watch; end is not called once stop has returned, except if it was already running.
func (c *Cache) Watch(tokenHash string, s pgsession.Session, end func()) (stop func()) {
	w := &watch{c: c, hash: tokenHash, user: s.UserID, end: end, expires: s.ExpiresAt}
	c.watches.add(w) // before the timer: a timer that ended the watch first would leave it registered
	w.mu.Lock()
	if !s.ExpiresAt.IsZero() && !w.done {
		w.timer = time.AfterFunc(time.Until(s.ExpiresAt), w.expired)
	}
	w.mu.Unlock()
	return w.stop
}

// Watching reports how many long-lived connections are registered.
func (c *Cache) Watching() int { return c.watches.len() }

// watchSet indexes the registered watches by token hash and by user id.
type watchSet struct {
	mu     sync.Mutex
	byHash map[string]map[*watch]struct{}
	byUser map[string]map[*watch]struct{}
	n      int
}

func (ws *watchSet) add(w *watch) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.byHash == nil {
		ws.byHash, ws.byUser = map[string]map[*watch]struct{}{}, map[string]map[*watch]struct{}{}
	}
	addTo(ws.byHash, w.hash, w)
	if w.user != "" {
		addTo(ws.byUser, w.user, w)
	}
	ws.n++
}

func (ws *watchSet) remove(w *watch) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if removeFrom(ws.byHash, w.hash, w) {
		ws.n--
	}
	if w.user != "" {
		removeFrom(ws.byUser, w.user, w)
	}
}

func addTo(m map[string]map[*watch]struct{}, k string, w *watch) {
	set := m[k]
	if set == nil {
		set = map[*watch]struct{}{}
		m[k] = set
	}
	set[w] = struct{}{}
}

func removeFrom(m map[string]map[*watch]struct{}, k string, w *watch) bool {
	set := m[k]
	if _, ok := set[w]; !ok {
		return false
	}
	delete(set, w)
	if len(set) == 0 {
		delete(m, k)
	}
	return true
}

// evicted makes every watch the eviction names ask the primary. It never blocks: each
// check runs on its own goroutine.
func (ws *watchSet) evicted(ev eviction) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.n == 0 {
		return
	}
	set := ws.byHash[ev.tokenHash]
	if ev.userID != "" {
		set = ws.byUser[ev.userID]
	}
	for w := range set {
		w.kick()
	}
}

// all makes every watch ask the primary: evictions may have been missed.
func (ws *watchSet) all() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, set := range ws.byHash {
		for w := range set {
			w.kick()
		}
	}
}

func (ws *watchSet) len() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.n
}

// watch is one registered connection.
type watch struct {
	c          *Cache
	hash, user string
	end        func()

	mu       sync.Mutex
	expires  time.Time
	timer    *time.Timer // at expires; nil without an expiry
	checking bool        // a check runs
	again    bool        // another eviction arrived during it: check once more
	done     bool        // ended or stopped
}

// kick starts a check, or asks the running one to check again once it is done, so an
// eviction that lands during a check is never answered by a read that preceded it.
func (w *watch) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
	case w.checking:
		w.again = true
	default:
		w.checking = true
		go w.check()
	}
}

// expired runs at expires_at: it checks like an eviction does, and a check that cannot
// decide past expires_at ends the connection.
func (w *watch) expired() { w.kick() }

// check asks the primary until no eviction arrived meanwhile, and ends the connection if
// the session is over.
func (w *watch) check() {
	for {
		s, err := w.c.recheck(w.hash)
		now := time.Now()
		w.mu.Lock()
		if w.done {
			w.mu.Unlock()
			return
		}
		over := errors.Is(err, ErrInvalid)
		switch {
		case err == nil && !now.Before(s.ExpiresAt):
			over = true
		case err == nil:
			if !s.ExpiresAt.Equal(w.expires) && w.timer != nil {
				w.timer.Reset(time.Until(s.ExpiresAt)) // extended or shortened
			}
			w.expires = s.ExpiresAt
		case !over && !w.expires.IsZero() && !now.Before(w.expires):
			over = true // undecided, but past the last expires_at known
		case !over:
			w.c.log.Debug("long-lived connection: session check undecided; keeping it", zap.Error(err))
		}
		if over {
			w.done = true
			if w.timer != nil {
				w.timer.Stop()
			}
			w.mu.Unlock()
			w.c.watches.remove(w)
			w.c.log.Info("closing a long-lived connection: its session is no longer valid")
			w.end()
			return
		}
		if !w.again {
			w.checking = false
			w.mu.Unlock()
			return
		}
		w.again = false
		w.mu.Unlock()
	}
}

func (w *watch) stop() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.c.watches.remove(w)
}

// recheck asks the Source's primary, past every cache, whether the session of tokenHash is
// valid. It fills nothing: the caches are for requests.
func (c *Cache) recheck(tokenHash string) (pgsession.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.LookupTimeout)
	defer cancel()
	s, err := c.src.LookupPrimary(ctx, tokenHash)
	switch {
	case errors.Is(err, pgsession.ErrNotFound):
		return pgsession.Session{}, ErrInvalid
	case err != nil:
		return pgsession.Session{}, errors.Join(ErrUnavailable, err)
	}
	return s, nil
}
