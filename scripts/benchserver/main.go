// Command benchserver is the benchmark's helper (scripts/bench.sh): the 1 KB upstream app,
// the bare httputil.ReverseProxy baseline, built with the sidecar's own Transport and copy
// buffer pool so the comparison isolates what authentication costs, and a round-trip probe
// of Redis and Postgres.
//
//	benchserver upstream -listen 127.0.0.1:18081 [-size 1024]
//	benchserver bare -listen 127.0.0.1:18082 -upstream http://127.0.0.1:18081
//	benchserver stock -listen 127.0.0.1:18084 -upstream http://127.0.0.1:18081
//	benchserver handler -listen 127.0.0.1:18083 -upstream http://127.0.0.1:18081
//	benchserver rtt -redis redis://127.0.0.1:6379/0 -postgres postgres://… [-duration 1s]
//
// bare is the fair baseline: proxy.NewTransport() and proxy.NewBufferPool(), as the sidecar.
// stock is httputil.ReverseProxy as it comes (a fresh 32 KiB copy buffer per request), with
// the same Transport.
//
// rtt prints the median of one round trip over one kept connection, each for -duration:
// Redis GET through go-redis (the sidecar's client), GET and PING written by hand on a raw
// socket (as redis-cli --latency), and a prepared SELECT 1 through pgx (the sidecar's
// driver), as "name=microseconds" pairs on one line.
//
// handler is proxy.Handler over an in-process authcache.Cache whose source accepts every
// token, with no Redis, Postgres or logger: next to the sidecar's local-hit row it separates
// what the handler costs from what the rest of the process (pools, listeners, log) costs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // only served with -pprof
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
	"github.com/authsidecar/authsidecar/proxy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: benchserver upstream|bare|stock|handler|rtt [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	size := fs.Int("size", 1024, "upstream: response body size in bytes")
	upstream := fs.String("upstream", "", "bare: the upstream's base URL")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (for comparing profiles)")
	redisURL := fs.String("redis", "", "rtt: Redis URL")
	pgURL := fs.String("postgres", "", "rtt: Postgres URL")
	duration := fs.Duration("duration", time.Second, "rtt: how long to measure each round trip")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "rtt" {
		return rtt(*redisURL, *pgURL, *duration)
	}
	var h http.Handler
	switch args[0] {
	case "upstream":
		h = upstreamHandler(*size)
	case "bare", "stock", "handler":
		u, err := url.Parse(*upstream)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%s: -upstream must be an absolute URL", args[0])
		}
		switch args[0] {
		case "bare":
			h = bareProxy(u, proxy.NewBufferPool())
		case "stock":
			h = bareProxy(u, nil)
		default:
			h = handlerOnly(u)
		}
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }() // lives as long as the process
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	return srv.ListenAndServe()
}

// upstreamHandler answers every request with the same size-byte body, as a small page or
// API answer of the app would be.
func upstreamHandler(size int) http.Handler {
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	length := strconv.Itoa(size)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
}

// bareProxy is a plain ReverseProxy with Rewrite (SetURL, SetXForwarded), the sidecar's
// Transport and the given copy-buffer pool (nil: ReverseProxy's own, a new buffer per
// request), nothing else — no auth, no logging, no metrics.
func bareProxy(u *url.URL, pool httputil.BufferPool) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  proxy.NewTransport(),
		BufferPool: pool,
	}
}

// handlerOnly is the sidecar's handler with its cache in process and nothing behind it.
func handlerOnly(u *url.URL) http.Handler {
	cache := authcache.New(anySession{}, authcache.Options{
		SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: time.Hour, LocalSize: 100000, LookupTimeout: time.Second,
	})
	return proxy.New(proxy.Options{
		Upstream: u, Auth: cache, LogoutPaths: []string{"/api/auth/logout"},
		ValidatePath: "/api/auth/validate", HealthPath: "/api/health/redis",
	})
}

// anySession is a source that knows every token.
type anySession struct{}

func (a anySession) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return a.Lookup(ctx, h)
}

func (anySession) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	now := time.Now()
	return pgsession.Session{
		TokenHash: h, ID: "2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01", UserID: "7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01",
		Email: "jose.muller@example.com", FirstName: "José", LastName: "Müller", Username: "jose.muller",
		ExpiresAt: now.Add(24 * time.Hour), CreatedAt: now,
	}, nil
}

// rtt measures one round trip to Redis and to Postgres over one kept connection each, and
// prints the medians in microseconds.
func rtt(redisURL, pgURL string, d time.Duration) error {
	ctx := context.Background()
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("rtt: -redis: %w", err)
	}
	ropts.PoolSize, ropts.MinIdleConns = 1, 1
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	const key = "authsidecar-bench-rtt"
	if err := rdb.Set(ctx, key, "x", time.Minute).Err(); err != nil {
		return fmt.Errorf("rtt: redis: %w", err)
	}
	raw, err := net.Dial("tcp", ropts.Addr)
	if err != nil {
		return fmt.Errorf("rtt: redis: %w", err)
	}
	defer raw.Close()
	if ropts.Password != "" || ropts.DB != 0 {
		return errors.New("rtt: the raw probe speaks RESP without AUTH or SELECT: use a Redis URL without them")
	}
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("rtt: postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Prepare(ctx, "rtt", "SELECT 1"); err != nil {
		return fmt.Errorf("rtt: postgres: %w", err)
	}
	buf := make([]byte, 64)
	rawCmd := func(cmd string) func() error {
		return func() error {
			if _, err := raw.Write([]byte(cmd)); err != nil {
				return err
			}
			_, err := raw.Read(buf) // the answers are a few bytes: one read
			return err
		}
	}
	probes := []struct {
		name string
		f    func() error
	}{
		{"redis_get_goredis", func() error { return rdb.Get(ctx, key).Err() }},
		{"redis_get_raw", rawCmd("*2\r\n$3\r\nGET\r\n$" + strconv.Itoa(len(key)) + "\r\n" + key + "\r\n")},
		{"redis_ping_raw", rawCmd("*1\r\n$4\r\nPING\r\n")},
		{"pg_select1_pgx", func() error {
			var one int
			return conn.QueryRow(ctx, "rtt").Scan(&one)
		}},
	}
	out := ""
	for _, p := range probes {
		var lat []time.Duration
		for end := time.Now().Add(d); time.Now().Before(end); {
			t := time.Now()
			if err := p.f(); err != nil {
				return fmt.Errorf("rtt: %s: %w", p.name, err)
			}
			lat = append(lat, time.Since(t))
		}
		slices.Sort(lat)
		out += fmt.Sprintf("%s=%.1f ", p.name, float64(lat[len(lat)/2].Nanoseconds())/1e3)
	}
	_ = rdb.Del(ctx, key).Err()
	fmt.Println(out[:len(out)-1])
	return nil
}
