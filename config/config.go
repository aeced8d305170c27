// Package config turns environment variables into a typed, validated Config.
//
// Only main imports it; main copies the values into each package's Options.
// Every variable is declared once, as a field of Config whose tags carry its
// environment name, its default and its help text, so Load, Require and Usage
// cannot disagree about what exists.
package config

import (
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config holds every setting of authsidecar. Each field is read from the
// environment variable named by its env tag; an optional setting left empty
// means the feature is disabled.
type Config struct {
	// UpstreamURL is the app's base URL; nil when UPSTREAM_URL is not set.
	UpstreamURL *url.URL `env:"UPSTREAM_URL" help:"base URL of the app, e.g. http://app:3000; required by serve"`
	// DatabaseURL is the Postgres DSN, in any syntax pgx accepts.
	DatabaseURL string `env:"DATABASE_URL" help:"Postgres DSN (pgx syntax; sslmode honoured); required by serve and check"`
	// RedisURL is the Redis URL of a single node; empty disables the Redis cache unless a
	// Sentinel or Cluster variable is set.
	RedisURL string `env:"REDIS_URL" help:"single node: redis:// or rediss:// URL; with no Redis variable set, the Redis cache is disabled (Postgres only)"`
	// RedisSentinelAddrs are the Sentinels' host:port: Sentinel mode.
	RedisSentinelAddrs []string `env:"REDIS_SENTINEL_ADDRS" help:"comma-separated host:port of Sentinels: Sentinel mode (needs REDIS_SENTINEL_MASTER)"`
	// RedisSentinelMaster is the name of the master the Sentinels monitor.
	RedisSentinelMaster string `env:"REDIS_SENTINEL_MASTER" help:"the monitored master's name, in Sentinel mode"`
	// RedisSentinelPassword authenticates to the Sentinels themselves.
	RedisSentinelPassword string `env:"REDIS_SENTINEL_PASSWORD" help:"password of the Sentinels themselves"`
	// RedisClusterAddrs are seed nodes' host:port: Redis Cluster mode.
	RedisClusterAddrs []string `env:"REDIS_CLUSTER_ADDRS" help:"comma-separated seed nodes host:port: Redis Cluster mode"`
	// RedisUsername and RedisPassword authenticate to the data nodes in Sentinel and
	// Cluster mode; a single node takes them from REDIS_URL.
	RedisUsername string `env:"REDIS_USERNAME" help:"username of the data nodes in Sentinel and Cluster mode (a single node: in REDIS_URL)"`
	RedisPassword string `env:"REDIS_PASSWORD" help:"password of the data nodes in Sentinel and Cluster mode (a single node: in REDIS_URL)"`
	// RedisTLS enables TLS to every node in Sentinel and Cluster mode.
	RedisTLS bool `env:"REDIS_TLS" envDefault:"false" help:"TLS to every node in Sentinel and Cluster mode (a single node uses rediss://)"`
	// RedisCAFile, RedisCertFile and RedisKeyFile are PEM files for TLS to Redis: the CA
	// that signed the servers' certificates, and a client certificate and its key.
	RedisCAFile   string `env:"REDIS_CA_FILE" help:"PEM CA bundle that verifies the Redis servers (default: the system roots)"`
	RedisCertFile string `env:"REDIS_CERT_FILE" help:"PEM client certificate for Redis TLS (with REDIS_KEY_FILE)"`
	RedisKeyFile  string `env:"REDIS_KEY_FILE" help:"PEM private key of REDIS_CERT_FILE"`
	// ListenAddr is the public listener's host:port.
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8080" help:"public listener (host:port)"`
	// AdminAddr is the internal listener's host:port.
	AdminAddr string `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9091" help:"internal listener: /metrics, /healthz, /readyz, /admin/*"`
	// AdminToken is the bearer token of /admin/*; empty disables /admin/*.
	AdminToken string `env:"ADMIN_TOKEN" help:"bearer token for /admin/*, at least 16 bytes; empty disables /admin/* (404)"`
	// SessionCacheTTL is the Redis TTL of a cached session.
	SessionCacheTTL time.Duration `env:"SESSION_CACHE_TTL" envDefault:"5m" help:"Redis TTL of a cached session (never beyond the session's expires_at)"`
	// SessionKeyPrefix starts every Redis key and channel the sidecar uses.
	SessionKeyPrefix string `env:"SESSION_KEY_PREFIX" envDefault:"session:" help:"namespace of every Redis key and channel the sidecar uses (no whitespace, no { or }: it adds its own hash tags)"`
	// NegativeCacheTTL is how long an unknown token stays cached as invalid; 0 disables.
	NegativeCacheTTL time.Duration `env:"NEGATIVE_CACHE_TTL" envDefault:"5s" help:"how long an unknown token is remembered as invalid; 0 disables"`
	// LocalCacheTTL is the in-process cache TTL; 0 disables that cache.
	LocalCacheTTL time.Duration `env:"LOCAL_CACHE_TTL" envDefault:"10s" help:"in-process cache TTL in front of Redis (evicted on revocation events); 0 disables"`
	// LocalCacheSize is the most sessions the in-process cache holds.
	LocalCacheSize int `env:"LOCAL_CACHE_SIZE" envDefault:"100000" help:"most sessions held in process"`
	// CacheWarmOnStart loads recently active sessions into Redis at start.
	CacheWarmOnStart bool `env:"CACHE_WARM_ON_START" envDefault:"false" help:"load recently active sessions into Redis at start"`
	// CacheWarmLimit is the most sessions CacheWarmOnStart loads.
	CacheWarmLimit int `env:"CACHE_WARM_LIMIT" envDefault:"10000" help:"most sessions loaded by CACHE_WARM_ON_START"`
	// PublicPaths are cleaned absolute paths forwarded without validation,
	// each matching itself and its subtree; "/" makes everything public.
	PublicPaths []string `env:"PUBLIC_PATHS" help:"comma-separated paths forwarded without validation; each matches itself and its subtree (/login matches /login and /login/x, not /login2)"`
	// TrustedProxies are the networks whose X-Forwarded-For chain is kept;
	// a bare address is read as a single-host prefix.
	TrustedProxies []netip.Prefix `env:"TRUSTED_PROXIES" help:"comma-separated CIDRs or IPs of load balancers in front; only from these is an incoming X-Forwarded-For chain kept, from anyone else it is replaced"`
	// InvalidTokenRate is how many invalid tokens per second one client address may
	// present, in bursts of twice that; 0 disables the limit.
	InvalidTokenRate int `env:"INVALID_TOKEN_RATE" envDefault:"20" help:"invalid tokens per second per client address (the peer, or the first untrusted X-Forwarded-For hop), bursts of twice that; past it, 429 and no lookup for any token but a cached valid session; 0 disables"`
	// BodyIdleTimeout cuts a forwarded request body that stalls this long; 0 disables.
	BodyIdleTimeout time.Duration `env:"BODY_IDLE_TIMEOUT" envDefault:"30s" help:"a request body that makes no progress this long is cut: the app sees it aborted, the client gets 408; 0 disables"`
	// SessionCookie names the cookie read when there is no Authorization
	// header; empty means cookies are not read.
	SessionCookie string `env:"SESSION_COOKIE" help:"cookie to read the token from when there is no Authorization header"`
	// LogoutPaths are cleaned paths after whose 2xx answer the session is
	// evicted; nil when LOGOUT_PATHS is none.
	LogoutPaths []string `env:"LOGOUT_PATHS" envDefault:"/api/auth/logout" help:"comma-separated; after the app answers 2xx here, and before that answer reaches the client, the presented session is evicted from every cache; none disables"`
	// ValidatePath is answered by the sidecar with the session as JSON.
	ValidatePath string `env:"VALIDATE_PATH" envDefault:"/api/auth/validate" help:"answered by the sidecar itself: 200 with the session as JSON, 401 or 503"`
	// HealthPath is answered by the sidecar with the health document.
	HealthPath string `env:"HEALTH_PATH" envDefault:"/api/health/redis" help:"answered by the sidecar itself with the Redis health document"`
	// JWKSPath is answered by the sidecar with the JWKS when IdentityJWTKey is set.
	JWKSPath string `env:"JWKS_PATH" envDefault:"/.well-known/authsidecar/jwks.json" help:"with IDENTITY_JWT_KEY, answered by the sidecar itself with the public keys (JWKS); also /.well-known/jwks.json on ADMIN_ADDR"`
	// IdentityJWTKey is the path of the PEM private key that signs X-Auth-Assertion;
	// empty sends no assertion.
	IdentityJWTKey string `env:"IDENTITY_JWT_KEY" help:"path of a PEM Ed25519 or P-256 private key (PKCS#8 or EC PRIVATE KEY); every authenticated request then carries X-Auth-Assertion, a JWT signed with it"`
	// IdentityJWTIssuer is the assertion's iss claim.
	IdentityJWTIssuer string `env:"IDENTITY_JWT_ISSUER" envDefault:"authsidecar" help:"iss claim of X-Auth-Assertion"`
	// IdentityJWTAudience is the assertion's aud claim; normalize sets it to the origin
	// of UpstreamURL when it is empty.
	IdentityJWTAudience string `env:"IDENTITY_JWT_AUDIENCE" help:"aud claim of X-Auth-Assertion; empty means the origin of UPSTREAM_URL (http://app:3000)"`
	// IdentityJWTPreviousKeys are PEM key paths published in the JWKS but not used to sign.
	IdentityJWTPreviousKeys []string `env:"IDENTITY_JWT_PREVIOUS_KEYS" help:"comma-separated paths of retired PEM keys (public or private), published in the JWKS only, for rotation"`
	// RedisPoolSize is the go-redis PoolSize.
	RedisPoolSize int `env:"REDIS_POOL_SIZE" envDefault:"10" help:"go-redis pool size"`
	// RedisMinIdle is the go-redis MinIdleConns, at most RedisPoolSize.
	RedisMinIdle int `env:"REDIS_MIN_IDLE" envDefault:"2" help:"go-redis minimum idle connections (at most REDIS_POOL_SIZE)"`
	// RedisPoolTimeout is how long a command waits for a free connection.
	RedisPoolTimeout time.Duration `env:"REDIS_POOL_TIMEOUT" envDefault:"1s" help:"wait for a free Redis connection"`
	// RedisIdleTimeout closes connections idle this long (go-redis ConnMaxIdleTime).
	RedisIdleTimeout time.Duration `env:"REDIS_IDLE_TIMEOUT" envDefault:"30s" help:"close Redis connections idle this long"`
	// RedisMaxRetries is the number of retries; 0 means none. go-redis reads
	// MaxRetries 0 as "3", so pass -1 to it when this is 0.
	RedisMaxRetries int `env:"REDIS_MAX_RETRIES" envDefault:"3" help:"go-redis retries; 0 means no retries"`
	// RedisOpTimeout is the deadline of one cache operation.
	RedisOpTimeout time.Duration `env:"REDIS_OP_TIMEOUT" envDefault:"100ms" help:"deadline of one cache operation; past it the request falls back to Postgres"`
	// BreakerFailures is the run of consecutive Redis failures that opens the breaker.
	BreakerFailures int `env:"BREAKER_FAILURES" envDefault:"5" help:"consecutive Redis failures that open the breaker"`
	// BreakerOpenFor is how long the breaker stays open before a probe.
	BreakerOpenFor time.Duration `env:"BREAKER_OPEN_FOR" envDefault:"10s" help:"time the open breaker waits before a probe"`
	// DBMaxConns is the pgxpool MaxConns; it always fits an int32.
	DBMaxConns int `env:"DB_MAX_CONNS" envDefault:"10" help:"pgxpool size"`
	// DBQueryTimeout is the deadline of one Postgres lookup.
	DBQueryTimeout time.Duration `env:"DB_QUERY_TIMEOUT" envDefault:"2s" help:"deadline of one Postgres lookup"`
	// DBNotifyURL is the primary: the change feed (LISTEN, resync) and every lookup that
	// decides a revocation use it. It is DatabaseURL when DB_NOTIFY_URL is not set.
	DBNotifyURL string `env:"DB_NOTIFY_URL" help:"the primary, for LISTEN and every query that decides a revocation; default DATABASE_URL, which may then be a read replica or a transaction-mode pooler"`
	// DBPrimaryWindow is how long after an eviction event the token or user concerned is
	// looked up on the primary, so a lagging replica cannot put a revoked session back.
	DBPrimaryWindow time.Duration `env:"DB_PRIMARY_WINDOW" envDefault:"10s" help:"after an eviction event for a token or a user, lookups of that token or user go to the primary for this long; 0 disables"`
	// DBNotifyChannel is the Postgres channel to LISTEN on; empty when
	// DB_NOTIFY_CHANNEL is none. It is a plain identifier, safe to quote.
	DBNotifyChannel string `env:"DB_NOTIFY_CHANNEL" envDefault:"authsidecar_session_changed" help:"Postgres channel to LISTEN on for session changes; none disables"`
	// LogLevel is a zap level name (lower-cased).
	LogLevel string `env:"LOG_LEVEL" envDefault:"info" help:"zap level: debug, info, warn or error (also dpanic, panic, fatal)"`
	// LogFormat is json or console (lower-cased).
	LogFormat string `env:"LOG_FORMAT" envDefault:"json" help:"log encoding: json or console"`
	// ShutdownTimeout is the drain time after SIGTERM or SIGINT.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s" help:"drain time after SIGTERM/SIGINT"`
}

// Load reads Config from environ, never from the process environment, and
// validates it. A variable set to the empty string takes its default, which is
// why "none" is the word that disables LOGOUT_PATHS and DB_NOTIFY_CHANNEL.
//
// The error joins one error per problem, each a single line
// "NAME: what is wrong" naming the environment variable; it never contains a
// URL, DSN or token. required names the variables the caller's subcommand needs;
// each one left unset is a problem too, reported with the others. On error Load
// returns the zero Config.
func Load(environ map[string]string, required ...string) (Config, error) {
	if environ == nil {
		// A nil Environment makes caarlos0/env fall back to os.Environ.
		environ = map[string]string{}
	}
	var c Config
	p := newProblems(environ)
	p.addParseError(env.ParseWithOptions(&c, env.Options{
		Environment: environ,
		FuncMap: map[reflect.Type]env.ParserFunc{
			reflect.TypeFor[[]netip.Prefix](): parsePrefixes,
		},
	}))
	c.normalize(p)
	c.validate(p)
	for _, name := range required {
		if environ[name] == "" {
			p.add(name, "required but not set")
		}
	}
	if err := p.err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// variable is one environment variable, as declared by a field of Config.
type variable struct {
	index int    // field index in Config
	field string // Go field name, never shown to users
	name  string // environment variable name
	def   string // envDefault, "" when there is none
	help  string // meaning, shown by Usage
}

// variables lists the fields of Config that have an env tag, in field order.
func variables() []variable {
	t := reflect.TypeFor[Config]()
	vars := make([]variable, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" || name == "-" {
			continue
		}
		vars = append(vars, variable{
			index: i,
			field: f.Name,
			name:  name,
			def:   f.Tag.Get("envDefault"),
			help:  f.Tag.Get("help"),
		})
	}
	return vars
}

// Names lists every configuration variable's environment name, in declaration order.
func Names() []string {
	vars := variables()
	names := make([]string, len(vars))
	for i, v := range vars {
		names[i] = v.name
	}
	return names
}
