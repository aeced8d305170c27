package authcache

import (
	"encoding/json"
	"errors"
	"sync"

	"go.uber.org/zap"
)

// peerMessage is the wire format between replicas, published on {prefix}evict: an eviction
// (exactly one of TokenHash and UserID, never a raw token), or a note about the change feed.
// Replicas that do not know a field ignore it.
type peerMessage struct {
	TokenHash string `json:"tokenHash,omitempty"`
	UserID    string `json:"userId,omitempty"`
	// Feed is "standby-free" when the replica that waited to take the change feed over has
	// left that slot, so an idle replica should take it (see pgsession.FeedOptions.Wake).
	Feed string `json:"feed,omitempty"`
}

const feedStandbyFree = "standby-free"

func encodePeerMessage(ev eviction) []byte {
	b, _ := json.Marshal(peerMessage{TokenHash: ev.tokenHash, UserID: ev.userID}) // cannot fail: strings
	return b
}

// decodePeerMessage reads a peer's message: an eviction, or (ok false) a note about the
// feed. A peer is another process and its bytes are not trusted: a message that names
// nothing usable is an error.
func decodePeerMessage(payload string) (ev eviction, feed string, err error) {
	var m peerMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return eviction{}, "", err
	}
	if m.Feed != "" {
		if m.Feed != feedStandbyFree || m.TokenHash != "" || m.UserID != "" {
			return eviction{}, "", errors.New("unknown feed note")
		}
		return eviction{}, m.Feed, nil
	}
	ev, err = Target{TokenHash: m.TokenHash, UserID: m.UserID}.eviction()
	return ev, "", err
}

// onPeerMessage drops what another replica evicted from the in-process cache (that replica
// already evicted Redis: nothing is written back), or passes a feed note on.
func (c *Cache) onPeerMessage(payload string) {
	ev, feed, err := decodePeerMessage(payload)
	switch {
	case err != nil:
		c.log.Warn("ignoring malformed peer message", zap.Error(err), zap.Int("bytes", len(payload)))
	case feed == feedStandbyFree:
		select {
		case c.wake <- struct{}{}:
		default: // a wake-up is already waiting
		}
	default:
		c.m.invalidation(ReasonPeer, len(c.evictLocal(ev)))
	}
}

// onPeers runs when the subscription to {prefix}evict comes up or goes down. When it
// comes back, evictions published meanwhile were lost, so the in-process cache is dropped
// and every long-lived connection checks its session.
func (c *Cache) onPeers(up bool) {
	if !c.peers.set(up) {
		return
	}
	if c.local != nil {
		c.local.clear()
	}
	c.watches.all()
}

// PeersUp reports whether this replica receives the other replicas' evictions (its
// subscription to {prefix}evict is up), and a channel closed when that changes. It is what
// pgsession.FeedOptions.Shared asks: while it is true, one replica relays the change feed
// for all. Without Redis it is always false.
func (c *Cache) PeersUp() (bool, <-chan struct{}) { return c.peers.get() }

// FeedWake receives when a peer says the change feed's standby slot is free
// (pgsession.FeedOptions.Wake).
func (c *Cache) FeedWake() <-chan struct{} { return c.wake }

// AnnounceStandbyFree tells the other replicas that the change feed's standby slot is free
// (pgsession.FeedOptions.StandbyFreed). A failure is logged: idle replicas also try on
// their own, less often.
func (c *Cache) AnnounceStandbyFree() {
	if c.redis == nil {
		return
	}
	msg, _ := json.Marshal(peerMessage{Feed: feedStandbyFree}) // cannot fail
	if err := c.redis.publish(msg); err != nil {
		c.log.Warn("could not tell the other replicas that the feed's standby slot is free", zap.Error(err))
	}
}

// peerState is whether the subscription is up, with a channel closed on every change.
type peerState struct {
	mu      sync.Mutex
	up      bool
	wasUp   bool
	changed chan struct{}
}

func (p *peerState) init() { p.changed = make(chan struct{}) }

// set records the state and reports whether the subscription came back after being down.
func (p *peerState) set(up bool) (cameBack bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if up == p.up {
		return false
	}
	cameBack = up && p.wasUp
	p.up, p.wasUp = up, p.wasUp || up
	close(p.changed)
	p.changed = make(chan struct{})
	return cameBack
}

func (p *peerState) get() (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up, p.changed
}
