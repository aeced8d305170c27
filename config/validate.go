package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// none is the value that disables a feature whose variable has a default:
// an empty value would mean the default.
const none = "none"

// normalize puts lists and words into the form the other packages compare
// against, reporting the entries it cannot use.
func (c *Config) normalize(p *problems) {
	c.PublicPaths = cleanPaths(p, "PUBLIC_PATHS", c.PublicPaths)
	if len(c.LogoutPaths) == 1 && strings.EqualFold(strings.TrimSpace(c.LogoutPaths[0]), none) {
		c.LogoutPaths = nil
	} else {
		c.LogoutPaths = cleanPaths(p, "LOGOUT_PATHS", c.LogoutPaths)
		if len(c.LogoutPaths) == 0 && !p.rejected["LOGOUT_PATHS"] {
			p.add("LOGOUT_PATHS", "lists no path; use none to disable")
		}
	}
	if strings.EqualFold(c.DBNotifyChannel, none) {
		c.DBNotifyChannel = ""
	}
	if c.DBNotifyURL == "" {
		c.DBNotifyURL = c.DatabaseURL
	}
	c.RedisSentinelAddrs = trimEntries(c.RedisSentinelAddrs)
	c.RedisClusterAddrs = trimEntries(c.RedisClusterAddrs)
	c.ValidatePath = cleanAbsolute(c.ValidatePath)
	c.HealthPath = cleanAbsolute(c.HealthPath)
	c.LogLevel = strings.ToLower(c.LogLevel)
	c.LogFormat = strings.ToLower(c.LogFormat)
	c.normalizeSeams()
}

// validate checks every value that parsed against its allowed range.
func (c *Config) validate(p *problems) {
	p.check("UPSTREAM_URL", checkUpstream(c.UpstreamURL))
	p.check("DATABASE_URL", checkDatabaseURL(c.DatabaseURL))
	p.check("REDIS_URL", checkRedisURL(c.RedisURL))
	p.check("LISTEN_ADDR", checkHostPort(c.ListenAddr))
	p.check("ADMIN_ADDR", checkHostPort(c.AdminAddr))
	p.check("ADMIN_TOKEN", checkAdminToken(c.AdminToken))
	p.check("SESSION_CACHE_TTL", positive(c.SessionCacheTTL))
	p.check("SESSION_KEY_PREFIX", checkPrefix(c.SessionKeyPrefix))
	p.check("NEGATIVE_CACHE_TTL", nonNegative(c.NegativeCacheTTL))
	p.check("LOCAL_CACHE_TTL", nonNegative(c.LocalCacheTTL))
	p.check("LOCAL_CACHE_SIZE", positive(c.LocalCacheSize))
	p.check("CACHE_WARM_LIMIT", positive(c.CacheWarmLimit))
	p.check("SESSION_COOKIE", checkCookieName(c.SessionCookie))
	p.check("VALIDATE_PATH", checkAbsolute(c.ValidatePath))
	p.check("HEALTH_PATH", checkAbsolute(c.HealthPath))
	c.validateRedis(p)
	c.validateRedisTopology(p)
	p.check("BREAKER_FAILURES", positive(c.BreakerFailures))
	p.check("BREAKER_OPEN_FOR", positive(c.BreakerOpenFor))
	p.check("DB_MAX_CONNS", positive(c.DBMaxConns))
	p.check("DB_QUERY_TIMEOUT", positive(c.DBQueryTimeout))
	if c.DBNotifyURL != c.DatabaseURL { // else it is DATABASE_URL, reported as such
		p.check("DB_NOTIFY_URL", checkDatabaseURL(c.DBNotifyURL))
	}
	p.check("DB_PRIMARY_WINDOW", nonNegative(c.DBPrimaryWindow))
	p.check("DB_NOTIFY_CHANNEL", checkChannel(c.DBNotifyChannel))
	p.check("LOG_LEVEL", oneOf(c.LogLevel, "debug", "info", "warn", "error", "dpanic", "panic", "fatal"))
	p.check("LOG_FORMAT", oneOf(c.LogFormat, "json", "console"))
	p.check("SHUTDOWN_TIMEOUT", positive(c.ShutdownTimeout))
	c.validateSeams(p)
}

// validateRedis checks the go-redis pool settings.
func (c *Config) validateRedis(p *problems) {
	p.check("REDIS_POOL_SIZE", positive(c.RedisPoolSize))
	p.check("REDIS_MIN_IDLE", nonNegative(c.RedisMinIdle))
	if !p.rejected["REDIS_POOL_SIZE"] && c.RedisMinIdle > c.RedisPoolSize {
		p.check("REDIS_MIN_IDLE", fmt.Errorf("%d exceeds REDIS_POOL_SIZE (%d)", c.RedisMinIdle, c.RedisPoolSize))
	}
	p.check("REDIS_POOL_TIMEOUT", positive(c.RedisPoolTimeout))
	p.check("REDIS_IDLE_TIMEOUT", positive(c.RedisIdleTimeout))
	p.check("REDIS_MAX_RETRIES", nonNegative(c.RedisMaxRetries))
	p.check("REDIS_OP_TIMEOUT", positive(c.RedisOpTimeout))
}

