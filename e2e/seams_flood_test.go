package e2e

// The invalid-token flood of issue 12, counted in Postgres on the wire: one client sends
// distinct random tokens at a steady floodRate, with INVALID_TOKEN_RATE at its default and
// with the limit off, while a valid user with a cached session measures its latency. Not
// parallel: the figures are timings.

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

const (
	floodWorkers  = 8
	floodRate     = 300 // requests per second, all workers together: the same load with and without the limit
	floodFor      = 3 * time.Second
	baselineCalls = 300
)

// floodResult is what one run measured.
type floodResult struct {
	sent, limited, refused int64           // flood requests, of which 429, of which 401
	queries                int64           // Postgres lookups seen on the wire during the flood
	baseline, during       []time.Duration // the valid user's latencies, without and with the flood
	retryAfter             string
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// validUser sends GETs with a cached valid session until stop is closed (or n were sent,
// when stop is nil), failing the test on anything but 200.
func validUser(t *testing.T, sc *Sidecar, token string, n int, stop <-chan struct{}) []time.Duration {
	t.Helper()
	var lat []time.Duration
	for i := 0; n == 0 || i < n; i++ {
		if stop != nil {
			select {
			case <-stop:
				return lat
			default:
			}
		}
		start := time.Now()
		r := sc.Get(t, "/api/me", token)
		lat = append(lat, time.Since(start))
		if r.Status != http.StatusOK {
			t.Fatalf("the valid user got %d during the flood: %s", r.Status, r.Body)
		}
		if stop != nil {
			time.Sleep(2 * time.Millisecond) // a user, not a second flood
		}
	}
	return lat
}

func runFlood(t *testing.T, rate string) floodResult {
	t.Helper()
	st := newStack(t)
	pg := newPGCounter(t, hostOf(t, st.db.URL))
	up := NewUpstream(t, echoUser)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{
		"DATABASE_URL": st.db.URLVia(pg.Addr()), "DB_NOTIFY_CHANNEL": "none", "INVALID_TOKEN_RATE": rate,
	}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	validUser(t, sc, token, 20, nil) // cached in process from now on
	var res floodResult
	res.baseline = validUser(t, sc, token, baselineCalls, nil)

	floodClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: floodWorkers}, Timeout: 10 * time.Second}
	t.Cleanup(floodClient.CloseIdleConnections)
	before := pg.Executes()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var retryAfter atomic.Value
	for w := range floodWorkers {
		wg.Go(func() {
			tick := time.NewTicker(time.Second * floodWorkers / floodRate)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				req := newRequest(t, http.MethodGet, sc.URL+"/api/data", fmt.Sprintf("flood-%d-%d-%d", w, i, time.Now().UnixNano()), nil)
				resp, err := floodClient.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				atomic.AddInt64(&res.sent, 1)
				switch resp.StatusCode {
				case http.StatusTooManyRequests:
					atomic.AddInt64(&res.limited, 1)
					retryAfter.Store(resp.Header.Get("Retry-After"))
				case http.StatusUnauthorized:
					atomic.AddInt64(&res.refused, 1)
				}
			}
		})
	}
	var during []time.Duration
	userDone := make(chan struct{})
	go func() {
		defer close(userDone)
		during = validUser(t, sc, token, 0, stop)
	}()
	time.Sleep(floodFor)
	close(stop)
	wg.Wait()
	<-userDone
	res.queries = pg.Executes() - before
	res.during = during
	if v, ok := retryAfter.Load().(string); ok {
		res.retryAfter = v
	}
	if res.sent-res.limited-res.refused != 0 {
		t.Errorf("flood answers other than 401 and 429: %d of %d", res.sent-res.limited-res.refused, res.sent)
	}
	return res
}

func TestSeamsInvalidTokenFloodStopsAtTheBurst(t *testing.T) {
	limited := runFlood(t, "20") // the default: 20 per second, bursts of 40
	open := runFlood(t, "0")
	secs := floodFor.Seconds()
	for _, r := range []struct {
		name string
		floodResult
	}{{"INVALID_TOKEN_RATE=20", limited}, {"INVALID_TOKEN_RATE=0", open}} {
		t.Logf("%s: %d flood requests in %v (%.0f/s: %d answered 401, %d answered 429); %d Postgres lookups (%.1f/s); "+
			"valid user p50/p99 %v/%v without the flood, %v/%v during it (%d requests)",
			r.name, r.sent, floodFor, float64(r.sent)/secs, r.refused, r.limited, r.queries, float64(r.queries)/secs,
			percentile(r.baseline, .5).Round(10*time.Microsecond), percentile(r.baseline, .99).Round(10*time.Microsecond),
			percentile(r.during, .5).Round(10*time.Microsecond), percentile(r.during, .99).Round(10*time.Microsecond), len(r.during))
	}
	// With the limit, lookups stop at the burst plus the refill (and the lookups already in
	// flight when the bucket ran dry, at most one per flooding connection).
	if most := int64(40 + 20*(secs+1) + floodWorkers); limited.queries > most || limited.queries < 40 {
		t.Errorf("with the limit: %d lookups, want the burst (40) and at most %d", limited.queries, most)
	}
	if limited.limited == 0 || limited.retryAfter == "" {
		t.Errorf("with the limit: %d answers 429, Retry-After %q", limited.limited, limited.retryAfter)
	}
	// Without it, every distinct token costs a lookup.
	if open.queries < open.sent*9/10 || open.limited != 0 {
		t.Errorf("without the limit: %d lookups for %d distinct tokens (%d limited), want one each", open.queries, open.sent, open.limited)
	}
	// The valid user during the limited flood, as ratios of its own baseline. The flood still
	// shares two CPUs with the sidecar, Postgres, Redis and this test (and, in CI, other
	// jobs), so it costs something; the bounds catch what a flood of lookups does to a
	// cached user — a pool to wait for, a p99 in the hundreds of milliseconds — not noise.
	p50 := float64(percentile(limited.during, .5)) / float64(percentile(limited.baseline, .5))
	p99 := float64(percentile(limited.during, .99)) / float64(percentile(limited.baseline, .99))
	t.Logf("valid user during the limited flood: p50 %.1f×, p99 %.1f× its baseline (without the limit: %.1f×, %.1f×)", p50, p99,
		float64(percentile(open.during, .5))/float64(percentile(open.baseline, .5)),
		float64(percentile(open.during, .99))/float64(percentile(open.baseline, .99)))
	if p50 > 4 || p99 > 20 {
		t.Errorf("the valid user's latency grew %.1f× (p50) and %.1f× (p99) during the limited flood", p50, p99)
	}
}
