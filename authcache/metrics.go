package authcache

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// The counters live here as atomics: the request path pays one atomic add per event, and
// both /metrics (Collect) and the health document read the same numbers.
type result int

const (
	resultHit result = iota
	resultMiss
	resultError
)

var resultNames = [...]string{"hit", "miss", "error"}

type outcome int

const (
	outcomeValid outcome = iota
	outcomeInvalid
	outcomeUnavailable
)

var outcomeNames = [...]string{"valid", "invalid", "unavailable"}

var reasons = [...]string{ReasonLogout, ReasonAdmin, ReasonNotify, ReasonResync, ReasonPeer}

var layers = [...]Layer{LayerLocal, LayerRedis, LayerPostgres}

type metrics struct {
	validations   [len(outcomeNames)]atomic.Uint64
	cacheRequests [2][len(resultNames)]atomic.Uint64 // [local, redis][result]
	hits, misses  atomic.Uint64                      // validations answered by a cache / by the Source
	invalidations [len(reasons)]atomic.Uint64
	duration      *prometheus.HistogramVec
	observers     [len(layers)]prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authsidecar_session_validation_duration_seconds",
		Help:    "Time to validate a session, by the layer that answered.",
		Buckets: []float64{1e-6, 5e-6, 25e-6, 100e-6, 250e-6, 1e-3, 2.5e-3, 10e-3, 50e-3, 250e-3, 1, 2.5},
	}, []string{"source"})}
	for i, l := range layers {
		m.observers[i] = m.duration.WithLabelValues(string(l))
	}
	return m
}

func (m *metrics) validation(o outcome) { m.validations[o].Add(1) }

func (m *metrics) cacheRequest(l Layer, r result) {
	i := 0
	if l == LayerRedis {
		i = 1
	}
	m.cacheRequests[i][r].Add(1)
}

func (m *metrics) observe(l Layer, d time.Duration) {
	for i, name := range layers {
		if name == l {
			m.observers[i].Observe(d.Seconds())
		}
	}
}

func (m *metrics) invalidation(reason string, n int) {
	for i, r := range reasons {
		if r == reason {
			m.invalidations[i].Add(uint64(n))
		}
	}
}

// Counters is a snapshot of the cache's counters since process start.
type Counters struct {
	Hits          uint64 // validations answered by a cache, in-process or Redis
	Misses        uint64 // validations that went to the Source (waiters on a shared lookup count too)
	Errors        uint64 // Redis operations that failed or were refused by the breaker
	Invalidations uint64 // cached sessions evicted, for any reason
}

// Counters returns the counters the health document shows.
func (c *Cache) Counters() Counters {
	m := c.m
	var inv uint64
	for i := range m.invalidations {
		inv += m.invalidations[i].Load()
	}
	return Counters{
		Hits:          m.hits.Load(),
		Misses:        m.misses.Load(),
		Errors:        m.cacheRequests[1][resultError].Load(),
		Invalidations: inv,
	}
}

var (
	descValidations = prometheus.NewDesc("authsidecar_session_validations_total",
		"Session validations by outcome.", []string{"outcome"}, nil)
	descCacheRequests = prometheus.NewDesc("authsidecar_cache_requests_total",
		"Cache lookups by layer and result.", []string{"layer", "result"}, nil)
	descInvalidations = prometheus.NewDesc("authsidecar_cache_invalidations_total",
		"Cached sessions evicted, by reason.", []string{"reason"}, nil)
	descBreaker = prometheus.NewDesc("authsidecar_redis_breaker_state",
		"Redis circuit breaker: 0 closed, 1 half-open, 2 open.", nil, nil)
	descLocalEntries = prometheus.NewDesc("authsidecar_local_cache_entries",
		"Entries held by the in-process cache.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Cache) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descValidations, descCacheRequests, descInvalidations,
		descBreaker, descLocalEntries} {
		ch <- d
	}
	c.m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Cache) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for i, name := range outcomeNames {
		counter(descValidations, m.validations[i].Load(), name)
	}
	for i, layer := range []string{"local", "redis"} {
		for j, r := range resultNames {
			counter(descCacheRequests, m.cacheRequests[i][j].Load(), layer, r)
		}
	}
	for i, r := range reasons {
		counter(descInvalidations, m.invalidations[i].Load(), r)
	}
	if c.local != nil {
		gauge(descLocalEntries, float64(c.local.len()))
	}
	if c.redis != nil {
		gauge(descBreaker, map[gobreaker.State]float64{
			gobreaker.StateClosed: 0, gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2,
		}[c.redis.breaker.State()])
	}
	m.duration.Collect(ch)
}
