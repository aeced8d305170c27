// Command benchserver is the benchmark's helper (scripts/bench.sh): the 1 KB upstream app
// and the bare httputil.ReverseProxy baseline, built with the sidecar's own Transport so the
// comparison isolates what authentication costs.
//
//	benchserver upstream -listen 127.0.0.1:18081 [-size 1024]
//	benchserver bare -listen 127.0.0.1:18082 -upstream http://127.0.0.1:18081
//	benchserver handler -listen 127.0.0.1:18083 -upstream http://127.0.0.1:18081
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
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // only served with -pprof
	"net/url"
	"os"
	"strconv"
	"time"

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
		return errors.New("usage: benchserver upstream|bare [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	size := fs.Int("size", 1024, "upstream: response body size in bytes")
	upstream := fs.String("upstream", "", "bare: the upstream's base URL")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (for comparing profiles)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var h http.Handler
	switch args[0] {
	case "upstream":
		h = upstreamHandler(*size)
	case "bare", "handler":
		u, err := url.Parse(*upstream)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%s: -upstream must be an absolute URL", args[0])
		}
		h = bareProxy(u)
		if args[0] == "handler" {
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

// bareProxy is the baseline: a plain ReverseProxy with Rewrite (SetURL, SetXForwarded) and
// the sidecar's Transport, nothing else — no BufferPool, no auth, no logging, no metrics.
func bareProxy(u *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: proxy.NewTransport(),
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
