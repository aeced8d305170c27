// Package authcache answers "which session does this token belong to?" through an in-process
// cache, then Redis (cache-aside), then the session Source (Postgres), and forgets sessions in
// every layer and on every replica when they change.
//
// A request reads top-down through cache.go: Validate looks in the in-process cache
// (local.go), then, once per token however many requests wait (singleflight), in Redis
// (redis.go, the only file that talks to the Redis client, in single, Sentinel or Cluster
// mode), then asks the Source — the primary if the token or its user was evicted moments
// ago (recent.go) — and fills both caches behind it. A fill carries the token's eviction
// generation it read first, so it can never put back a session evicted while it looked the
// session up.
//
// A revocation reads top-down through evict.go. The Postgres trigger notifies; one replica
// holds pgsession's change feed (elected with an advisory lock while Redis pub/sub works)
// and hands the event to its Cache as a pgsession.Sink (Changed, Resynced); evict drops the
// in-process copy, deletes the Redis copy with one script, and publishes the eviction on
// {prefix}evict; every replica receives it once (peers.go) and drops its own in-process
// copy. Logout and the admin API enter the same path through Invalidate on the replica
// that served them. So one revocation costs one Redis eviction and one publish (two when a
// logout also revokes the row, which the trigger announces), and R deliveries for R
// replicas. A Redis eviction that fails is retried (retry.go) until Redis answers; while it
// waits, lookups skip Redis. While pub/sub is down every replica listens to Postgres itself.
package authcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/breaker"
	"github.com/authsidecar/authsidecar/pgsession"
)

// Outcomes callers branch on.
var (
	// ErrInvalid means the token matches no valid session: unknown, expired or revoked.
	ErrInvalid = errors.New("authcache: invalid session")
	// ErrUnavailable means no cache knew the token and the Source could not be asked.
	ErrUnavailable = errors.New("authcache: session store unavailable")
	// ErrNotCached means no cache knew the token and ValidateCached did not ask the Source.
	ErrNotCached = errors.New("authcache: token not cached")
)

// Source is the source of truth the cache reads through; *pgsession.Store is one.
type Source interface {
	// Lookup may read a replica.
	Lookup(ctx context.Context, tokenHash string) (pgsession.Session, error)
	// LookupPrimary reads the primary, for a token or user evicted moments ago.
	LookupPrimary(ctx context.Context, tokenHash string) (pgsession.Session, error)
}

// Layer names where an answer came from, for logs and metrics.
type Layer string

// The layers, fastest first.
const (
	LayerLocal    Layer = "local"
	LayerRedis    Layer = "redis"
	LayerPostgres Layer = "postgres"
)

// Result is a validated session and the layer that answered. With ErrInvalid, Layer is
// still the layer that knew the token to be invalid.
type Result struct {
	Session pgsession.Session
	Layer   Layer
}

// Options configures a Cache. Zero durations disable the negative and local caches.
type Options struct {
	Redis         redis.UniversalClient // nil: no Redis layer, every miss goes to the Source
	Prefix        string                // namespace of every key and channel
	SessionTTL    time.Duration         // Redis TTL of a session, capped at its expiry
	NegativeTTL   time.Duration         // how long an unknown token is remembered
	LocalTTL      time.Duration         // in-process TTL, capped at the session's expiry
	LocalSize     int                   // most in-process entries
	OpTimeout     time.Duration         // deadline of one Redis operation
	LookupTimeout time.Duration         // deadline of one Source lookup, detached from the client
	// BreakerFailures consecutive Redis failures open the breaker for BreakerOpenFor.
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
	// PrimaryWindow is how long after an eviction the token or user concerned is looked up
	// with Source.LookupPrimary (DB_PRIMARY_WINDOW); 0 never does.
	PrimaryWindow time.Duration
	// WarmFrom, if set, lists the sessions Run loads into Redis at start (CACHE_WARM_ON_START).
	WarmFrom func(ctx context.Context) ([]pgsession.Session, error)
	// Registerer receives the validation latency histogram; nil leaves it unregistered.
	// The counters are exported by package health, through Stats.
	Registerer prometheus.Registerer
	Logger     *zap.Logger
	Now        func() time.Time // defaults to time.Now
	// Tracer, if set, records a span for each layer a validation asks, under the span in
	// the caller's context (trace.go); nil records nothing.
	Tracer trace.Tracer
}

