package authcache

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/authsidecar/authsidecar/pgsession"
)

// redisStore is the Redis half of the cache and the only code that talks to the Redis
// client, in any mode: a single node, Sentinel or Cluster. Every call goes through the
// breaker and runs under its own OpTimeout, so a hung Redis costs a request at most one
// timeout and then nothing while the breaker is open.
//
// Key layout (p = prefix, h = token hash, u = user id). Every key carries a hash tag, so a
// token's keys share one cluster slot, and a user's keys another:
//
//	p{h}                 the session, encodeSession's compact string, TTL ≤ its expiry
//	p neg:{h}            a negative entry, TTL NegativeTTL
//	p gen:{h}            the token's eviction generation, bumped by every eviction of it
//	p user:{u}           SET of the user's token hashes, TTL the longest of its members'
//	p user-evicted:{u}   present for guardTTL after the user was evicted
//	p evict              the pub/sub channel every eviction is published on
//
// No write-back: a reader reads gen:{h} with the session (one MGET) before it asks
// Postgres, and its fill lands only if gen:{h} is unchanged, checked inside Redis (fill).
// A fill first adds the hash to user:{u} unless user-evicted:{u} exists, so a user eviction
// either finds the hash in the index (and bumps its generation) or stops the fill. Each of
// these steps touches one slot; across slots the order index-then-fill makes it safe.
type redisStore struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	// guardTTL is how long generations and user tombstones live. A fill whose read is
	// older than half of it is dropped before it is sent (Cache.fillable), so a generation
	// can never expire under a fill that needed it.
	guardTTL time.Duration
	// cluster is set for a Redis Cluster, where one script may touch one slot only.
	cluster bool
	breaker *gobreaker.CircuitBreaker[any]
}

// newRedisStore is the Redis layer of a Cache with options o.
func newRedisStore(o Options, cb *gobreaker.CircuitBreaker[any]) *redisStore {
	_, cluster := o.Redis.(*redis.ClusterClient)
	return &redisStore{rdb: o.Redis, prefix: o.Prefix, timeout: o.OpTimeout, cluster: cluster, breaker: cb,
		// Four times the slowest lookup's read-to-fill time, and at least a minute.
		guardTTL: max(time.Minute, 4*(o.LookupTimeout+2*o.OpTimeout))}
}

func (s *redisStore) sessionKey(h string) string     { return s.prefix + "{" + h + "}" }
func (s *redisStore) negKey(h string) string         { return s.prefix + "neg:{" + h + "}" }
func (s *redisStore) genKey(h string) string         { return s.prefix + "gen:{" + h + "}" }
func (s *redisStore) userKey(u string) string        { return s.prefix + "user:{" + u + "}" }
func (s *redisStore) userEvictedKey(u string) string { return s.prefix + "user-evicted:{" + u + "}" }
func (s *redisStore) evictChannel() string           { return s.prefix + "evict" }

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
	value string // encoded session, "" if absent
	found bool   // the session key exists
	neg   bool   // a negative entry exists
	gen   string // the token's eviction generation, "" if none, to guard a later fill
}

// get reads the session, its negative entry and its generation in one MGET (one slot).
func (s *redisStore) get(h string) (lookup, error) {
	var l lookup
	err := s.do(func(ctx context.Context) error {
		// sessionKey, negKey and genKey, in one allocation instead of three.
		k := s.prefix + "{" + h + "}" + s.prefix + "neg:{" + h + "}" + s.prefix + "gen:{" + h + "}"
		n := len(s.prefix) + len(h) + 2
		vals, err := s.rdb.MGet(ctx, k[:n], k[n:2*n+4], k[2*n+4:]).Result()
		if err != nil {
			return err
		}
		l.value, l.found = vals[0].(string)
		l.neg = vals[1] != nil
		l.gen, _ = vals[2].(string)
		return nil
	})
	return l, err
}

// fill caches a session for ttl unless it was evicted since l was read, in one round trip
// (two on a cluster, index first).
func (s *redisStore) fill(sess pgsession.Session, ttl time.Duration, l lookup) error {
	return s.do(func(ctx context.Context) error {
		if !s.cluster {
			keys, args := s.indexFillArgs(sess, ttl, l.gen)
			return indexFillScript.Run(ctx, s.rdb, keys, args...).Err()
		}
		ok, err := indexScript.Run(ctx, s.rdb, s.indexKeys(sess.UserID), sess.TokenHash, ttl.Milliseconds()).Int()
		if err != nil || ok == 0 {
			return err
		}
		return fillScript.Run(ctx, s.rdb, []string{s.genKey(sess.TokenHash), s.sessionKey(sess.TokenHash)},
			l.gen, encodeSession(sess), ttl.Milliseconds()).Err()
	})
}

