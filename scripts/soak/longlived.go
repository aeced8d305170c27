package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	webSockets = 12
	streams    = 6
	holdMin    = 20 * time.Second // each is held for a random time between these, then reopened
	holdMax    = 60 * time.Second
	echoEvery  = 2 * time.Second
)

// longLived keeps WebSockets and event streams open through the sidecar, each on a session
// of its own that is never revoked, so the sidecar must keep every one open to its end.
type longLived struct {
	tr     *traffic
	host   string // the sidecar's public listener, host:port
	tokens []string
	open   atomic.Int64
	wg     sync.WaitGroup
}

// start opens them all; they close when ctx ends and wait returns when they have.
func (ll *longLived) start(ctx context.Context) {
	for i, token := range ll.tokens {
		ll.wg.Add(1)
		go func() {
			defer ll.wg.Done()
			for ctx.Err() == nil {
				hold := holdMin + rand.N(holdMax-holdMin)
				if i < webSockets {
					ll.webSocket(ctx, token, hold)
				} else {
					ll.stream(ctx, token, hold)
				}
			}
		}()
	}
}

func (ll *longLived) wait() { ll.wg.Wait() }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// webSocket upgrades, then sends a line every echoEvery and expects it back, for hold.
func (ll *longLived) webSocket(ctx context.Context, token string, hold time.Duration) {
	tally := ll.tr.tally
	tally.requests.Add(1)
	sent := time.Now()
	conn, err := net.DialTimeout("tcp", ll.host, 5*time.Second)
	if err != nil {
		tally.judge("websocket", true, 0, err, sent)
		sleep(ctx, time.Second)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer %s\r\n\r\n", ll.host, token)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if ctx.Err() != nil {
		return
	}
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		code := 0
		if err == nil {
			code = resp.StatusCode
		}
		tally.judge("websocket", true, code, err, sent)
		sleep(ctx, time.Second)
		return
	}
	tally.judge("websocket", true, http.StatusOK, nil, sent)
	ll.open.Add(1)
	defer ll.open.Add(-1)
	ll.echo(ctx, conn, r, time.Now().Add(hold))
}

// echo exchanges lines on an upgraded connection until end or ctx; a lost echo is a
// failure: the sidecar must not cut a WebSocket whose session is valid.
func (ll *longLived) echo(ctx context.Context, conn net.Conn, r *bufio.Reader, end time.Time) {
	for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
		want := fmt.Sprintf("ping %d\n", n)
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := conn.Write([]byte(want))
		var got string
		if err == nil {
			got, err = r.ReadString('\n')
		}
		if err != nil || got != want {
			ll.tr.tally.fail("websocket", "echo %d: got %q, %v", n, got, err)
			return
		}
		sleep(ctx, echoEvery)
	}
}

// stream reads an event stream for hold; it must not end early nor stall.
func (ll *longLived) stream(ctx context.Context, token string, hold time.Duration) {
	tally := ll.tr.tally
	tally.requests.Add(1)
	hctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	req, _ := http.NewRequestWithContext(hctx, http.MethodGet, "http://"+ll.host+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	sent := time.Now()
	resp, err := ll.tr.client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		if err == nil {
			resp.Body.Close()
			tally.judge("stream", true, resp.StatusCode, nil, sent)
		} else if ctx.Err() == nil {
			tally.judge("stream", true, 0, err, sent)
		}
		sleep(ctx, time.Second)
		return
	}
	defer resp.Body.Close()
	tally.judge("stream", true, resp.StatusCode, nil, sent)
	ll.open.Add(1)
	defer ll.open.Add(-1)
	events, scan := 0, bufio.NewScanner(resp.Body)
	for scan.Scan() {
		if strings.HasPrefix(scan.Text(), "data: ") {
			events++
		}
	}
	held := time.Since(sent)
	switch {
	case hctx.Err() == nil:
		tally.fail("stream", "ended after %.1fs of %.0fs: %v", held.Seconds(), hold.Seconds(), scan.Err())
	case float64(events) < held.Seconds()-3:
		tally.fail("stream", "%d events in %.1fs: stalled", events, held.Seconds())
	}
}
