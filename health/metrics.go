package health

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descValidations = prometheus.NewDesc("authsidecar_session_validations_total",
		"Session validations by outcome.", []string{"outcome"}, nil)
	descCacheRequests = prometheus.NewDesc("authsidecar_cache_requests_total",
		"Cache lookups by layer and result.", []string{"layer", "result"}, nil)
	descInvalidations = prometheus.NewDesc("authsidecar_cache_invalidations_total",
		"Cached sessions evicted, by reason.", []string{"reason"}, nil)
	descLocalEntries = prometheus.NewDesc("authsidecar_local_cache_entries",
		"Entries held by the in-process cache.", nil, nil)
	descBreaker = prometheus.NewDesc("authsidecar_redis_breaker_state",
		"Redis circuit breaker: 0 closed, 1 half-open, 2 open.", nil, nil)
	descRedisPool = prometheus.NewDesc("authsidecar_redis_pool_connections",
		"Redis pool connections by state.", []string{"state"}, nil)
	descRedisUp = prometheus.NewDesc("authsidecar_redis_up",
		"1 if Redis answered the health probe's PING, else 0.", nil, nil)
	descRedisPing = prometheus.NewDesc("authsidecar_redis_ping_seconds",
		"Round trip of the health probe's PING; absent while Redis does not answer.", nil, nil)
)

// breakerValues is the breaker state as the gauge encodes it.
var breakerValues = map[string]float64{"closed": 0, "half-open": 1, "open": 2}

// Describe implements prometheus.Collector.
func (r *Reporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range [...]*prometheus.Desc{descValidations, descCacheRequests, descInvalidations,
		descLocalEntries, descBreaker, descRedisPool, descRedisUp, descRedisPing} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the cache's counters as they are now and, with
// Redis, the breaker, the pool and the probe. A scrape runs the probe itself (at most once a
// second, shared with HEALTH_PATH), so the ping gauge is fresh at every scrape without a
// background goroutine, and nobody has to poll HEALTH_PATH for it.
func (r *Reporter) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := r.o.Cache.Stats()
	for outcome, n := range st.Validations {
		counter(descValidations, n, outcome)
	}
	for layer, results := range st.Requests {
		for result, n := range results {
			counter(descCacheRequests, n, layer, result)
		}
	}
	for reason, n := range st.Invalidations {
		counter(descInvalidations, n, reason)
	}
	if st.LocalEntries >= 0 {
		gauge(descLocalEntries, float64(st.LocalEntries))
	}
	if r.o.Redis == nil {
		return
	}
	gauge(descBreaker, breakerValues[st.Breaker])
	s := r.o.Redis.PoolStats()
	gauge(descRedisPool, float64(s.TotalConns), "total")
	gauge(descRedisPool, float64(s.IdleConns), "idle")
	gauge(descRedisPool, float64(s.PendingRequests), "pending")
	p := r.probe(context.Background(), r.o.Now())
	if !p.pingOK {
		gauge(descRedisUp, 0)
		return
	}
	gauge(descRedisUp, 1)
	gauge(descRedisPing, p.performance.Ping/1000)
}
