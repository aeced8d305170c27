// Package health is what operators read about the cache. It builds the health document
// served at HEALTH_PATH, the shape the app's dashboards read: the Redis server as a probe
// sees it (PING, SET, GET, INFO, DBSIZE, at most once a second), the cache's counters and
// breaker, and the Redis pool. It exports the same counters, the breaker and the probe's
// result as Prometheus families (metrics.go).
package health

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/respond"
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

// Stats is what the document and the metrics read from the cache; *authcache.Cache is one.
type Stats interface {
	Stats() authcache.Stats
}

// Options configures a Reporter.
type Options struct {
	Redis      redis.UniversalClient // nil: Redis is disabled and the status is "disabled"
	Mode       string                // "single", "sentinel" or "cluster", shown as redis.mode
	Cache      Stats
	Prefix     string        // SESSION_KEY_PREFIX: the probe writes Prefix+"healthcheck"
	SessionTTL time.Duration // shown as sessionCache.metrics.ttl
	OpTimeout  time.Duration // the probe's deadline is max(OpTimeout, 1s)
	Now        func() time.Time
}

// Reporter builds the health document. Its zero value is not usable; call New.
type Reporter struct {
	o    Options
	mu   sync.Mutex
	last probe
}

// New returns a Reporter.
func New(o Options) *Reporter {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reporter{o: o}
}

// Document is the health document served at HEALTH_PATH.
type Document struct {
	Status       string       `json:"status"`
	Timestamp    string       `json:"timestamp"`
	Redis        RedisHealth  `json:"redis"`
	SessionCache SessionCache `json:"sessionCache"`
	Performance  Performance  `json:"performance"`
	Errors       []string     `json:"errors"`
}

// RedisHealth describes the Redis server, from INFO and DBSIZE.
type RedisHealth struct {
	Mode       string `json:"mode"` // single, sentinel, cluster; disabled without Redis
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
	partial     bool // some masters of a cluster did not answer, or its state is not ok
	errors      []string
}

const probeEvery = time.Second

// Document builds the health document. The Redis probe (PING, SET, GET, INFO, DBSIZE) runs
// at most once a second; counters are always current.
func (r *Reporter) Document(ctx context.Context) Document {
	now := r.o.Now()
	h := Document{
		Status:    StatusDisabled,
		Timestamp: now.UTC().Format(time.RFC3339),
		Errors:    []string{},
	}
	st := r.o.Cache.Stats()
	total := st.Hits + st.Misses
	var invalidations uint64
	for _, n := range st.Invalidations {
		invalidations += n
	}
	h.SessionCache.Metrics = CacheMetrics{
		Hits: st.Hits, Misses: st.Misses, Errors: st.Requests["redis"]["error"], Invalidations: invalidations,
		Total: total, TTL: int64(r.o.SessionTTL / time.Second),
	}
	if total > 0 {
		h.SessionCache.Metrics.HitRate = math.Round(float64(st.Hits)*1000/float64(total)) / 10
	}
	h.Redis.Mode = StatusDisabled
	if r.o.Redis == nil {
		h.SessionCache.Breaker = StatusDisabled
		return h
	}
	p := r.probe(ctx, now)
	h.Redis, h.Performance = p.redis, p.performance
	h.Redis.Mode = r.o.Mode
	h.Errors = append(h.Errors, p.errors...)
	s := r.o.Redis.PoolStats()
	h.SessionCache.Pool = Pool{Size: s.TotalConns, Available: s.IdleConns, Pending: s.PendingRequests}
	h.SessionCache.Enabled = true
	h.SessionCache.Breaker = st.Breaker
	switch {
	case !p.pingOK:
		h.Status = StatusUnhealthy
	case p.partial:
		h.Status = StatusDegraded
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

// ServeHTTP answers HEALTH_PATH: the document, with 503 when Redis is unhealthy.
func (r *Reporter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	doc := r.Document(req.Context())
	code := http.StatusOK
	if doc.Status == StatusUnhealthy {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	respond.WriteJSON(w, code, doc)
}

func (r *Reporter) probe(ctx context.Context, now time.Time) probe {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.last.at) < probeEvery {
		return r.last
	}
	r.last = r.runProbe(ctx)
	r.last.at = now
	return r.last
}

func (r *Reporter) runProbe(ctx context.Context) probe {
	var p probe
	rdb := r.o.Redis
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(r.o.OpTimeout, time.Second))
	defer cancel()
	timed := func(f func() error) (float64, error) {
		start := time.Now()
		err := f()
		return math.Round(float64(time.Since(start).Microseconds())/10) / 100, err
	}
	var err error
	if p.performance.Ping, err = timed(func() error { return r.ping(ctx, &p) }); err != nil {
		p.errors = append(p.errors, "redis ping failed: "+shortError(err))
		return p
	}
	p.pingOK = true
	p.redis.Connected = true
	key := r.o.Prefix + "healthcheck"
	if p.performance.Set, err = timed(func() error { return rdb.Set(ctx, key, "ok", 10*time.Second).Err() }); err != nil {
		p.errors = append(p.errors, "redis set failed: "+shortError(err))
	}
	if p.performance.Get, err = timed(func() error { return rdb.Get(ctx, key).Err() }); err != nil {
		p.errors = append(p.errors, "redis get failed: "+shortError(err))
	}
	info := rdb.InfoMap(ctx, "server", "memory")
	if err := info.Err(); err != nil {
		p.errors = append(p.errors, "redis info failed: "+shortError(err))
	}
	p.redis.Version = info.Item("Server", "redis_version")
	p.redis.Uptime, _ = strconv.ParseInt(info.Item("Server", "uptime_in_seconds"), 10, 64)
	p.redis.UsedMemory = info.Item("Memory", "used_memory_human")
	if p.redis.TotalKeys, err = rdb.DBSize(ctx).Result(); err != nil {
		p.errors = append(p.errors, "redis dbsize failed: "+shortError(err))
	}
	return p
}

// ping pings Redis. On a cluster it pings every master and replica, and reads the
// cluster's state: a master that does not answer, or a state that is not ok, makes the
// probe partial (degraded), a replica that does not answer is only reported, and the ping
// fails only when no master answers.
func (r *Reporter) ping(ctx context.Context, p *probe) error {
	cl, ok := r.o.Redis.(*redis.ClusterClient)
	if !ok {
		return r.o.Redis.Ping(ctx).Err()
	}
	var mu sync.Mutex
	answered := 0
	each := func(role string) func(context.Context, *redis.Client) error {
		return func(ctx context.Context, node *redis.Client) error {
			err := node.Ping(ctx).Err()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && role == "master":
				answered++
			case err != nil:
				p.errors = append(p.errors, "redis "+role+" "+node.Options().Addr+" ping failed: "+shortError(err))
				p.partial = p.partial || role == "master"
			}
			return nil
		}
	}
	if err := cl.ForEachMaster(ctx, each("master")); err != nil {
		return err
	}
	_ = cl.ForEachSlave(ctx, each("replica")) // reported through p.errors
	if answered == 0 {
		return errors.New("no cluster master answered")
	}
	if state := cl.ClusterInfo(ctx).Val(); !strings.Contains(state, "cluster_state:ok") {
		p.errors, p.partial = append(p.errors, "redis cluster state is not ok"), true
	}
	return nil
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
