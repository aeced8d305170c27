package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Fixed request rates, per second: a leak test, not a throughput test.
const (
	hotRate     = 80 // a few sessions: in-process cache hits
	warmRate    = 60 // warmTokens sessions in turn, each every ~50 s: past LOCAL_CACHE_TTL, so Redis hits
	freshRate   = 10 // a session created just before: a miss, looked up in Postgres
	invalidRate = 20 // random tokens no session has
	hotTokens   = 20
	warmTokens  = 3000
	maxInFlight = 128 // a tick that finds this many requests waiting is a failure, not a pile-up
	// requestTimeout bounds a short request; the client has none, for the streams.
	requestTimeout = 10 * time.Second
)

// traffic sends the steady request mix to the sidecar.
type traffic struct {
	url    string // the sidecar's public listener
	client *http.Client
	tally  *tally
	store  *store
	hot    []string
	warm   []string
	warmAt atomic.Int64
	latest atomic.Pointer[string] // the last fresh session, for the next revocation
	paused atomic.Bool            // no new request while set (a quiet reading)
	sem    chan struct{}
	wg     sync.WaitGroup
}

// get sends GET path with token as the bearer token and returns the status.
func (tr *traffic) get(ctx context.Context, path, token string) (int, error) {
	tr.tally.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tr.url+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := tr.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// check sends one request for token and judges the answer.
func (tr *traffic) check(ctx context.Context, kind, token string, valid bool) int {
	sent := time.Now()
	code, err := tr.get(ctx, "/", token)
	if ctx.Err() == nil {
		tr.tally.judge(kind, valid, code, err, sent)
	}
	return code
}

// run starts one ticker per kind of request; they stop with ctx.
func (tr *traffic) run(ctx context.Context) {
	tr.every(ctx, "hot", hotRate, func(ctx context.Context) {
		tr.check(ctx, "hot", tr.hot[rand.IntN(len(tr.hot))], true)
	})
	tr.every(ctx, "warm", warmRate, func(ctx context.Context) {
		tr.check(ctx, "warm", tr.warm[int(tr.warmAt.Add(1))%len(tr.warm)], true)
	})
	tr.every(ctx, "invalid", invalidRate, func(ctx context.Context) {
		tr.check(ctx, "invalid", newToken("soak-bad-"), false)
	})
	tr.every(ctx, "fresh", freshRate, tr.fresh)
}

// fresh logs a new session in and presents it at once.
func (tr *traffic) fresh(ctx context.Context) {
	tokens, err := tr.store.create(ctx, 1)
	if err != nil {
		if ctx.Err() == nil {
			tr.tally.fail("fresh", "creating a session: %v", err)
		}
		return
	}
	if tr.check(ctx, "fresh", tokens[0], true) == http.StatusOK {
		tr.latest.Store(&tokens[0])
	}
}

// every calls fn perSecond times a second, each call in its own goroutine, until ctx ends.
func (tr *traffic) every(ctx context.Context, kind string, perSecond int, fn func(context.Context)) {
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if tr.paused.Load() {
				continue
			}
			select {
			case tr.sem <- struct{}{}:
			default:
				tr.tally.fail(kind, "%d requests in flight: the sidecar is not keeping up", maxInFlight)
				continue
			}
			tr.wg.Add(1)
			go func() {
				defer func() { <-tr.sem; tr.wg.Done() }()
				fn(ctx)
			}()
		}
	}()
}
