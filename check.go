package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/check"
	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/pgsession"
)

// redisName says which Redis the configuration names, for messages: addresses, never a
// password.
func redisName(cfg config.Config) string {
	switch cfg.RedisMode() {
	case config.RedisSentinel:
		return "master " + cfg.RedisSentinelMaster + " of Sentinels " + strings.Join(cfg.RedisSentinelAddrs, ",")
	case config.RedisCluster:
		return "cluster " + strings.Join(cfg.RedisClusterAddrs, ",")
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return "REDIS_URL"
	}
	return opts.Addr
}

// check runs the connection suite against the configured Redis and Postgres, prints one
// line per scenario on stdout and fails unless every scenario that ran passed. Without
// REDIS_URL the Redis scenarios are skipped and the Postgres ones still run.
func runCheck(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	// Each failure is reported on its own line; go-redis's own retry chatter on stderr
	// would only repeat it.
	redis.SetLogger(redisLogger{zap.NewNop()})
	store, err := pgsession.Open(ctx, pgsession.Options{
		URL: cfg.DatabaseURL, MaxConns: 2, QueryTimeout: cfg.DBQueryTimeout,
	})
	if err != nil {
		return usageError{err: fmt.Errorf("DATABASE_URL: %w", err)}
	}
	defer store.Close()
	rdb, err := newRedis(cfg)
	if err != nil {
		return err
	}
	opts := check.Options{
		Prefix: cfg.SessionKeyPrefix, BreakerFailures: uint32(cfg.BreakerFailures),
		Postgres: store, Channel: cfg.DBNotifyChannel,
		RedisSkip: "no Redis configured (REDIS_URL, REDIS_SENTINEL_ADDRS, REDIS_CLUSTER_ADDRS)",
		RedisName: redisName(cfg), PoolSize: cfg.RedisPoolSize,
	}
	if rdb != nil {
		defer rdb.Close()
		opts.Redis = rdb
	}
	r := check.Run(ctx, opts, stdout)
	if !r.OK() {
		return fmt.Errorf("check failed: %s", strings.Join(r.Failures, "; "))
	}
	return nil
}