// Cache is the read-through session cache. Its zero value is not usable; call New.
type Cache struct {
	src    Source
	opts   Options
	log    *zap.Logger
	redis  *redisStore // nil when Redis is disabled
	local  *local      // nil when the local cache is disabled
	flight flightGroup
	m      *metrics
	retry  retryQueue
	recent recent    // evicted moments ago: looked up on the primary
	peers  peerState // whether this replica receives the others' evictions
	// watches are the long-lived connections told of evictions (watch.go)
	watches watchSet
	// fillsAfter holds off Redis fills from lookups that started before it (Unix nanos):
	// while evictions wait in the retry queue, and for a moment after they landed.
	fillsAfter atomic.Int64
	wake       chan struct{} // a peer freed the feed's standby slot
}

// New returns a Cache reading through src. Call Run to receive eviction events.
func New(src Source, o Options) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	c := &Cache{src: src, opts: o, log: o.Logger, m: newMetrics(o.Registerer), wake: make(chan struct{}, 1)}
	c.flight.calls = make(map[string]*flightCall)
	c.recent.window = o.PrimaryWindow
	c.peers.init()
	if o.LocalTTL > 0 && o.LocalSize > 0 {
		c.local = newLocal(o.LocalSize)
	}
	if o.Redis != nil {
		c.redis = newRedisStore(o, breaker.New(o.BreakerFailures, o.BreakerOpenFor, c.breakerChanged))
	}
	return c
}

