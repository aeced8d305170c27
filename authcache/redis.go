package authcache

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/authsidecar/authsidecar/pgsession"
)

// redisStore is the Redis half of the cache and the only code that talks to the Redis
// client. Every call goes through the breaker and runs under its own OpTimeout, so a hung
// Redis costs a request at most one timeout and then nothing while the breaker is open.
//
// Key layout (p = prefix, h = token hash):
//
//	p+h          the session, encodeSession's compact string, TTL ≤ the session's expiry
//	p+"neg:"+h   a negative entry, TTL NegativeTTL
//	p+"user:"+u  SET of the user's token hashes, TTL the longest of its members'
//	p+"epoch"    counter bumped by every eviction; a fill is dropped if it moved (see fill)
//	p+"evict"    the pub/sub channel every eviction is published on
type redisStore struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
	breaker *gobreaker.CircuitBreaker[any]
}

func (s *redisStore) sessionKey(h string) string { return s.prefix + h }
func (s *redisStore) negKey(h string) string     { return s.prefix + "neg:" + h }
func (s *redisStore) userKey(u string) string    { return s.prefix + "user:" + u }
func (s *redisStore) epochKey() string           { return s.prefix + "epoch" }
func (s *redisStore) evictChannel() string       { return s.prefix + "evict" }

// do runs f under the breaker with a fresh deadline, detached from any caller's context.
// redis.Nil is an answer, not a failure.
func (s *redisStore) do(f func(ctx context.Context) error) error {
	_, err := s.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		return nil, f(ctx)
	})
	return err
}

// lookup is what one read round trip tells about a token.
type lookup struct {
	value []byte // encoded session, nil if absent
	neg   bool   // a negative entry exists
	epoch string // the eviction counter, to guard a later fill
}

// get reads the session, its negative entry and the eviction epoch in one MGET.
func (s *redisStore) get(h string) (lookup, error) {
	var l lookup
	err := s.do(func(ctx context.Context) error {
		vals, err := s.rdb.MGet(ctx, s.sessionKey(h), s.negKey(h), s.epochKey()).Result()
		if err != nil {
			return err
		}
		if v, ok := vals[0].(string); ok {
			l.value = []byte(v)
		}
		l.neg = vals[1] != nil
		l.epoch, _ = vals[2].(string)
		return nil
	})
	return l, err
}

// epoch reads the eviction counter alone, for a fill that has no lookup before it (warming).
func (s *redisStore) epoch() (string, error) {
	var epoch string
	err := s.do(func(ctx context.Context) error {
		v, err := s.rdb.Get(ctx, s.epochKey()).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		epoch = v
		return err
	})
	return epoch, err
}

// fillScript writes a session (or, with an empty value, a negative entry) only if no eviction
// happened since the reader saw epoch ARGV[1]. Checking inside Redis makes the check and the
// write one atomic step, across every replica.
var fillScript = redis.NewScript(`
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return 1
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1`)

// fill caches a session for ttl, with its index entry, in one round trip.
func (s *redisStore) fill(sess pgsession.Session, ttl time.Duration, epoch string) error {
	return s.do(func(ctx context.Context) error {
		keys, args := s.fillArgs(sess, ttl, epoch)
		return fillScript.Run(ctx, s.rdb, keys, args...).Err()
	})
}

// fillMany caches sessions, each for ttl(session), in one pipelined round trip. It returns
// how many were written: the epoch guard drops them all if an eviction ran since epoch.
func (s *redisStore) fillMany(sessions []pgsession.Session, ttl func(pgsession.Session) time.Duration, epoch string) (int, error) {
	written := 0
	err := s.do(func(ctx context.Context) error {
		if err := fillScript.Load(ctx, s.rdb).Err(); err != nil {
			return err
		}
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, sess := range sessions {
				if d := ttl(sess); d > time.Millisecond {
					keys, args := s.fillArgs(sess, d, epoch)
					fillScript.EvalSha(ctx, p, keys, args...)
				}
			}
			return nil
		})
		for _, c := range cmds {
			if n, _ := c.(*redis.Cmd).Int(); n == 1 {
				written++
			}
		}
		return err
	})
	return written, err
}

func (s *redisStore) fillArgs(sess pgsession.Session, ttl time.Duration, epoch string) ([]string, []any) {
	return []string{s.epochKey(), s.sessionKey(sess.TokenHash), s.userKey(sess.UserID)},
		[]any{epoch, encodeSession(sess), ttl.Milliseconds(), sess.TokenHash}
}

