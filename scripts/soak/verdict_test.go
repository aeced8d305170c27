package main

import (
	"math"
	"strings"
	"testing"
)

// ramp returns n samples 10 s apart whose RSS and heaps rise from base by step per sample.
func ramp(n int, base, step float64) []Sample {
	out := make([]Sample, n)
	for i := range out {
		m := base + step*float64(i)
		out[i] = Sample{T: float64(i * 10), RSS: m, Heap: m / 2, LiveHeap: m / 4}
	}
	return out
}

var tol = Tolerance{MemGrowth: 0.05, Goroutines: 10, FDs: 5, Conns: 2}

func TestGrowth(t *testing.T) {
	rss := func(s Sample) float64 { return s.RSS }
	cases := []struct {
		name    string
		samples []Sample
		want    float64
	}{
		{"flat", ramp(10, 100, 0), 0},
		{"linear 9% over the span", ramp(10, 100, 1), 9.0 / 104.5},
		{"falling", ramp(10, 100, -1), -9.0 / 95.5},
	}
	for _, c := range cases {
		if got := Growth(c.samples, rss); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: Growth = %v, want %v", c.name, got, c.want)
		}
	}
	// A sawtooth as tall as a fifth of the level (GC cycles) stays within the tolerance.
	saw := ramp(30, 100, 0)
	for i := range saw {
		saw[i].RSS += float64(i%3) * 10
	}
	if got := Growth(saw, rss); math.Abs(got) > tol.MemGrowth {
		t.Errorf("sawtooth: Growth = %v, want within ±%v", got, tol.MemGrowth)
	}
	for _, short := range [][]Sample{nil, ramp(1, 100, 0), ramp(5, 0, 0)} {
		if got := Growth(short, rss); !math.IsNaN(got) {
			t.Errorf("Growth(%v) = %v, want NaN", short, got)
		}
	}
}

func TestJudge(t *testing.T) {
	base := Sample{RSS: 100, Heap: 50, Goroutines: 40, FDs: 20, RedisPool: 5, PGPool: 4, RedisClients: 6, PGBackends: 5}
	clean := Counts{Requests: 1000, Decisions: 990}
	cases := []struct {
		name   string
		third  []Sample
		final  func(*Sample)
		counts Counts
		fail   string // the start of the failing line; empty for a pass
	}{
		{"steady", ramp(20, 100, 0), func(*Sample) {}, clean, ""},
		{"within tolerance", ramp(20, 100, 0.2), func(s *Sample) { s.Goroutines += 10; s.FDs += 5; s.PGBackends += 2 }, clean, ""},
		{"fewer connections at the end", ramp(20, 100, 0), func(s *Sample) { s.RedisClients = 1; s.Goroutines = 30 }, clean, ""},
		{"a pool grown to its size", ramp(20, 100, 0), func(s *Sample) { s.RedisPool += 5; s.RedisClients += 5; s.FDs += 5 }, clean, ""},
		{"memory climbs", ramp(20, 100, 1), func(*Sample) {}, clean, "FAIL rss_mb:"},
		{"goroutines leak", ramp(20, 100, 0), func(s *Sample) { s.Goroutines += 11 }, clean, "FAIL goroutines:"},
		{"fd leak", ramp(20, 100, 0), func(s *Sample) { s.FDs += 6 }, clean, "FAIL fds_unpooled:"},
		{"postgres connection leak", ramp(20, 100, 0), func(s *Sample) { s.PGBackends += 3 }, clean, "FAIL pg_unpooled:"},
		{"redis connection leak", ramp(20, 100, 0), func(s *Sample) { s.RedisClients += 3 }, clean, "FAIL redis_unpooled:"},
		{"one wrong decision", ramp(20, 100, 0), func(*Sample) {}, Counts{Requests: 1000, Decisions: 990, Wrong: 1}, "FAIL wrong decisions:"},
		{"one failure", ramp(20, 100, 0), func(*Sample) {}, Counts{Requests: 1000, Decisions: 990, Failures: 1}, "FAIL failures:"},
		{"nothing checked", ramp(20, 100, 0), func(*Sample) {}, Counts{}, "FAIL decisions checked:"},
		{"too short to judge", ramp(1, 100, 0), func(*Sample) {}, clean, "FAIL rss_mb:"},
	}
	for _, c := range cases {
		final := base
		c.final(&final)
		v := Judge(c.third, base, final, c.counts, tol)
		var failed []string
		for _, l := range v.Lines {
			if strings.HasPrefix(l, "FAIL") {
				failed = append(failed, l)
			}
		}
		switch {
		case c.fail == "" && (!v.Pass || len(failed) > 0):
			t.Errorf("%s: failed: %q", c.name, failed)
		case c.fail != "" && (v.Pass || len(failed) == 0 || !strings.HasPrefix(failed[0], c.fail)):
			t.Errorf("%s: Pass=%v, failing lines %q, want first to start %q", c.name, v.Pass, failed, c.fail)
		}
	}
}
