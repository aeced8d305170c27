package main

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	// revokeGrace is how long a revoked session may still be served: the trigger's
	// notification reaches the sidecar, which evicts it from every cache. Past it (and
	// outside an outage and its margin), a 200 is a wrong decision.
	revokeGrace = 2 * time.Second
	revokePoll  = 250 * time.Millisecond
	// revokeGiveUp ends the polling of a revocation that never took effect.
	revokeGiveUp = 30 * time.Second
)

// revoker revokes a freshly used (so cached) session every second and checks that the
// sidecar refuses it soon after.
type revoker struct {
	tr *traffic

	mu        sync.Mutex
	latencies []time.Duration // revocation to first 401
}

// run revokes once a second until ctx ends, then waits for the checks under way.
func (rv *revoker) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		token := rv.tr.latest.Swap(nil)
		if token == nil || rv.tr.paused.Load() {
			continue // no fresh session answered 200 this second (an outage, a quiet reading)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rv.revokeAndCheck(ctx, *token)
		}()
	}
}

// revokeAndCheck presents token (so the in-process cache holds it), revokes it in
// Postgres and polls until the sidecar answers 401.
func (rv *revoker) revokeAndCheck(ctx context.Context, token string) {
	tr := rv.tr
	tr.check(ctx, "revoke-before", token, true)
	if err := tr.store.revoke(ctx, token); err != nil {
		if ctx.Err() == nil {
			tr.tally.fail("revoke", "%v", err)
		}
		return
	}
	revoked := time.Now()
	for time.Since(revoked) < revokeGiveUp {
		sent := time.Now()
		code, err := tr.get(ctx, "/", token)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			tr.tally.fail("revoked", "%v", err)
			return
		case code == http.StatusUnauthorized:
			tr.tally.decisions.Add(1)
			rv.record(time.Since(revoked))
			return
		case code == http.StatusOK && sent.Sub(revoked) > revokeGrace && !tr.tally.inOutage(sent):
			tr.tally.decisions.Add(1)
			tr.tally.wrongDecision("revoked", "served 200 %.1fs after its revocation", sent.Sub(revoked).Seconds())
			return
		case code != http.StatusOK && (code != http.StatusServiceUnavailable || !tr.tally.inOutage(sent)):
			tr.tally.fail("revoked", "answered %d", code)
			return
		}
		time.Sleep(revokePoll)
	}
	tr.tally.wrongDecision("revoked", "still not refused %s after its revocation", revokeGiveUp)
}

func (rv *revoker) record(d time.Duration) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.latencies = append(rv.latencies, d)
}

// stats returns how many revocations were refused, and the median and the longest time
// from revocation to the first 401.
func (rv *revoker) stats() (n int, p50, longest time.Duration) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if len(rv.latencies) == 0 {
		return 0, 0, 0
	}
	l := slices.Clone(rv.latencies)
	slices.Sort(l)
	return len(l), l[len(l)/2], l[len(l)-1]
}
