package authcache

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Health statuses, as the health document spells them.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
	StatusDisabled  = "disabled"
)

// slowPing is the ping time from which Redis counts as degraded.
const slowPing = 100 * time.Millisecond

// Health is the health document served at HEALTH_PATH.
type Health struct {
	Status       string       `json:"status"`
	Timestamp    string       `json:"timestamp"`
	Redis        RedisHealth  `json:"redis"`
	SessionCache SessionCache `json:"sessionCache"`
	Performance  Performance  `json:"performance"`
	Errors       []string     `json:"errors"`
}

// RedisHealth describes the Redis server, from INFO and DBSIZE.
type RedisHealth struct {
	Connected  bool   `json:"connected"`
	Version    string `json:"version"`
	Uptime     int64  `json:"uptime"`
	UsedMemory string `json:"usedMemory"`
	TotalKeys  int64  `json:"totalKeys"`
}

// SessionCache describes the cache itself. Breaker is "closed", "open" or "half-open",
// and "disabled" without Redis, so every field is always present.
type SessionCache struct {
	Enabled bool         `json:"enabled"`
	Healthy bool         `json:"healthy"`
	Metrics CacheMetrics `json:"metrics"`
	Pool    Pool         `json:"pool"`
	Breaker string       `json:"breaker"`
}

// CacheMetrics are the counters since process start; HitRate is a percentage, TTL seconds.
type CacheMetrics struct {
	Hits          uint64  `json:"hits"`
	Misses        uint64  `json:"misses"`
	Errors        uint64  `json:"errors"`
	Invalidations uint64  `json:"invalidations"`
	Total         uint64  `json:"total"`
	HitRate       float64 `json:"hitRate"`
	TTL           int64   `json:"ttl"`
}

// Pool maps the go-redis pool stats.
type Pool struct {
	Size      uint32 `json:"size"`
	Available uint32 `json:"available"`
	Pending   uint32 `json:"pending"`
}

// Performance holds the last probe's round trips in milliseconds.
type Performance struct {
	Ping float64 `json:"ping"`
	Set  float64 `json:"set"`
	Get  float64 `json:"get"`
}

// probe is the part of the document that costs Redis round trips; it is refreshed at most
// once per probeEvery however often the document is polled.
type probe struct {
	at          time.Time
	redis       RedisHealth
	performance Performance
	pingOK      bool
	errors      []string
}

const probeEvery = time.Second

type prober struct {
	mu   sync.Mutex
	last probe
}

// Health builds the health document. The Redis probe (PING, SET, GET, INFO, DBSIZE) runs at
// most once a second; counters are always current.
func (c *Cache) Health(ctx context.Context) Health {
	now := c.opts.Now()
	h := Health{
		Status:    StatusDisabled,
		Timestamp: now.UTC().Format(time.RFC3339),
		Errors:    []string{},
	}
	cnt := c.Counters()
	total := cnt.Hits + cnt.Misses
	h.SessionCache.Metrics = CacheMetrics{
		Hits: cnt.Hits, Misses: cnt.Misses, Errors: cnt.Errors, Invalidations: cnt.Invalidations,
		Total: total, TTL: int64(c.opts.SessionTTL / time.Second),
	}
	if total > 0 {
		h.SessionCache.Metrics.HitRate = math.Round(float64(cnt.Hits)*1000/float64(total)) / 10
	}
	if c.redis == nil {
		h.SessionCache.Breaker = StatusDisabled
		return h
	}
	p := c.probe(ctx, now)
	h.Redis, h.Performance = p.redis, p.performance
	h.Errors = append(h.Errors, p.errors...)
	s := c.redis.rdb.PoolStats()
	h.SessionCache.Pool = Pool{Size: s.TotalConns, Available: s.IdleConns, Pending: s.PendingRequests}
	h.SessionCache.Enabled = true
	h.SessionCache.Breaker = c.BreakerState()
	switch {
	case !p.pingOK:
		h.Status = StatusUnhealthy
	case h.SessionCache.Breaker != "closed":
		h.Status = StatusDegraded
		h.Errors = append(h.Errors, "redis circuit breaker is "+h.SessionCache.Breaker)
	case p.performance.Ping >= float64(slowPing.Milliseconds()):
		h.Status = StatusDegraded
		h.Errors = append(h.Errors, "redis ping is slow")
	default:
		h.Status = StatusHealthy
	}
	h.SessionCache.Healthy = h.Status == StatusHealthy
	return h
}

func (c *Cache) probe(ctx context.Context, now time.Time) probe {
	c.prober.mu.Lock()
	defer c.prober.mu.Unlock()
	if now.Sub(c.prober.last.at) < probeEvery {
		return c.prober.last
	}
	c.prober.last = c.runProbe(ctx)
	c.prober.last.at = now
	return c.prober.last
}

func (c *Cache) runProbe(ctx context.Context) probe {
	var p probe
	rdb := c.redis.rdb
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(c.opts.OpTimeout, time.Second))
	defer cancel()
	timed := func(f func() error) (float64, error) {
		start := time.Now()
		err := f()
		return math.Round(float64(time.Since(start).Microseconds())/10) / 100, err
	}
	var err error
	if p.performance.Ping, err = timed(func() error { return rdb.Ping(ctx).Err() }); err != nil {
		p.errors = append(p.errors, "redis ping failed: "+shortError(err))
		return p
	}
	p.pingOK = true
	p.redis.Connected = true
	key := c.redis.prefix + "healthcheck"
	if p.performance.Set, err = timed(func() error { return rdb.Set(ctx, key, "ok", 10*time.Second).Err() }); err != nil {
		p.errors = append(p.errors, "redis set failed: "+shortError(err))
	}
	if p.performance.Get, err = timed(func() error { return rdb.Get(ctx, key).Err() }); err != nil {
		p.errors = append(p.errors, "redis get failed: "+shortError(err))
	}
	info, err := rdb.Info(ctx, "server", "memory").Result()
	if err != nil {
		p.errors = append(p.errors, "redis info failed: "+shortError(err))
	}
	fields := parseInfo(info)
	p.redis.Version = fields["redis_version"]
	p.redis.Uptime, _ = strconv.ParseInt(fields["uptime_in_seconds"], 10, 64)
	p.redis.UsedMemory = fields["used_memory_human"]
	if p.redis.TotalKeys, err = rdb.DBSize(ctx).Result(); err != nil {
		p.errors = append(p.errors, "redis dbsize failed: "+shortError(err))
	}
	return p
}

func parseInfo(info string) map[string]string {
	fields := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// shortError keeps the first line of err, short. go-redis errors never carry the URL's
// password, but a length bound keeps the document small whatever a server says.
func shortError(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
