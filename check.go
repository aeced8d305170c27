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
		Postgres: store, Channel: cfg.DBNotifyChannel, RedisSkip: "REDIS_URL not set",
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
