package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/admin"
	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/health"
	"github.com/authsidecar/authsidecar/pgsession"
	"github.com/authsidecar/authsidecar/proxy"
)

// maxHeaderBytes bounds request headers: room for a 4 KiB token and an app's cookies.
const maxHeaderBytes = 256 << 10

// The cache is what the change feed delivers to.
var _ pgsession.Sink = (*authcache.Cache)(nil)

// serve runs the sidecar until ctx ends, then drains for cfg.ShutdownTimeout. env is the
// process environment, for the process-wide settings the configuration does not cover.
func serve(ctx context.Context, cfg config.Config, env map[string]string, stderr io.Writer) error {
	log, flush, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return usageError{err: err}
	}
	defer flush()
	redis.SetLogger(redisLogger{log.Named("redis")})
	tracer, stopTracing, err := startTracing(ctx, env, log)
	if err != nil {
		return err
	}
	defer stopTracing(context.Background()) // a start that fails below; after the drain, a no-op

	reg := prometheus.NewRegistry()
	st, err := openBackends(ctx, cfg, log, reg, tracer)
	if err != nil {
		return err
	}
	defer st.close()
	// Every request's context derives from base: cancelling it after the drain time ends
	// what Shutdown does not wait for, such as WebSockets.
	base, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv, err := newServers(cfg, st, log, base, reg, tracer)
	if err != nil {
		return err
	}
	stopBackground := startBackground(cfg, env, st)
	defer stopBackground()

	errc := srv.serve()
	log.Info("serving", zap.String("version", version), zap.Stringer("listen", srv.publicLn.Addr()),
		zap.Stringer("admin", srv.adminLn.Addr()), zap.String("redis", cmp.Or(cfg.RedisMode(), "disabled")), zap.String("upstream", cfg.UpstreamURL.Redacted()))
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("shutting down", zap.Duration("drain", cfg.ShutdownTimeout))
	drain, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if derr := srv.drain(drain); derr != nil {
		log.Warn("drain time over; closing remaining connections", zap.Error(derr))
		cancelRequests()
		srv.close()
	}
	stopTracing(drain) // the spans of the drained requests too, within what is left of the drain time
	return err
}

// backends are the session store, the Redis client (nil without Redis), the cache over
// both, and the health document that describes them.
type backends struct {
	store  *pgsession.Store
	rdb    redis.UniversalClient
	cache  *authcache.Cache
	health *health.Reporter
}

