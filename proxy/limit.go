package proxy

import (
	"errors"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/respond"
)

// validate answers a well-formed token. Without a limit it is Validate. With one, a client
// within its invalid-token limit is validated as usual, and each token that turns out
// invalid spends from its bucket; valid tokens never do. A client past its limit is answered
// from the caches only (ValidateCached): a cached valid session goes on, anything else gets
// 429 and costs no lookup. While no client is tracked at all, which is the usual state, the
// limit costs one atomic load.
func (h *Handler) validate(r *http.Request, token string) (authcache.Result, error) {
	ctx := r.Context()
	if h.limit == nil {
		return h.opts.Auth.Validate(ctx, token)
	}
	var client netip.Addr
	if !h.limit.idle() {
		client = h.clientAddr(r)
		if ok, wait := h.limit.allow(client); !ok {
			res, err := h.opts.Auth.ValidateCached(ctx, token)
			if err == nil || ctx.Err() != nil {
				return res, err
			}
			h.limit.limited.Inc()
			return res, respond.TooManyRequests(wait)
		}
	}
	res, err := h.opts.Auth.Validate(ctx, token)
	if errors.Is(err, authcache.ErrInvalid) {
		if !client.IsValid() {
			client = h.clientAddr(r)
		}
		h.limit.spend(client)
	}
	return res, err
}

// clientAddr is the address a request's invalid tokens are counted against: the peer, or,
// when the peer is in TRUSTED_PROXIES, the first address of X-Forwarded-For, read from the
// right, that is not (the addresses to its left are whatever the client claimed). IPv6
// clients are counted by /64, the block one host usually holds.
func (h *Handler) clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{} // not a TCP peer: all such requests share one bucket
	}
	client := ap.Addr().Unmap()
	if h.trustedAddr(client) {
		client = h.forwardedClient(r.Header["X-Forwarded-For"], client)
	}
	if client.Is6() {
		client = netip.PrefixFrom(client, 64).Masked().Addr()
	}
	return client
}

func (h *Handler) forwardedClient(xff []string, peer netip.Addr) netip.Addr {
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, ok := parseHop(strings.TrimSpace(hops[j]))
			if !ok {
				return client // a trusted proxy wrote what it should not: stop at the last good hop
			}
			if client = a; !h.trustedAddr(a) {
				return a
			}
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, or one with a port as some proxies
// write it ("203.0.113.7:4711", "[2001:db8::1]:4711").
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// Bounds of the limiter's memory: at most limiterShards × limiterPerShard clients are
// tracked (64 Ki, a few MB), whatever the number of addresses a flood comes from.
const (
	limiterShards   = 64
	limiterPerShard = 1024
	limiterSample   = 32 // entries looked at to make room in a full shard
)

// limiter is a token bucket per client address, filled at rate per second up to burst,
// that invalid tokens spend. A client that is not tracked has a full bucket, so a bucket
// that has refilled is worth nothing and is the first to go when a shard is full; when none
// has, the fullest of a random sample goes (its client starts again with a full burst: a
// flood from more addresses than the limiter holds costs at most a burst per address it
// pushes out).
type limiter struct {
	rate, burst float64
	now         func() time.Time
	epoch       time.Time // monotonic origin of bucket times
	seed        maphash.Seed
	shards      [limiterShards]limiterShard
	clients     atomic.Int64 // buckets held, over all shards
	limited     prometheus.Counter
}

type limiterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]bucket
}

// bucket holds tokens as of at, in nanoseconds since the limiter's epoch.
type bucket struct {
	tokens float64
	at     int64
}

func newLimiter(rate int, now func() time.Time, reg prometheus.Registerer) *limiter {
	l := &limiter{
		rate: float64(rate), burst: 2 * float64(rate), now: now, seed: maphash.MakeSeed(),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authsidecar_rate_limited_total",
			Help: "Requests answered 429 because their client presented too many invalid tokens (INVALID_TOKEN_RATE).",
		}),
	}
	l.epoch = now()
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]bucket)
	}
	if reg != nil {
		reg.MustRegister(l.limited)
	}
	return l
}

func (l *limiter) shard(a netip.Addr) *limiterShard {
	b := a.As16()
	return &l.shards[maphash.Bytes(l.seed, b[:])%limiterShards]
}

func (l *limiter) clock() int64 { return int64(l.now().Sub(l.epoch)) }

// level is b's tokens at t.
func (l *limiter) level(b bucket, t int64) float64 {
	return min(l.burst, b.tokens+l.rate*float64(t-b.at)/float64(time.Second))
}

// idle reports that no client is tracked: every bucket is full.
func (l *limiter) idle() bool { return l.clients.Load() == 0 }

// allow reports whether the client has a whole token left; if not, the seconds until it has
// one again. A bucket found refilled is dropped: untracked is the same, and idle stays cheap.
func (l *limiter) allow(a netip.Addr) (bool, int) {
	s := l.shard(a)
	t := l.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[a]
	if !ok {
		return true, 0
	}
	tokens := l.level(b, t)
	if tokens >= l.burst {
		delete(s.m, a)
		l.clients.Add(-1)
	}
	if tokens >= 1 {
		return true, 0
	}
	return false, int(math.Ceil((1 - tokens) / l.rate))
}

// spend takes one token from the client's bucket. Lookups that were allowed concurrently
// each spend theirs afterwards, so the bucket may go below zero: the client then waits
// until it has paid for every lookup it caused.
func (l *limiter) spend(a netip.Addr) {
	s := l.shard(a)
	t := l.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[a]
	if !ok {
		if len(s.m) >= limiterPerShard {
			l.clients.Add(-int64(l.evict(s.m, t)))
		}
		b = bucket{tokens: l.burst, at: t}
		l.clients.Add(1)
	}
	s.m[a] = bucket{tokens: l.level(b, t) - 1, at: t}
}

// evict drops the refilled buckets among a random sample of a full shard or, if none has
// refilled, the fullest one sampled: a client deep in its limit is the last to be forgotten.
// It returns how many it dropped.
func (l *limiter) evict(m map[netip.Addr]bucket, t int64) int {
	n, freed := 0, 0
	var fullest netip.Addr
	most := math.Inf(-1)
	for a, b := range m {
		level := l.level(b, t)
		if level >= l.burst {
			delete(m, a)
			freed++
		} else if level > most {
			fullest, most = a, level
		}
		if n++; n == limiterSample {
			break
		}
	}
	if freed == 0 {
		delete(m, fullest)
		freed = 1
	}
	return freed
}

// tracked is the number of clients held, for tests.
func (l *limiter) tracked() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].m)
		l.shards[i].mu.Unlock()
	}
	return n
}
