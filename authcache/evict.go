package authcache

import (
	"context"
	"errors"

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

// eviction is what is forgotten: one token's session, or every session of one user. It is
// comparable, so the retry queue can key on it, and it never holds a raw token.
type eviction struct {
	tokenHash string
	userID    string
}

// maxUserIDLen bounds a user id taken from a request or a peer: ids are UUIDs.
const maxUserIDLen = 128

// eviction reduces a Target to what is evicted and published: never the raw token.
func (t Target) eviction() (eviction, error) {
	n := 0
	for _, v := range [...]string{t.Token, t.TokenHash, t.UserID} {
		if v != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return eviction{}, ErrBadTarget
	case t.Token != "":
		return eviction{tokenHash: HashToken(t.Token)}, nil
	case t.TokenHash != "" && !isTokenHash(t.TokenHash):
		return eviction{}, ErrBadTarget
	case len(t.UserID) > maxUserIDLen:
		return eviction{}, ErrBadTarget
	}
	return eviction{tokenHash: t.TokenHash, userID: t.UserID}, nil
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
	ev, err := t.eviction()
	if err != nil {
		return 0, err
	}
	return c.evict(ev, reason)
}

// Changed handles a Postgres change notification: it implements pgsession.Sink.
func (c *Cache) Changed(ev pgsession.Event) {
	if ev.UserID == "" && !isTokenHash(ev.TokenHash) {
		c.log.Warn("ignoring change notification without a user id or a well-formed token hash")
		return
	}
	_, _ = c.evict(eviction{tokenHash: ev.TokenHash, userID: ev.UserID}, ReasonNotify) // failures are logged and retried by evict
}

// Resynced handles a (re)connect of the change feed, which may have missed events: the
// in-process cache is dropped and the sessions revoked since are evicted. It implements
// pgsession.Sink.
func (c *Cache) Resynced(hashes []string) {
	if c.local != nil {
		c.local.clear()
	}
	for _, h := range hashes {
		// token_hash is free text to Postgres; a malformed one names nothing cached.
		if isTokenHash(h) {
			_, _ = c.evict(eviction{tokenHash: h}, ReasonResync)
		}
	}
	// The resync finds revoked and expired rows only: a deleted row or a changed user
	// missed meanwhile is found by asking the primary for every open connection.
	c.watches.all()
}

// evict forgets ev in this process, then in Redis, publishing it to the other replicas.
func (c *Cache) evict(ev eviction, reason string) (int, error) {
	evicted := map[string]bool{}
	for _, h := range c.evictLocal(ev) {
		evicted[h] = true
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

// evictLocal drops ev from the in-process cache and returns the hashes of the sessions it
// held. Every eviction passes here, whatever its source, so it also starts the primary
// window of the token or user, and tells the long-lived connections under that token or
// user to check their session (watch.go).
func (c *Cache) evictLocal(ev eviction) []string {
	c.recent.add(ev)
	defer c.watches.evicted(ev)
	switch {
	case c.local == nil:
		return nil
	case ev.userID != "":
		return c.local.deleteUser(ev.userID)
	case c.local.deleteHash(ev.tokenHash):
		return []string{ev.tokenHash}
	}
	return nil
}

// evictRedis deletes ev from Redis and publishes it; it returns the hashes whose session
// Redis held.
func (c *Cache) evictRedis(ev eviction) ([]string, error) {
	msg := encodePeerMessage(ev)
	if ev.userID != "" {
		return c.redis.evictUser(ev.userID, msg)
	}
	deleted, err := c.redis.evictHash(ev.tokenHash, msg)
	if deleted {
		return []string{ev.tokenHash}, err
	}
	return nil, err
}
