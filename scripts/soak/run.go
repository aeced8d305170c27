package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// env is everything the soak started; close stops it all.
type env struct {
	redis   *redisServer
	fwd     *forwarder
	up      *http.Server
	sidecar *child
	store   *store
	public  string // sidecar listener host:port
	admin   string // sidecar ADMIN_ADDR
}

func (e *env) close() {
	if e.sidecar != nil {
		e.sidecar.stop()
	}
	if e.redis != nil && e.redis.proc != nil {
		e.redis.proc.stop()
	}
	if e.fwd != nil {
		e.fwd.close()
	}
	if e.up != nil {
		e.up.Close()
	}
	if e.store != nil {
		e.store.pool.Close()
	}
}

// setUp starts the upstream, the private redis-server, the Postgres forwarder and the
// sidecar.
func setUp(ctx context.Context, e *env, sidecarBin, dbURL, out string) error {
	var err error
	if e.store, err = openStore(ctx, dbURL); err != nil {
		return err
	}
	up, upLn, err := newUpstream()
	if err != nil {
		return err
	}
	e.up = up
	e.redis = &redisServer{dir: out}
	if e.redis.port, err = freePort(); err != nil {
		return err
	}
	if err := e.redis.start(); err != nil {
		return err
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	target := u.Host
	if u.Port() == "" {
		target += ":5432"
	}
	if e.fwd, err = newForwarder(target); err != nil {
		return err
	}
	u.Host = e.fwd.addr()
	ports := [2]int{}
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	e.public, e.admin = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	e.sidecar, err = startChild("sidecar", filepath.Join(out, "sidecar.log"), []string{
		"UPSTREAM_URL=http://" + upLn.Addr().String(), "DATABASE_URL=" + u.String(),
		"REDIS_URL=redis://" + e.redis.addr() + "/0", "LISTEN_ADDR=" + e.public, "ADMIN_ADDR=" + e.admin,
		"LOG_LEVEL=warn", "INVALID_TOKEN_RATE=1000",
	}, sidecarBin)
	if err != nil {
		return err
	}
	return e.sidecar.awaitUp(httpUp(fmt.Sprintf(sidecarStart, e.public)))
}

// run is the soak: set up, traffic for d with the outages on schedule, samples, verdict.
func run(ctx context.Context, sidecarBin, dbURL, out string, d time.Duration) (bool, error) {
	e := &env{}
	defer e.close()
	if err := setUp(ctx, e, sidecarBin, dbURL, out); err != nil {
		return false, err
	}
	tally := &tally{}
	tr := &traffic{url: "http://" + e.public, tally: tally, store: e.store, sem: make(chan struct{}, maxInFlight),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	hot, err := e.store.create(ctx, hotTokens)
	if err != nil {
		return false, err
	}
	warm, err := e.store.create(ctx, warmTokens)
	if err != nil {
		return false, err
	}
	long, err := e.store.create(ctx, webSockets+streams)
	if err != nil {
		return false, err
	}
	tr.hot, tr.warm = hot, warm
	ll := &longLived{tr: tr, host: e.public, tokens: long}
	rv := &revoker{tr: tr}
	s := &soak{e: e, tally: tally, tr: tr, ll: ll, rv: rv, out: out, d: d}
	return s.run(ctx)
}

// soak is one run under way.
type soak struct {
	e     *env
	tally *tally
	tr    *traffic
	ll    *longLived
	rv    *revoker
	out   string
	d     time.Duration

	events []string // events.env lines
}

func (s *soak) run(ctx context.Context) (bool, error) {
	csv, err := os.Create(filepath.Join(s.out, "samples.csv"))
	if err != nil {
		return false, err
	}
	defer csv.Close()
	fmt.Fprintln(csv, csvHeader)
	sp := &sampler{metricsURL: "http://" + s.e.admin + "/metrics", redisAddr: s.e.redis.addr(), store: s.e.store, tally: s.tally, ll: s.ll}

	s.tally.start = time.Now()
	tctx, stopTraffic := context.WithCancel(ctx)
	s.tr.run(tctx)
	revDone := make(chan struct{})
	go func() { s.rv.run(tctx); close(revDone) }()
	lctx, closeLong := context.WithCancel(tctx)
	outages := s.schedule(tctx)

	warm := min(max(s.d/12, 10*time.Second), time.Minute)
	var samples []Sample
	var baseline Sample
	var last map[string]float64
	tick := time.NewTicker(sampleEvery)
	for t := time.Duration(0); t < s.d && ctx.Err() == nil; {
		select {
		case <-ctx.Done():
			continue
		case now := <-tick.C:
			t = now.Sub(s.tally.start)
		}
		smp, m := sp.take(ctx, true)
		samples, last = append(samples, smp), m
		fmt.Fprintln(csv, csvRow(smp))
		fmt.Fprintf(os.Stderr, "soak: %s\n", csvRow(smp))
		switch {
		case baseline.T == 0 && t >= warm:
			baseline = s.quiet(ctx, sp)
			s.ll.start(lctx)
		case t >= s.d-closeLead && lctx.Err() == nil:
			closeLong()
			s.ll.wait()
		}
	}
	tick.Stop()
	final := s.quiet(ctx, sp)
	stopTraffic()
	closeLong()
	s.ll.wait()
	s.tr.wg.Wait()
	<-revDone
	<-outages
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return s.report(samples, baseline, final, last)
}

// quietFor is how long a quiet reading pauses the traffic: in-flight requests finish, the
// driver closes its idle connections to the sidecar and the upstream closes the sidecar's
// idle ones (after upstreamIdle).
const quietFor = 5 * time.Second

// quiet pauses the traffic and takes a reading that depends on no request in flight and
// no idle keep-alive connection: the baseline and the final reading.
func (s *soak) quiet(ctx context.Context, sp *sampler) Sample {
	s.tr.paused.Store(true)
	defer s.tr.paused.Store(false)
	sleep(ctx, quietFor/2)
	s.tr.client.CloseIdleConnections()
	sleep(ctx, quietFor/2)
	smp, _ := sp.take(ctx, false)
	fmt.Fprintf(os.Stderr, "soak: quiet reading %s\n", csvRow(smp))
	return smp
}

// schedule cuts Postgres for pgCut at a quarter of the run and restarts Redis at half; the
// channel closes when both are over.
func (s *soak) schedule(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.at(ctx, s.d/4, "PG_CUT", func() error {
			s.e.fwd.setCut(true)
			sleep(ctx, pgCut)
			s.e.fwd.setCut(false)
			return nil
		})
		s.at(ctx, s.d/2, "REDIS_RESTART", func() error { return s.e.redis.restart(redisDown) })
	}()
	return done
}

// at waits until offset into the run, then runs the outage fn inside an outage window and
// notes its start and end for the plot.
func (s *soak) at(ctx context.Context, offset time.Duration, name string, fn func() error) {
	sleep(ctx, time.Until(s.tally.start.Add(offset)))
	if ctx.Err() != nil {
		return
	}
	end := s.tally.beginOutage()
	from := time.Since(s.tally.start).Seconds()
	err := fn()
	end()
	if err != nil {
		s.tally.fail(name, "%v", err)
	}
	s.events = append(s.events, fmt.Sprintf("%s_FROM=%.0f", name, from), fmt.Sprintf("%s_TO=%.0f", name, time.Since(s.tally.start).Seconds()))
	fmt.Fprintf(os.Stderr, "soak: %s from %.0fs to %.0fs (err %v)\n", name, from, time.Since(s.tally.start).Seconds(), err)
}

// report judges the run and writes summary.txt and events.env.
func (s *soak) report(samples []Sample, baseline, final Sample, last map[string]float64) (bool, error) {
	if len(samples) == 0 {
		return false, fmt.Errorf("no samples")
	}
	var third []Sample
	for _, smp := range samples {
		if smp.T >= s.d.Seconds()*2/3 && smp.T < (s.d-closeLead).Seconds() {
			third = append(third, smp)
		}
	}
	c := s.tally.counts()
	v := Judge(third, baseline, final, c, tolerance)
	var b strings.Builder
	fmt.Fprintf(&b, "authsidecar soak: %s, %d samples, started %s\n", s.d, len(samples), s.tally.start.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "requests %d (%.0f/s), decisions checked %d, wrong %d, failures %d\n",
		c.Requests, float64(c.Requests)/final.T, c.Decisions, c.Wrong, c.Failures)
	n, p50, longest := s.rv.stats()
	fmt.Fprintf(&b, "revocations refused %d; revocation to first 401: median %s, longest %s\n", n, p50.Round(time.Millisecond), longest.Round(time.Millisecond))
	fmt.Fprintf(&b, "outages: %s\n", strings.Join(s.events, " "))
	b.WriteString(seriesTable(samples, baseline, final, third))
	b.WriteString(counters(last))
	for _, l := range v.Lines {
		b.WriteString(l + "\n")
	}
	s.tally.mu.Lock()
	for _, p := range s.tally.problems {
		b.WriteString("  " + p + "\n")
	}
	s.tally.mu.Unlock()
	verdict := "FAIL"
	if v.Pass {
		verdict = "PASS"
	}
	fmt.Fprintf(&b, "verdict: %s\n", verdict)
	fmt.Print(b.String())
	if err := os.WriteFile(filepath.Join(s.out, "summary.txt"), []byte(b.String()), 0o644); err != nil {
		return false, err
	}
	return v.Pass, os.WriteFile(filepath.Join(s.out, "events.env"), []byte(strings.Join(s.events, "\n")+"\n"), 0o644)
}

// seriesTable is each series' baseline, final, range and last-third growth.
func seriesTable(samples []Sample, baseline, final Sample, third []Sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %10s %10s %10s %10s %12s\n", "series", "baseline", "final", "min", "max", "last-third")
	b.WriteString("(baseline and final: quiet readings; min and max: the 10 s samples)\n")
	for _, sr := range allSeries {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, smp := range samples {
			if v := sr.get(smp); !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		fmt.Fprintf(&b, "%-14s %10.1f %10.1f %10.1f %10.1f %+11.1f%%\n", sr.name,
			sr.get(baseline), sr.get(final), lo, hi, Growth(third, sr.get)*100)
	}
	return b.String()
}

// counters lists the sidecar's validation and cache counters at the last sample.
func counters(m map[string]float64) string {
	var lines []string
	for k, v := range m {
		if strings.HasPrefix(k, "authsidecar_session_validations_total") || strings.HasPrefix(k, "authsidecar_cache_requests_total") {
			lines = append(lines, fmt.Sprintf("  %s %.0f", k, v))
		}
	}
	sort.Strings(lines)
	return "sidecar counters:\n" + strings.Join(lines, "\n") + "\n"
}