func openBackends(ctx context.Context, cfg config.Config, log *zap.Logger, reg prometheus.Registerer, tracer trace.Tracer) (*backends, error) {
	store, err := pgsession.Open(ctx, pgsession.Options{
		URL: cfg.DatabaseURL, PrimaryURL: cfg.DBNotifyURL,
		MaxConns: int32(cfg.DBMaxConns), QueryTimeout: cfg.DBQueryTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	rdb, err := newRedis(cfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	o := authcache.Options{
		Redis: rdb, Prefix: cfg.SessionKeyPrefix,
		SessionTTL: cfg.SessionCacheTTL, NegativeTTL: cfg.NegativeCacheTTL,
		LocalTTL: cfg.LocalCacheTTL, LocalSize: cfg.LocalCacheSize,
		OpTimeout: cfg.RedisOpTimeout, LookupTimeout: cfg.DBQueryTimeout,
		BreakerFailures: uint32(cfg.BreakerFailures), BreakerOpenFor: cfg.BreakerOpenFor,
		PrimaryWindow: cfg.DBPrimaryWindow,
		Registerer:    reg,
		Logger:        log.Named("authcache"),
		Tracer:        tracer,
	}
	if cfg.CacheWarmOnStart {
		// Sessions active within a Redis entry's lifetime are the ones worth loading.
		o.WarmFrom = func(ctx context.Context) ([]pgsession.Session, error) {
			return store.Active(ctx, time.Now().Add(-cfg.SessionCacheTTL), cfg.CacheWarmLimit)
		}
	}
	cache := authcache.New(store, o)
	rep := health.New(health.Options{
		Redis: rdb, Mode: cfg.RedisMode(), Cache: cache, Prefix: cfg.SessionKeyPrefix,
		SessionTTL: cfg.SessionCacheTTL, OpTimeout: cfg.RedisOpTimeout,
	})
	return &backends{store: store, rdb: rdb, cache: cache, health: rep}, nil
}

func (s *backends) close() {
	if s.rdb != nil {
		s.rdb.Close()
	}
	s.store.Close()
}

// servers are the public and the admin listener, bound before anything is served so that a
// taken address fails the start.
type servers struct {
	public, admin     *http.Server
	handler           *proxy.Handler
	publicLn, adminLn net.Listener
}

func newServers(cfg config.Config, st *backends, log *zap.Logger, base context.Context, reg *prometheus.Registry, tracer trace.Tracer) (*servers, error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		st.health, st.store)
	signer, err := newAssertions(cfg)
	if err != nil {
		return nil, err
	}
	handler := proxy.New(proxy.Options{
		Upstream: cfg.UpstreamURL, Auth: st.cache, Health: st.health,
		PublicPaths: cfg.PublicPaths, LogoutPaths: cfg.LogoutPaths,
		TrustedProxies: cfg.TrustedProxies, SessionCookie: cfg.SessionCookie,
		ValidatePath: cfg.ValidatePath, HealthPath: cfg.HealthPath,
		BodyIdleTimeout: cfg.BodyIdleTimeout, InvalidTokenRate: cfg.InvalidTokenRate,
		Assertions: signer, JWKSPath: cfg.JWKSPath,
		Logger: log.Named("proxy"), Registerer: reg, Tracer: tracer,
	})
	s := &servers{handler: handler}
	s.public = &http.Server{
		Handler:           handler,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	s.admin = &http.Server{
		Handler: admin.New(admin.Options{
			Auth: st.cache, Ready: st.store.Ping, Token: cfg.AdminToken, Logger: log.Named("admin"),
			Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
			JWKS:    jwksHandler(signer),
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("admin")),
	}
	if s.publicLn, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("LISTEN_ADDR: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		s.publicLn.Close()
		return nil, fmt.Errorf("ADMIN_ADDR: %w", err)
	}
	return s, nil
}

// serve starts both listeners; the channel reports the first one that fails.
func (s *servers) serve() <-chan error {
	errc := make(chan error, 2)
	go func() { errc <- s.public.Serve(s.publicLn) }()
	go func() { errc <- s.admin.Serve(s.adminLn) }()
	return errc
}

// drain stops accepting and waits, until ctx ends, for in-flight requests, including the
// upgraded connections (WebSockets) that http.Server.Shutdown does not track.
func (s *servers) drain(ctx context.Context) error {
	return errors.Join(s.public.Shutdown(ctx), s.handler.Wait(ctx), s.admin.Shutdown(ctx))
}

// redisGroup names the replicas that relay evictions to each other: those on the same
// Redis with the same key prefix.
func redisGroup(cfg config.Config) string {
	return strings.Join([]string{cfg.RedisMode(), redisAddrs(cfg), cfg.SessionKeyPrefix}, "|")
}

func redisAddrs(cfg config.Config) string {
	if opts, err := redis.ParseURL(cfg.RedisURL); err == nil {
		return opts.Addr + "/" + strconv.Itoa(opts.DB)
	}
	addrs := slices.Sorted(slices.Values(append(slices.Clone(cfg.RedisSentinelAddrs), cfg.RedisClusterAddrs...)))
	return strings.Join(addrs, ",") + "/" + cfg.RedisSentinelMaster
}

func (s *servers) close() { _ = errors.Join(s.public.Close(), s.admin.Close()) }

// startBackground starts the cache's background work (peer evictions, retries, warming),
// the change feed that delivers to it, and the GC tuner; the returned function stops them
// and waits.
func startBackground(cfg config.Config, env map[string]string, st *backends) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { st.cache.Run(ctx) })
	wg.Go(func() { tuneGC(ctx, env) })
	if cfg.DBNotifyChannel != "" {
		o := pgsession.FeedOptions{
			Channel: cfg.DBNotifyChannel,
			// A fresh process, or one taking the feed over, may have missed revocations
			// while nobody listened: anything revoked within a Redis entry's lifetime is
			// evicted.
			FirstSyncWindow: cfg.SessionCacheTTL,
		}
		if st.rdb != nil {
			// While the cache's pub/sub relays evictions, one replica of those sharing this
			// Redis and prefix listens for all.
			o.Shared, o.Group = st.cache.PeersUp, redisGroup(cfg)
			o.Wake, o.StandbyFreed = st.cache.FeedWake(), st.cache.AnnounceStandbyFree
		}
		wg.Go(func() { _ = st.store.Listen(ctx, o, st.cache) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// healthcheck exits 0 iff the admin listener's /readyz answers 200 (Docker HEALTHCHECK).
func healthcheck(ctx context.Context, adminAddr string) error {
	host, port, _ := net.SplitHostPort(adminAddr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %d", resp.StatusCode)
	}
	return nil
}

// redisLogger routes go-redis's own log lines (which default to plain text on stderr, and
// are loudest while Redis is down) into zap.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