func positive[T int | time.Duration](v T) error {
	if v <= 0 {
		return fmt.Errorf("must be greater than 0, got %v", v)
	}
	return nil
}

func nonNegative[T int | time.Duration](v T) error {
	if v < 0 {
		return fmt.Errorf("must not be negative, got %v", v)
	}
	return nil
}

func oneOf(v string, allowed ...string) error {
	if !slices.Contains(allowed, v) {
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	return nil
}

// upstreamSchemes are the schemes UPSTREAM_URL may have.
var upstreamSchemes = []string{"http", "https"}

// checkUpstream names what is wrong in the app's URL (a missing scheme, a port out of
// range); it quotes no part of a URL that may hold a password.
func checkUpstream(u *url.URL) error {
	if u == nil {
		return nil
	}
	// "app:3000" parses as scheme "app": urlShape sees the missing "http://".
	if err := urlShape(u.String(), upstreamSchemes...); err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return errors.New("has no host: write http://host:port")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not have a query or fragment (it would be merged into every request)")
	}
	return nil
}

// checkDatabaseURL lets pgx decide and, when it refuses, says why in our words: pgx's
// error can quote the DSN.
func checkDatabaseURL(dsn string) error {
	if dsn == "" {
		return nil
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return describeDSN(dsn)
	}
	return nil
}

// checkRedisURL lets go-redis decide and, when it refuses, says why in our words:
// go-redis's error can quote the URL.
func checkRedisURL(raw string) error {
	if raw == "" {
		return nil
	}
	if err := urlShape(raw, "redis", "rediss"); err != nil {
		return err
	}
	if _, err := redis.ParseURL(raw); err != nil {
		return describeRedisURL(raw)
	}
	return nil
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// checkAdminToken never quotes the token.
func checkAdminToken(token string) error {
	switch {
	case token == "":
		return nil
	case len(token) < 16:
		return errors.New("must be at least 16 bytes long")
	case checkVisible(token) != nil:
		// HTTP trims header values, so such a token could never match.
		return errors.New("must not contain whitespace or control characters")
	}
	return nil
}

func checkVisible(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return errors.New("must not contain whitespace or control characters")
	}
	return nil
}

// checkCookieName accepts an RFC 6265 cookie-name: an RFC 2616 token.
func checkCookieName(name string) error {
	for i := range len(name) {
		b := name[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, b) >= 0 {
			return fmt.Errorf("%q is not a valid cookie name", name)
		}
	}
	return nil
}

func checkAbsolute(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with /", p)
	}
	return nil
}

// checkChannel accepts what LISTEN takes unquoted and lower-case:
// [a-z_][a-z0-9_]*, at most 63 bytes (Postgres NAMEDATALEN - 1).
func checkChannel(ch string) error {
	ok := len(ch) <= 63
	for i := range len(ch) {
		b := ch[i]
		ok = ok && (b == '_' || 'a' <= b && b <= 'z' || i > 0 && '0' <= b && b <= '9')
	}
	if !ok {
		return fmt.Errorf("%q is not a plain identifier ([a-z_][a-z0-9_]*, at most 63 bytes) or none", ch)
	}
	return nil
}

// cleanAbsolute resolves dot-segments and duplicate slashes the way request
// paths are resolved before matching; anything else is left for the check.
func cleanAbsolute(p string) string {
	if !strings.HasPrefix(p, "/") {
		return p
	}
	return path.Clean(p)
}

// trimEntries trims the entries of a comma-separated list and drops empty ones.
func trimEntries(entries []string) []string {
	var out []string
	for _, e := range entries {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// cleanPaths trims the entries of a comma-separated path list, drops empty
// ones and cleans the rest, reporting each entry that is not absolute.
func cleanPaths(p *problems, name string, entries []string) []string {
	var out []string
	for i, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if err := checkAbsolute(entry); err != nil {
			p.add(name, "entry %d: %v", i+1, err)
			continue
		}
		out = append(out, path.Clean(entry))
	}
	return out
}

// parsePrefixes is the caarlos0/env parser of TRUSTED_PROXIES. It reports
// every bad entry, not only the first, and reads a bare address as /32 or
// /128.
func parsePrefixes(v string) (any, error) {
	var (
		out []netip.Prefix
		bad entryErrors
	)
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		prefix, err := parsePrefix(entry)
		if err != nil {
			bad = append(bad, fmt.Sprintf("entry %d: %q is not a CIDR or IP address", i+1, entry))
			continue
		}
		out = append(out, prefix)
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		prefix, err := netip.ParsePrefix(s)
		return prefix.Masked(), err
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, errors.New("zoned address")
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}