// HashToken returns the lowercase hex SHA-256 of a raw token, the only form that is stored.
// It runs on every request: a token of up to 256 bytes is hashed from a stack copy, and the
// hex is encoded on the stack, so the returned string is the only allocation.
func HashToken(token string) string {
	var sum [sha256.Size]byte
	if len(token) <= 256 {
		var buf [256]byte
		sum = sha256.Sum256(buf[:copy(buf[:], token)])
	} else {
		sum = sha256.Sum256([]byte(token))
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// Validate returns the session the token belongs to, ErrInvalid, or an error wrapping
// ErrUnavailable. The lookup behind a miss is shared by concurrent callers and runs under
// its own deadline: a caller whose ctx ends gets ctx.Err() and leaves the others waiting.
func (c *Cache) Validate(ctx context.Context, token string) (Result, error) {
	return c.validate(ctx, token, true)
}

// ValidateCached is Validate without the Source: it answers from the in-process cache and
// Redis only, and returns ErrNotCached when neither knows the token. It serves the requests
// that may not cost a Postgres query, such as those of a client flooding invalid tokens.
func (c *Cache) ValidateCached(ctx context.Context, token string) (Result, error) {
	return c.validate(ctx, token, false)
}

func (c *Cache) validate(ctx context.Context, token string, withSource bool) (Result, error) {
	start := c.opts.Now()
	h := HashToken(token)
	var gen uint64
	if c.local != nil {
		span := c.layerSpan(ctx, LayerLocal)
		if e, ok := c.local.get(h, start); ok {
			endLayer(span, resultHit, nil)
			c.m.cacheRequest(LayerLocal, resultHit)
			return c.answer(h, e.session, e.valid, LayerLocal, start)
		}
		endLayer(span, resultMiss, nil)
		c.m.cacheRequest(LayerLocal, resultMiss)
		gen = c.local.gen.Load()
	}
	key := h
	if !withSource {
		key = "cached:" + h // never shares a flight that would ask the Source
	}
	fc, leader := c.flight.join(key)
	if !leader {
		return c.await(ctx, h, fc, start)
	}
	// The leader reads Redis itself, in the caller's goroutine: a Redis hit then costs no
	// goroutine hand-off (a new goroutine, a channel, and the thread wake-ups they cause).
	// Only the Source lookup runs in a goroutine of its own, detached from ctx (which only
	// parents its spans), so that a caller whose ctx ends leaves it to the others.
	a, read, ok := c.leadCached(ctx, key, fc, h, gen)
	if ok {
		if err := ctx.Err(); err != nil {
			return Result{}, err // as if the caller had left while it waited
		}
		return c.settle(h, a, nil, start)
	}
	if !withSource {
		c.flight.finish(key, fc, answer{}, ErrNotCached)
		return Result{}, ErrNotCached
	}
	go func() {
		a, err := c.loadSource(ctx, h, gen, read)
		c.flight.finish(key, fc, a, err)
	}()
	return c.await(ctx, h, fc, start)
}

// await waits for the flight fc, or for ctx to end.
func (c *Cache) await(ctx context.Context, h string, fc *flightCall, start time.Time) (Result, error) {
	select {
	case <-fc.done:
		return c.settle(h, fc.a, fc.err, start)
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// settle turns what a flight found into the caller's result, counting it.
func (c *Cache) settle(h string, a answer, err error, start time.Time) (Result, error) {
	if errors.Is(err, ErrNotCached) {
		return Result{}, err
	}
	if err != nil {
		c.m.misses.Add(1)
		c.m.validation(outcomeUnavailable)
		return Result{}, err
	}
	return c.answer(h, a.session, a.valid, a.layer, start)
}

// flightGroup shares one lookup among concurrent callers for the same key, like
// singleflight, except that the first caller does the cached part of the work itself.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

// flightCall is one shared lookup; done is closed once a and err are set.
type flightCall struct {
	done chan struct{}
	a    answer
	err  error
}

// join returns the flight of key, and whether the caller leads it (it started it).
func (g *flightGroup) join(key string) (*flightCall, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if fc, ok := g.calls[key]; ok {
		return fc, false
	}
	fc := &flightCall{done: make(chan struct{})}
	g.calls[key] = fc
	return fc, true
}

// finish records the flight's outcome and releases its waiters; later callers start anew.
func (g *flightGroup) finish(key string, fc *flightCall, a answer, err error) {
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
	fc.a, fc.err = a, err
	close(fc.done)
}

type answer struct {
	session pgsession.Session
	valid   bool
	layer   Layer
}

func (c *Cache) answer(h string, s pgsession.Session, valid bool, layer Layer, start time.Time) (Result, error) {
	latency := c.opts.Now().Sub(start)
	c.m.observe(layer, latency)
	c.logEvent(h, valid, layer, latency)
	if layer == LayerPostgres {
		c.m.misses.Add(1)
	} else {
		c.m.hits.Add(1)
	}
	if !valid {
		c.m.validation(outcomeInvalid)
		return Result{Layer: layer}, ErrInvalid
	}
	c.m.validation(outcomeValid)
	return Result{Session: s, Layer: layer}, nil
}

// leadCached is the leader's part of a flight: the in-process cache again (a caller that
// just finished may have filled it), then Redis. When they answer it finishes the flight;
// otherwise it returns what Redis read and whether a fill may follow, for loadSource.
// Unlike groupcache, the Redis read is inside the flight too: concurrent requests for one
// token then cost one MGET, and moving it out measured 37 % fewer req/s on a hot token.
func (c *Cache) leadCached(ctx context.Context, key string, fc *flightCall, h string, gen uint64) (answer, cachedRead, bool) {
	done := false
	defer func() {
		if !done { // a panic: the waiters must not wait forever
			c.flight.finish(key, fc, answer{}, fmt.Errorf("%w: lookup panicked", ErrUnavailable))
		}
	}()
	r := cachedRead{now: c.opts.Now(), started: time.Now()}
	if c.local != nil {
		if e, ok := c.local.get(h, r.now); ok {
			a := answer{e.session, e.valid, LayerLocal}
			done = true
			c.flight.finish(key, fc, a, nil)
			return a, r, true
		}
	}
	a, l, fill := c.loadRedis(ctx, h, gen, r.now)
	done = true
	if a != nil {
		c.flight.finish(key, fc, *a, nil)
		return *a, r, true
	}
	r.l, r.fill = l, fill
	return answer{}, r, false
}

// cachedRead is what the leader of a flight read before the Source is asked: the time it
// started (its clock, and the wall clock that guards a fill), what Redis read, and whether a
// fill may follow.
type cachedRead struct {
	now, started time.Time
	l            lookup
	fill         bool
}

// loadSource asks the Source for a token no cache knew, filling the caches behind it;
// l is what Redis read, fill whether a Redis fill may follow.
func (c *Cache) loadSource(ctx context.Context, h string, gen uint64, r cachedRead) (answer, error) {
	now, l, fill := r.now, r.l, r.fill
	span := c.layerSpan(ctx, LayerPostgres)
	s, err := c.lookupSource(h)
	endSource(span, err)
	// A fill is sent only if no eviction can have slipped past its guard (see fillable).
	fill = fill && c.fillable(r.started)
	switch {
	case errors.Is(err, pgsession.ErrNotFound):
		if fill && c.opts.NegativeTTL > 0 {
			if err := c.redis.fillNegative(h, c.opts.NegativeTTL, l); err != nil {
				c.redisFailed("write negative entry", err)
			}
		}
		c.putLocal(h, pgsession.Session{}, false, now, gen)
		return answer{layer: LayerPostgres}, nil
	case err != nil:
		return answer{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.TokenHash = h
	if ttl := min(c.opts.SessionTTL, s.ExpiresAt.Sub(now)); fill && ttl > time.Millisecond {
		if err := c.redis.fill(s, ttl, l); err != nil {
			c.redisFailed("write session", err)
		}
	}
	c.putLocal(h, s, true, now, gen)
	return answer{s, true, LayerPostgres}, nil
}

// loadRedis asks Redis. It returns the answer if Redis had one; else what it read, and
// whether a fill may follow (Redis answered, and no eviction waits to be retried).
func (c *Cache) loadRedis(ctx context.Context, h string, gen uint64, now time.Time) (*answer, lookup, bool) {
	if c.redis == nil || c.retry.busy() {
		// With evictions waiting, Redis may still hold what they evict: ask Postgres.
		return nil, lookup{}, false
	}
	span := c.layerSpan(ctx, LayerRedis)
	l, err := c.redis.get(h)
	switch {
	case err != nil:
		endLayer(span, resultError, err)
		c.redisFailed("read", err)
		return nil, l, false
	case l.found:
		s, derr := decodeSessionString(h, l.value)
		if derr == nil && now.Before(s.ExpiresAt) {
			endLayer(span, resultHit, nil)
			c.m.cacheRequest(LayerRedis, resultHit)
			c.putLocal(h, s, true, now, gen)
			return &answer{s, true, LayerRedis}, l, false
		}
		// A corrupt or expired copy is a miss: Postgres decides.
	case l.neg:
		endLayer(span, resultHit, nil)
		c.m.cacheRequest(LayerRedis, resultHit)
		c.putLocal(h, pgsession.Session{}, false, now, gen)
		return &answer{layer: LayerRedis}, l, false
	}
	endLayer(span, resultMiss, nil)
	c.m.cacheRequest(LayerRedis, resultMiss)
	return nil, l, true
}

// lookupSource asks the Source under its own deadline, on the primary when the token or,
// once the session is known, its user was evicted within PrimaryWindow: a lagging replica
// may still show what the primary revoked.
func (c *Cache) lookupSource(h string) (pgsession.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.LookupTimeout)
	defer cancel()
	if c.recent.hash(h) {
		return c.src.LookupPrimary(ctx, h)
	}
	s, err := c.src.Lookup(ctx, h)
	if err == nil && c.recent.user(s.UserID) {
		return c.src.LookupPrimary(ctx, h)
	}
	return s, err
}

// fillable reports whether a lookup that started at started may fill Redis: it is recent
// enough that the eviction generations it read cannot have expired (half of guardTTL),
// and it started after the last evictions that had to be retried landed.
func (c *Cache) fillable(started time.Time) bool {
	return time.Since(started) < c.redis.guardTTL/2 && started.UnixNano() > c.fillsAfter.Load()
}

// putLocal caches a session, or a negative entry, in process for at most LocalTTL (and
// NegativeTTL, and the session's expiry).
func (c *Cache) putLocal(h string, s pgsession.Session, valid bool, now time.Time, gen uint64) {
	if c.local == nil {
		return
	}
	until := now.Add(c.opts.LocalTTL)
	if valid {
		until = minTime(until, s.ExpiresAt)
	} else {
		until = minTime(until, now.Add(c.opts.NegativeTTL))
	}
	if !until.After(now) {
		return
	}
	c.local.put(h, localEntry{session: s, valid: valid, until: until}, gen, now)
}

// logEvent writes the debug "cache hit"/"cache miss" line, as the seed design's
// "Cache HIT (3ms)". logger.Check makes it free when debug is off: no fields are built.
func (c *Cache) logEvent(h string, valid bool, layer Layer, latency time.Duration) {
	msg := "cache hit"
	if layer == LayerPostgres {
		msg = "cache miss"
	}
	if ce := c.log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.String("source", string(layer)), zap.Bool("valid", valid),
			zap.Duration("latency", latency), zap.String("tokenHash", h[:8]))
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// redisFailed counts a Redis failure and logs it, except the breaker's own refusals: those
// are the breaker doing its job, and logging them would flood the log while Redis is down.
func (c *Cache) redisFailed(op string, err error) {
	c.m.cacheRequest(LayerRedis, resultError)
	if breaker.Refused(err) {
		return
	}
	c.log.Warn("redis "+op+" failed; falling back to postgres", zap.Error(err))
}

func (c *Cache) breakerChanged(from, to gobreaker.State) {
	c.log.Warn("redis breaker changed state", zap.Stringer("from", from), zap.Stringer("to", to))
}

// BreakerState reports the Redis breaker: "closed", "open", "half-open", or "" without Redis.
func (c *Cache) BreakerState() string {
	if c.redis == nil {
		return ""
	}
	return c.redis.breaker.State().String()
}
