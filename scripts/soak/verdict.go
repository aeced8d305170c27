package main

import (
	"fmt"
	"math"
)

// Sample is one reading of the sidecar under soak, taken every 10 s.
type Sample struct {
	T            float64 // seconds since the traffic started
	RSS          float64 // resident memory, bytes (process_resident_memory_bytes)
	Heap         float64 // Go heap in use, bytes (go_memstats_heap_inuse_bytes): a sawtooth between collections
	LiveHeap     float64 // heap live after the last collection, bytes (see liveHeap)
	Goroutines   float64 // go_goroutines
	FDs          float64 // process_open_fds
	RedisPool    float64 // authsidecar_redis_pool_connections{state="total"}
	PGPool       float64 // authsidecar_postgres_pool_connections{state="total"}
	RedisClients float64 // clients the soak's redis-server lists, the driver's own excluded
	PGBackends   float64 // backends on the soak database, the driver's own excluded
	Rate         float64 // requests per second the driver sent since the previous sample
	LongLived    float64 // WebSockets and streams open
}

// Tolerance is how much drift the verdict forgives.
type Tolerance struct {
	// MemGrowth bounds the growth of RSS and the live heap over the last third of the run: the
	// least-squares line's rise across that third, as a fraction of the third's mean.
	MemGrowth float64
	// Goroutines, FDs and Conns bound how far the final quiet reading (long-lived requests
	// closed) may exceed the baseline one (before any was opened). FDs and Conns count what
	// no pool accounts for: descriptors beyond both pools' connections, and each server's
	// clients beyond the sidecar's pool for it. A pool grows to its size under a burst and
	// keeps its connections; a connection outside the pools has no reason to stay.
	Goroutines, FDs, Conns float64
}

// Counts are the driver's tallies of what the sidecar answered.
type Counts struct {
	Requests  int64 // every request and upgrade sent
	Decisions int64 // answers checked against what the token is
	Wrong     int64 // a valid session refused (401) or an invalid token served (200)
	Failures  int64 // answers neither right nor wrong: 503 outside an outage, 5xx, errors, streams cut early
}

// Verdict is the outcome of a soak: Pass, and one line per check.
type Verdict struct {
	Pass  bool
	Lines []string
}

// series names a column of Sample, or one derived from them, for the checks and the report.
type series struct {
	name  string
	get   func(Sample) float64
	check int // checkGrowth, checkFinal, or 0: reported only
	tol   func(Tolerance) float64
}

const (
	checkGrowth = iota + 1 // growth over the last third, as a fraction of its mean
	checkFinal             // the final quiet reading against the baseline one
)

var allSeries = []series{
	{"rss_mb", func(s Sample) float64 { return s.RSS / 1e6 }, checkGrowth, func(t Tolerance) float64 { return t.MemGrowth }},
	{"heap_mb", func(s Sample) float64 { return s.Heap / 1e6 }, 0, nil},
	{"live_heap_mb", func(s Sample) float64 { return s.LiveHeap / 1e6 }, checkGrowth, func(t Tolerance) float64 { return t.MemGrowth }},
	{"goroutines", func(s Sample) float64 { return s.Goroutines }, checkFinal, func(t Tolerance) float64 { return t.Goroutines }},
	{"fds", func(s Sample) float64 { return s.FDs }, 0, nil},
	{"fds_unpooled", func(s Sample) float64 { return s.FDs - s.RedisPool - s.PGPool }, checkFinal, func(t Tolerance) float64 { return t.FDs }},
	{"redis_pool", func(s Sample) float64 { return s.RedisPool }, 0, nil},
	{"pg_pool", func(s Sample) float64 { return s.PGPool }, 0, nil},
	{"redis_clients", func(s Sample) float64 { return s.RedisClients }, 0, nil},
	{"pg_backends", func(s Sample) float64 { return s.PGBackends }, 0, nil},
	{"redis_unpooled", func(s Sample) float64 { return s.RedisClients - s.RedisPool }, checkFinal, func(t Tolerance) float64 { return t.Conns }},
	{"pg_unpooled", func(s Sample) float64 { return s.PGBackends - s.PGPool }, checkFinal, func(t Tolerance) float64 { return t.Conns }},
}

// Judge decides a soak. lastThird are the samples of the last third of the run taken while
// the traffic (long-lived requests included) was still steady; baseline and final are the
// quiet readings (traffic paused, idle connections closed) taken before the first
// long-lived request opened and after the last one closed.
func Judge(lastThird []Sample, baseline, final Sample, c Counts, tol Tolerance) Verdict {
	v := Verdict{Pass: true}
	check := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark, v.Pass = "FAIL", false
		}
		v.Lines = append(v.Lines, mark+" "+fmt.Sprintf(format, args...))
	}
	check(c.Wrong == 0, "wrong decisions: %d of %d checked (%d requests)", c.Wrong, c.Decisions, c.Requests)
	check(c.Failures == 0, "failures: %d", c.Failures)
	check(c.Decisions > 0, "decisions checked: %d", c.Decisions)
	for _, s := range allSeries {
		start, end := s.get(baseline), s.get(final)
		switch s.check {
		case checkGrowth:
			g := Growth(lastThird, s.get)
			check(g <= s.tol(tol), "%s: baseline %.1f, final %.1f, last-third growth %+.1f%% (tolerance %.0f%%)",
				s.name, start, end, g*100, s.tol(tol)*100)
		case checkFinal:
			check(end-start <= s.tol(tol), "%s: baseline %.0f, final %.0f (%+.0f, tolerance +%.0f)",
				s.name, start, end, end-start, s.tol(tol))
		}
	}
	return v
}

// Growth fits a least-squares line to get over the samples and returns its rise from the
// first sample's time to the last, as a fraction of the mean. Fewer than two samples, or a
// zero mean, give NaN, which no tolerance accepts.
func Growth(samples []Sample, get func(Sample) float64) float64 {
	n := float64(len(samples))
	if n < 2 {
		return math.NaN()
	}
	var st, sy, stt, sty float64
	for _, s := range samples {
		y := get(s)
		st, sy, stt, sty = st+s.T, sy+y, stt+s.T*s.T, sty+s.T*y
	}
	den := n*stt - st*st
	mean := sy / n
	if den == 0 || mean == 0 {
		return math.NaN()
	}
	slope := (n*sty - st*sy) / den
	return slope * (samples[len(samples)-1].T - samples[0].T) / mean
}
