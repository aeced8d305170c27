package authcache

import (
	"encoding/json"

	"go.uber.org/zap"
)

// peerMessage is the wire format of an eviction between replicas, published on
// {prefix}evict: exactly one field is set, and never a raw token.
type peerMessage struct {
	TokenHash string `json:"tokenHash,omitempty"`
	UserID    string `json:"userId,omitempty"`
}

func encodePeerMessage(ev eviction) []byte {
	b, _ := json.Marshal(peerMessage{TokenHash: ev.tokenHash, UserID: ev.userID}) // cannot fail: two strings
	return b
}

// decodePeerMessage reads a peer's eviction; a message that names nothing evictable is an
// error, since a peer is another process and its bytes are not trusted.
func decodePeerMessage(payload string) (eviction, error) {
	var m peerMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return eviction{}, err
	}
	return Target{TokenHash: m.TokenHash, UserID: m.UserID}.eviction()
}

// onPeerEviction drops what another replica evicted from the in-process cache. That replica
// already evicted Redis: nothing is written back.
func (c *Cache) onPeerEviction(payload string) {
	ev, err := decodePeerMessage(payload)
	if err != nil {
		c.log.Warn("ignoring malformed eviction message", zap.Error(err), zap.Int("bytes", len(payload)))
		return
	}
	c.m.invalidation(ReasonPeer, len(c.evictLocal(ev)))
}

// onSubscribed runs when the subscription to {prefix}evict is (re)established. After a
// reconnect, evictions published meanwhile were lost, so the in-process cache is dropped.
func (c *Cache) onSubscribed(first bool) {
	if !first && c.local != nil {
		c.local.clear()
	}
}