func (s *redisStore) indexKeys(userID string) []string {
	return []string{s.userEvictedKey(userID), s.userKey(userID)}
}

func (s *redisStore) indexFillArgs(sess pgsession.Session, ttl time.Duration, gen string) ([]string, []any) {
	h := sess.TokenHash
	return []string{s.userEvictedKey(sess.UserID), s.userKey(sess.UserID), s.genKey(h), s.sessionKey(h)},
		[]any{h, ttl.Milliseconds(), gen, encodeSession(sess)}
}

// fillMany caches sessions that no eviction has touched within guardTTL, each for
// ttl(session), and returns how many were written: one pipelined round trip, two on a
// cluster (every index first, then the fills of the sessions indexed).
func (s *redisStore) fillMany(sessions []pgsession.Session, ttl func(pgsession.Session) time.Duration) (int, error) {
	var todo []pgsession.Session
	for _, sess := range sessions {
		if ttl(sess) > time.Millisecond {
			todo = append(todo, sess)
		}
	}
	written := 0
	err := s.do(func(ctx context.Context) error {
		if !s.cluster {
			n, err := s.pipelineScript(ctx, indexFillScript, len(todo), func(i int) ([]string, []any) {
				return s.indexFillArgs(todo[i], ttl(todo[i]), "")
			})
			written = len(n)
			return err
		}
		indexed, err := s.pipelineScript(ctx, indexScript, len(todo), func(i int) ([]string, []any) {
			return s.indexKeys(todo[i].UserID), []any{todo[i].TokenHash, ttl(todo[i]).Milliseconds()}
		})
		if err != nil {
			return err
		}
		n, err := s.pipelineScript(ctx, fillScript, len(indexed), func(i int) ([]string, []any) {
			sess := todo[indexed[i]]
			return []string{s.genKey(sess.TokenHash), s.sessionKey(sess.TokenHash)},
				[]any{"", encodeSession(sess), ttl(sess).Milliseconds()}
		})
		written = len(n)
		return err
	})
	return written, err
}

// pipelineScript runs script n times in one pipeline, with the keys and arguments args(i)
// gives, and returns the indexes whose run returned 1.
func (s *redisStore) pipelineScript(ctx context.Context, script *redis.Script, n int, args func(i int) ([]string, []any)) ([]int, error) {
	if n == 0 {
		return nil, nil
	}
	// EVALSHA in a pipeline cannot fall back to EVAL: load the script on every node first.
	if err := s.loadScript(ctx, script); err != nil {
		return nil, err
	}
	cmds := make([]*redis.Cmd, n)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			keys, a := args(i)
			cmds[i] = script.EvalSha(ctx, p, keys, a...)
		}
		return nil
	})
	var ok []int
	for i, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			ok = append(ok, i)
		}
	}
	return ok, err
}

// loadScript loads script where the keys live: on every master of a cluster.
func (s *redisStore) loadScript(ctx context.Context, script *redis.Script) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return script.Load(ctx, m).Err()
		})
	}
	return script.Load(ctx, s.rdb).Err()
}

// fillNegative remembers for ttl that h matches no valid session, unless h was evicted
// since l was read.
func (s *redisStore) fillNegative(h string, ttl time.Duration, l lookup) error {
	return s.do(func(ctx context.Context) error {
		return fillScript.Run(ctx, s.rdb, []string{s.genKey(h), s.negKey(h)}, l.gen, "1", ttl.Milliseconds()).Err()
	})
}

func (s *redisStore) evictTokenKeys(h string) []string {
	return []string{s.sessionKey(h), s.negKey(h), s.genKey(h)}
}

// evictHash forgets a token, takes it out of its user's index, and publishes msg to the
// other replicas, in two round trips. It reports whether a session was cached.
func (s *redisStore) evictHash(h string, msg []byte) (bool, error) {
	cached := false
	err := s.do(func(ctx context.Context) error {
		v, err := evictTokenScript.Run(ctx, s.rdb, s.evictTokenKeys(h), s.guardTTL.Milliseconds()).Text()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return err
		default:
			cached = true
		}
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			// A stale index member would be harmless (a user eviction would bump its
			// generation); removing it keeps the index small.
			if sess, derr := decodeSessionString(h, v); cached && derr == nil {
				p.SRem(ctx, s.userKey(sess.UserID), h)
			}
			p.Publish(ctx, s.evictChannel(), msg)
			return nil
		})
		return err
	})
	return cached, err
}

