package authcache

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The counters live here as atomics: the request path pays one atomic add per event, and
// both /metrics and the health document read the same numbers through Stats.
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

// newMetrics makes the counters and the latency histogram, registered with reg unless nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authsidecar_session_validation_duration_seconds",
		Help:    "Time to validate a session, by the layer that answered.",
		Buckets: []float64{1e-6, 5e-6, 25e-6, 100e-6, 250e-6, 1e-3, 2.5e-3, 10e-3, 50e-3, 250e-3, 1, 2.5},
	}, []string{"source"})}
	for i, l := range layers {
		m.observers[i] = m.duration.WithLabelValues(string(l))
	}
	if reg != nil {
		reg.MustRegister(m.duration)
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

// Stats is a snapshot of the cache's counters since process start, for the health document
// and the Prometheus families (package health formats both).
type Stats struct {
	Hits   uint64 // validations answered by a cache, in-process or Redis
	Misses uint64 // validations that went to the Source (waiters on a shared lookup count too)
	// Validations counts validations by outcome: "valid", "invalid", "unavailable".
	Validations map[string]uint64
	// Requests counts cache lookups by layer ("local", "redis"), then result ("hit",
	// "miss", "error": a Redis operation that failed or that the breaker refused).
	Requests map[string]map[string]uint64
	// Invalidations counts cached sessions evicted, by reason (the Reason constants).
	Invalidations map[string]uint64
	// LocalEntries is how many entries the in-process cache holds; -1 when it is disabled.
	LocalEntries int
	// Breaker is the Redis breaker: "closed", "open", "half-open"; "" without Redis.
	Breaker string
}

// Stats returns the counters since process start.
func (c *Cache) Stats() Stats {
	m := c.m
	s := Stats{
		Hits: m.hits.Load(), Misses: m.misses.Load(),
		Validations: map[string]uint64{}, Requests: map[string]map[string]uint64{},
		Invalidations: map[string]uint64{}, LocalEntries: -1, Breaker: c.BreakerState(),
	}
	for i, name := range outcomeNames {
		s.Validations[name] = m.validations[i].Load()
	}
	for i, layer := range [...]Layer{LayerLocal, LayerRedis} {
		s.Requests[string(layer)] = map[string]uint64{}
		for j, r := range resultNames {
			s.Requests[string(layer)][r] = m.cacheRequests[i][j].Load()
		}
	}
	for i, r := range reasons {
		s.Invalidations[r] = m.invalidations[i].Load()
	}
	if c.local != nil {
		s.LocalEntries = c.local.len()
	}
	return s
}
