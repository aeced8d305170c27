package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sampler reads the sidecar's metrics and both servers' connection lists.
type sampler struct {
	metricsURL string // the sidecar's ADMIN_ADDR /metrics
	redisAddr  string
	store      *store
	tally      *tally
	ll         *longLived

	lastT        time.Time
	lastRequests int64
}

// take reads one sample; a reading that fails is NaN (a gap in the plot). Only a regular
// sample measures the request rate since the previous one.
func (s *sampler) take(ctx context.Context, regular bool) (Sample, map[string]float64) {
	now := time.Now()
	m, err := scrape(s.metricsURL)
	if err != nil {
		s.tally.note("sample", "metrics", "%v", err)
	}
	get := func(name string) float64 {
		if v, ok := m[name]; ok {
			return v
		}
		return math.NaN()
	}
	smp := Sample{
		T:   now.Sub(s.tally.start).Seconds(),
		RSS: get("process_resident_memory_bytes"), Heap: get("go_memstats_heap_inuse_bytes"),
		LiveHeap:   liveHeap(get("go_memstats_next_gc_bytes"), get("go_gc_gogc_percent")),
		Goroutines: get("go_goroutines"), FDs: get("process_open_fds"),
		RedisPool:    get(`authsidecar_redis_pool_connections{state="total"}`),
		PGPool:       get(`authsidecar_postgres_pool_connections{state="total"}`),
		RedisClients: redisClients(s.redisAddr), PGBackends: math.NaN(),
		LongLived: float64(s.ll.open.Load()),
	}
	if n, err := s.store.backends(ctx); err == nil {
		smp.PGBackends = n
	}
	if !regular {
		return smp, m
	}
	requests := s.tally.requests.Load()
	if !s.lastT.IsZero() {
		smp.Rate = float64(requests-s.lastRequests) / now.Sub(s.lastT).Seconds()
	}
	s.lastT, s.lastRequests = now, requests
	return smp, m
}

// liveHeap estimates the heap live after the last collection from the heap goal: the
// runtime sets the goal to live × (1 + GOGC/100), and the sidecar's GC tuning moves GOGC so
// the goal stays at max(2 × live, 32 MiB) (gctune.go). Heap in use is a sawtooth between
// the live heap and the goal, too noisy for a trend over a few dozen samples.
func liveHeap(goal, gogc float64) float64 {
	return goal / (1 + gogc/100)
}

// scrape reads a Prometheus text exposition into name{labels} -> value.
func scrape(url string) (map[string]float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); i > 0 && err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// redisClients counts the clients redis-server lists, less the connection asking.
func redisClients(addr string) float64 {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return math.NaN()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("CLIENT LIST\r\n")); err != nil {
		return math.NaN()
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	n, perr := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if err != nil || perr != nil || !strings.HasPrefix(head, "$") {
		return math.NaN()
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return math.NaN()
	}
	return float64(strings.Count(string(body), "\n") - 1)
}

// csvHeader and csvRow write the series in the units of the plot.
const csvHeader = "t_s,rss_mb,heap_mb,live_heap_mb,goroutines,fds,redis_pool,pg_pool,redis_clients,pg_backends,req_per_s,long_lived"

func csvRow(s Sample) string {
	return fmt.Sprintf("%.0f,%.2f,%.2f,%.2f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.1f,%.0f",
		s.T, s.RSS/1e6, s.Heap/1e6, s.LiveHeap/1e6, s.Goroutines, s.FDs, s.RedisPool, s.PGPool, s.RedisClients, s.PGBackends, s.Rate, s.LongLived)
}