// fillNegative remembers for ttl that h matches no valid session.
func (s *redisStore) fillNegative(h string, ttl time.Duration, epoch string) error {
	return s.do(func(ctx context.Context) error {
		keys := []string{s.epochKey(), s.negKey(h), ""}
		return fillScript.Run(ctx, s.rdb, keys, epoch, "", ttl.Milliseconds(), h).Err()
	})
}

// evictHash deletes a token's session, negative entry and index membership, bumps the epoch
// and publishes msg to the other replicas in one transaction, after one read to learn the
// session's user. It reports whether a session was cached.
func (s *redisStore) evictHash(h string, msg []byte) (bool, error) {
	var deleted *redis.IntCmd
	err := s.do(func(ctx context.Context) error {
		userID := ""
		v, err := s.rdb.Get(ctx, s.sessionKey(h)).Bytes()
		switch {
		case err == nil:
			if sess, err := decodeSession(h, v); err == nil {
				userID = sess.UserID
			}
		case !errors.Is(err, redis.Nil):
			return err
		}
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			deleted = p.Del(ctx, s.sessionKey(h))
			p.Del(ctx, s.negKey(h))
			if userID != "" {
				p.SRem(ctx, s.userKey(userID), h)
			}
			p.Incr(ctx, s.epochKey())
			p.Publish(ctx, s.evictChannel(), msg)
			return nil
		})
		return err
	})
	if err != nil {
		return false, err
	}
	return deleted.Val() > 0, nil
}

// evictUser deletes every cached session of a user through the per-user index (no SCAN) and
// returns the token hashes whose session was cached. The index is WATCHed: a fill that adds a
// session after the index was read (its epoch still current) aborts the transaction, which is
// then retried, so that session cannot survive the eviction unindexed.
func (s *redisStore) evictUser(userID string, msg []byte) ([]string, error) {
	var evicted []string
	err := s.do(func(ctx context.Context) error {
		var err error
		for range maxEvictAttempts {
			if evicted, err = s.evictUserOnce(ctx, userID, msg); !errors.Is(err, redis.TxFailedErr) {
				return err
			}
		}
		return err
	})
	return evicted, err
}

// maxEvictAttempts bounds evictUser's retries when fills keep racing it; past it the
// eviction fails and is queued for retry like any other failure.
const maxEvictAttempts = 5

func (s *redisStore) evictUserOnce(ctx context.Context, userID string, msg []byte) ([]string, error) {
	var evicted []string
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		hashes, err := tx.SMembers(ctx, s.userKey(userID)).Result()
		if err != nil {
			return err
		}
		dels := make([]*redis.IntCmd, len(hashes))
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, h := range hashes {
				dels[i] = p.Del(ctx, s.sessionKey(h))
			}
			p.Del(ctx, s.userKey(userID))
			p.Incr(ctx, s.epochKey())
			p.Publish(ctx, s.evictChannel(), msg)
			return nil
		})
		if err != nil {
			return err
		}
		for i, d := range dels {
			if d.Val() > 0 {
				evicted = append(evicted, hashes[i])
			}
		}
		return nil
	}, s.userKey(userID))
	return evicted, err
}

// flush deletes every cached session, negative entry and user index under the prefix, for
// when evictions were lost. The epoch moves first, so no fill that read the old one can land
// during or after the scan; the epoch key itself is kept, so its values never repeat. It
// SCANs: it runs only after an overflow, and gives up when ctx ends.
func (s *redisStore) flush(ctx context.Context) error {
	if err := s.rdb.Incr(ctx, s.epochKey()).Err(); err != nil {
		return err
	}
	iter := s.rdb.Scan(ctx, 0, globEscape(s.prefix)+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if k := iter.Val(); k != s.epochKey() {
			batch = append(batch, k)
		}
		if len(batch) == 1000 {
			if err := s.rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return s.rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}

// subscribe delivers what other replicas publish on the eviction channel until ctx ends.
// go-redis resubscribes by itself after a lost connection; onSubscribed runs on every
// (re)subscription, with first false after a reconnect, when messages may have been lost.
func (s *redisStore) subscribe(ctx context.Context, onSubscribed func(first bool), onMessage func(payload string)) {
	ps := s.rdb.Subscribe(ctx, s.evictChannel())
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-msgs:
			switch m := msg.(type) {
			case *redis.Subscription:
				onSubscribed(first)
				first = false
			case *redis.Message:
				onMessage(m.Payload)
			}
		}
	}
}

// globEscape quotes the characters SCAN MATCH reads as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
