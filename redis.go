package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/config"
)

// newRedis builds the one go-redis client of the configured mode — a single node, Sentinel
// or Cluster, behind redis.UniversalClient — or nil when Redis is disabled. Every call
// carries its own deadline (ContextTimeoutEnabled), so REDIS_OP_TIMEOUT bounds retries too.
func newRedis(cfg config.Config) (redis.UniversalClient, error) {
	mode := cfg.RedisMode()
	if mode == config.RedisDisabled {
		return nil, nil
	}
	tlsConfig, err := redisTLS(cfg)
	if err != nil {
		return nil, usageError{err: err}
	}
	o := &redis.UniversalOptions{
		PoolSize: cfg.RedisPoolSize, MinIdleConns: cfg.RedisMinIdle, PoolTimeout: cfg.RedisPoolTimeout,
		ConnMaxIdleTime: cfg.RedisIdleTimeout, MaxRetries: cfg.RedisMaxRetries,
		DialTimeout: max(cfg.RedisOpTimeout, time.Second), ContextTimeoutEnabled: true,
		Username: cfg.RedisUsername, Password: cfg.RedisPassword, TLSConfig: tlsConfig,
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = -1 // go-redis reads 0 as "default (3)"; -1 is "none"
	}
	switch mode {
	case config.RedisSingle:
		// The URL carries the address, credentials, database and any go-redis options.
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, usageError{err: errors.New("REDIS_URL: not a valid redis:// or rediss:// URL")}
		}
		o.Addrs, o.Username, o.Password, o.DB = []string{opts.Addr}, opts.Username, opts.Password, opts.DB
		if opts.TLSConfig != nil {
			o.TLSConfig = withServerName(tlsConfig, opts.TLSConfig.ServerName)
		}
	case config.RedisSentinel:
		o.Addrs, o.MasterName, o.SentinelPassword = cfg.RedisSentinelAddrs, cfg.RedisSentinelMaster, cfg.RedisSentinelPassword
	case config.RedisCluster:
		o.Addrs, o.IsClusterMode = cfg.RedisClusterAddrs, true
	}
	return redis.NewUniversalClient(o), nil
}

// redisTLS is the TLS configuration of REDIS_TLS or a rediss:// URL: the CA that verifies
// the servers (the system roots without REDIS_CA_FILE) and the client certificate, if any.
// It is nil when TLS is off.
func redisTLS(cfg config.Config) (*tls.Config, error) {
	if !cfg.RedisTLS && !strings.HasPrefix(cfg.RedisURL, "rediss://") {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.RedisCAFile != "" {
		pem, err := os.ReadFile(cfg.RedisCAFile)
		if err != nil {
			return nil, fmt.Errorf("REDIS_CA_FILE: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("REDIS_CA_FILE: no PEM certificate in the file")
		}
	}
	if cfg.RedisCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.RedisCertFile, cfg.RedisKeyFile)
		if err != nil {
			return nil, fmt.Errorf("REDIS_CERT_FILE, REDIS_KEY_FILE: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// withServerName is c (or a default) verifying the server as name.
func withServerName(c *tls.Config, name string) *tls.Config {
	if c == nil {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c = c.Clone()
	c.ServerName = name
	return c
}