// evictUser forgets every cached session of a user through the per-user index (no SCAN),
// then the index, publishes msg, and returns the token hashes whose session was cached:
// three round trips.
func (s *redisStore) evictUser(userID string, msg []byte) ([]string, error) {
	var evicted []string
	err := s.do(func(ctx context.Context) error {
		hashes, err := evictUserScript.Run(ctx, s.rdb, []string{s.userKey(userID), s.userEvictedKey(userID)},
			s.guardTTL.Milliseconds()).StringSlice()
		if err != nil {
			return err
		}
		if evicted, err = s.pipelineEvictTokens(ctx, hashes); err != nil {
			return err
		}
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, s.userKey(userID))
			p.Publish(ctx, s.evictChannel(), msg)
			return nil
		})
		return err
	})
	return evicted, err
}

// pipelineEvictTokens forgets tokens in one pipeline and returns those that were cached.
// The script is normally loaded already (every token eviction runs it); if a node answers
// NOSCRIPT, it is loaded there and the pipeline sent again.
func (s *redisStore) pipelineEvictTokens(ctx context.Context, hashes []string) ([]string, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	send := func() []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(hashes))
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // errors are read per command
			for i, h := range hashes {
				cmds[i] = evictTokenScript.EvalSha(ctx, p, s.evictTokenKeys(h), s.guardTTL.Milliseconds())
			}
			return nil
		})
		return cmds
	}
	cmds := send()
	for _, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			if err := s.loadScript(ctx, evictTokenScript); err != nil {
				return nil, err
			}
			cmds = send()
			break
		}
	}
	var cached []string
	for i, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
			cached = append(cached, hashes[i])
		case !errors.Is(err, redis.Nil): // nil: nothing was cached
			return cached, err
		}
	}
	return cached, nil
}

// flush deletes every key under the prefix, for when evictions were lost. It SCANs every
// master: it runs only after an overflow, and gives up when ctx ends. Fills are held off
// while it runs (see Cache.retryPending), so nothing it deletes is put back by a lookup that
// started before it.
func (s *redisStore) flush(ctx context.Context) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return s.flushNode(ctx, m) })
	}
	return s.flushNode(ctx, s.rdb)
}

func (s *redisStore) flushNode(ctx context.Context, node redis.Cmdable) error {
	iter := node.Scan(ctx, 0, globEscape(s.prefix)+"*", 1000).Iterator()
	var batch []string
	unlink := func() error {
		// One UNLINK per key: on a cluster node the keys of one batch span many slots.
		_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(ctx, k)
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := unlink(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return unlink()
}

// refreshTopology asks a cluster client to reload its map of slots in the background. It
// keeps the map until a command is redirected, and while the breaker is open no command is
// sent: a probe after a failover would otherwise go to the dead master and open the breaker
// again. Other clients learn a failover when they reconnect (Sentinel asks the Sentinels).
func (s *redisStore) refreshTopology() {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		c.ReloadState(context.Background()) // asynchronous; go-redis coalesces reloads
	}
}

// publish sends msg to the other replicas.
func (s *redisStore) publish(msg []byte) error {
	return s.do(func(ctx context.Context) error { return s.rdb.Publish(ctx, s.evictChannel(), msg).Err() })
}

// subscribe receives what other replicas publish on the eviction channel until ctx ends,
// and reports whether it is subscribed: onState(true) on every (re)subscription,
// onState(false) when the subscription fails. A quiet subscription is pinged every second;
// a ping unanswered for another second counts as a failure, so a hung Redis is noticed
// within about two seconds. After a failure it resubscribes with backoff.
func (s *redisStore) subscribe(ctx context.Context, onState func(up bool), onMessage func(payload string)) {
	backoff := backoffInitial
	for ctx.Err() == nil {
		if s.subscribeOnce(ctx, onState, onMessage) {
			backoff = backoffInitial
		}
		onState(false)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, backoffMax)
	}
}

const (
	backoffInitial = 100 * time.Millisecond
	backoffMax     = time.Second
	subscribePing  = time.Second
)

// subscribeOnce runs one subscription until it fails or ctx ends, and reports whether it
// was ever established.
func (s *redisStore) subscribeOnce(ctx context.Context, onState func(up bool), onMessage func(payload string)) (subscribed bool) {
	ps := s.rdb.Subscribe(ctx, s.evictChannel())
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks a pending receive
	defer stop()
	pinged := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, subscribePing)
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout() && !pinged:
			if ps.Ping(ctx) != nil {
				return subscribed
			}
			pinged = true
			continue
		default:
			return subscribed
		}
		pinged = false // anything received proves the connection alive
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return subscribed // the server dropped the subscription
			}
			subscribed = true
			onState(true)
		case *redis.Message:
			onMessage(m.Payload)
		}
	}
	return subscribed
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
