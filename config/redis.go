package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Redis modes, as RedisMode names them.
const (
	RedisDisabled = ""
	RedisSingle   = "single"
	RedisSentinel = "sentinel"
	RedisCluster  = "cluster"
)

// RedisMode is the Redis topology the variables select: RedisSingle (REDIS_URL),
// RedisSentinel (REDIS_SENTINEL_ADDRS), RedisCluster (REDIS_CLUSTER_ADDRS), or
// RedisDisabled when none is set.
func (c Config) RedisMode() string {
	switch {
	case c.RedisURL != "":
		return RedisSingle
	case len(c.RedisSentinelAddrs) > 0:
		return RedisSentinel
	case len(c.RedisClusterAddrs) > 0:
		return RedisCluster
	}
	return RedisDisabled
}

// validateRedisTopology checks that at most one mode is chosen and that each variable is
// used by the mode it belongs to, so a forgotten or misplaced variable is reported rather
// than silently ignored.
func (c *Config) validateRedisTopology(p *problems) {
	var set []string
	for _, v := range []struct {
		name string
		on   bool
	}{{"REDIS_URL", c.RedisURL != ""}, {"REDIS_SENTINEL_ADDRS", len(c.RedisSentinelAddrs) > 0},
		{"REDIS_CLUSTER_ADDRS", len(c.RedisClusterAddrs) > 0}} {
		if v.on {
			set = append(set, v.name)
		}
	}
	if len(set) > 1 {
		p.add(set[1], "set together with %s: choose one of REDIS_URL, REDIS_SENTINEL_ADDRS, REDIS_CLUSTER_ADDRS", strings.Join(set[:1], ", "))
		return
	}
	mode := c.RedisMode()
	c.checkAddrs(p, "REDIS_SENTINEL_ADDRS", c.RedisSentinelAddrs)
	c.checkAddrs(p, "REDIS_CLUSTER_ADDRS", c.RedisClusterAddrs)
	switch {
	case mode == RedisSentinel && c.RedisSentinelMaster == "":
		p.add("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINEL_ADDRS: the name the Sentinels monitor the master by")
	case mode != RedisSentinel && c.RedisSentinelMaster != "":
		p.add("REDIS_SENTINEL_MASTER", "set without REDIS_SENTINEL_ADDRS")
	}
	if mode != RedisSentinel && c.RedisSentinelPassword != "" {
		p.add("REDIS_SENTINEL_PASSWORD", "set without REDIS_SENTINEL_ADDRS")
	}
	if mode == RedisSingle || mode == RedisDisabled {
		for name, on := range map[string]bool{"REDIS_USERNAME": c.RedisUsername != "", "REDIS_PASSWORD": c.RedisPassword != "",
			"REDIS_TLS": c.RedisTLS} {
			if on && mode == RedisSingle {
				p.add(name, "applies to Sentinel and Cluster mode; with REDIS_URL put it in the URL (user:password@, rediss://)")
			} else if on {
				p.add(name, "set without REDIS_SENTINEL_ADDRS or REDIS_CLUSTER_ADDRS")
			}
		}
	}
	c.checkTLSFiles(p)
}

func (c *Config) checkAddrs(p *problems, name string, addrs []string) {
	for i, a := range addrs {
		if err := checkHostPort(a); err != nil {
			p.add(name, "entry %d: %v", i+1, err)
		}
	}
}

// checkTLSFiles checks that the TLS files are readable and used: TLS must be on (rediss://
// or REDIS_TLS), and a client certificate comes with its key.
func (c *Config) checkTLSFiles(p *problems) {
	tls := c.RedisTLS || strings.HasPrefix(c.RedisURL, "rediss://")
	for _, f := range []struct{ name, path string }{
		{"REDIS_CA_FILE", c.RedisCAFile}, {"REDIS_CERT_FILE", c.RedisCertFile}, {"REDIS_KEY_FILE", c.RedisKeyFile},
	} {
		switch {
		case f.path == "":
		case !tls:
			p.add(f.name, "set but TLS to Redis is off: use a rediss:// REDIS_URL or REDIS_TLS=true")
		default:
			p.check(f.name, readable(f.path))
		}
	}
	if (c.RedisCertFile == "") != (c.RedisKeyFile == "") {
		name := "REDIS_KEY_FILE"
		if c.RedisCertFile == "" {
			name = "REDIS_CERT_FILE"
		}
		p.check(name, errors.New("REDIS_CERT_FILE and REDIS_KEY_FILE go together"))
	}
}

func readable(path string) error {
	f, err := os.Open(path)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot read %q: %v", path, pe.Err)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// checkPrefix keeps the key prefix out of the way of the hash tags the sidecar adds to
// every key ({tokenHash}, {userId}), which route a token's keys to one cluster slot.
func checkPrefix(prefix string) error {
	if strings.ContainsAny(prefix, "{}") {
		return errors.New("must not contain { or }: the sidecar adds its own hash tags")
	}
	return checkVisible(prefix)
}
