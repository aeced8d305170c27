package config_test

import (
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/config"
)

// defaults is the Config that an empty environment yields.
func defaults() config.Config {
	return config.Config{
		ListenAddr:       ":8080",
		AdminAddr:        "127.0.0.1:9091",
		SessionCacheTTL:  5 * time.Minute,
		SessionKeyPrefix: "session:",
		NegativeCacheTTL: 5 * time.Second,
		LocalCacheTTL:    10 * time.Second,
		LocalCacheSize:   100000,
		CacheWarmLimit:   10000,
		LogoutPaths:      []string{"/api/auth/logout"},
		ValidatePath:     "/api/auth/validate",
		HealthPath:       "/api/health/redis",
		RedisPoolSize:    10,
		RedisMinIdle:     2,
		RedisPoolTimeout: time.Second,
		RedisIdleTimeout: 30 * time.Second,
		RedisMaxRetries:  3,
		RedisOpTimeout:   100 * time.Millisecond,
		BreakerFailures:  5,
		BreakerOpenFor:   10 * time.Second,
		DBMaxConns:       10,
		DBQueryTimeout:   2 * time.Second,
		DBPrimaryWindow:  10 * time.Second,
		DBNotifyChannel:  "authsidecar_session_changed",
		LogLevel:         "info",
		LogFormat:        "json",
		ShutdownTimeout:  15 * time.Second,

		// Trust at the seams (issue 12).
		InvalidTokenRate:  20,
		BodyIdleTimeout:   30 * time.Second,
		JWKSPath:          "/.well-known/authsidecar/jwks.json",
		IdentityJWTIssuer: "authsidecar",
	}
}

// envVar is one field of Config as its tags declare it.
type envVar struct {
	field, name, def, help string
}

// envVars walks Config the way Usage and Load do, so a field added without
// tags or help fails the tests that use it.
func envVars(tb testing.TB) []envVar {
	tb.Helper()
	t := reflect.TypeFor[config.Config]()
	var vars []envVar
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			tb.Errorf("field %s has no env tag", f.Name)
		}
		vars = append(vars, envVar{f.Name, name, f.Tag.Get("envDefault"), f.Tag.Get("help")})
	}
	return vars
}

func mustLoad(tb testing.TB, environ map[string]string) config.Config {
	tb.Helper()
	c, err := config.Load(environ)
	if err != nil {
		tb.Fatalf("Load: unexpected error:\n%v", err)
	}
	return c
}

func mustParseURL(tb testing.TB, raw string) *url.URL {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// loadErrorLines loads environ, which must fail, and returns the error's
// lines, checking that none of them names a Go field instead of a variable.
func loadErrorLines(tb testing.TB, environ map[string]string) []string {
	tb.Helper()
	c, err := config.Load(environ)
	if err == nil {
		tb.Fatal("Load succeeded, want an error")
	}
	if !reflect.DeepEqual(c, config.Config{}) {
		tb.Errorf("Load returned a non-zero Config with its error: %+v", c)
	}
	lines := strings.Split(err.Error(), "\n")
	for _, v := range envVars(tb) {
		for _, line := range lines {
			if strings.Contains(line, v.field) {
				tb.Errorf("error line %q names Go field %s", line, v.field)
			}
		}
	}
	return lines
}

func TestLoadEmptyEnvironmentGivesDefaults(t *testing.T) {
	if got := mustLoad(t, map[string]string{}); !reflect.DeepEqual(got, defaults()) {
		t.Errorf("Load(empty) =\n%+v\nwant\n%+v", got, defaults())
	}
}

func TestLoadSetButEmptyMeansDefault(t *testing.T) {
	environ := make(map[string]string)
	for _, v := range envVars(t) {
		environ[v.name] = ""
	}
	if got := mustLoad(t, environ); !reflect.DeepEqual(got, defaults()) {
		t.Errorf("Load(all empty) =\n%+v\nwant\n%+v", got, defaults())
	}
}

func TestLoadIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("LOG_LEVEL", "not-a-level")
	t.Setenv("UPSTREAM_URL", "http://from-process-env")
	if got := mustLoad(t, nil); !reflect.DeepEqual(got, defaults()) {
		t.Errorf("Load(nil) =\n%+v\nwant the defaults", got)
	}
}

// nonDefaultEnviron sets every variable to a valid value other than its default.
func nonDefaultEnviron() map[string]string {
	return map[string]string{
		"UPSTREAM_URL":        "https://app.internal:3000/base",
		"DATABASE_URL":        "postgres://sidecar:pw@db:5432/app?sslmode=require",
		"REDIS_URL":           "rediss://:pw@cache:6380/2",
		"LISTEN_ADDR":         "0.0.0.0:8443",
		"ADMIN_ADDR":          "[::1]:9999",
		"ADMIN_TOKEN":         "0123456789abcdef",
		"SESSION_CACHE_TTL":   "1h",
		"SESSION_KEY_PREFIX":  "auth:s:",
		"NEGATIVE_CACHE_TTL":  "0",
		"LOCAL_CACHE_TTL":     "1m30s",
		"LOCAL_CACHE_SIZE":    "42",
		"CACHE_WARM_ON_START": "true",
		"CACHE_WARM_LIMIT":    "7",
		"PUBLIC_PATHS":        " /login/ ,,/_next/static/../static, /",
		"TRUSTED_PROXIES":     "10.1.2.3/8, 192.168.1.7 ,2001:db8::/32,::1",
		"SESSION_COOKIE":      "__Secure-next-auth.session-token",
		"LOGOUT_PATHS":        "/logout,/api/auth/signout/",
		"VALIDATE_PATH":       "/auth/check",
		"HEALTH_PATH":         "/health",
		"REDIS_POOL_SIZE":     "20",
		"REDIS_MIN_IDLE":      "20",
		"REDIS_POOL_TIMEOUT":  "250ms",
		"REDIS_IDLE_TIMEOUT":  "5m",
		"REDIS_MAX_RETRIES":   "0",
		"REDIS_OP_TIMEOUT":    "50ms",
		"BREAKER_FAILURES":    "3",
		"BREAKER_OPEN_FOR":    "1m",
		"DB_MAX_CONNS":        "25",
		"DB_QUERY_TIMEOUT":    "500ms",
		"DB_NOTIFY_CHANNEL":   "_sessions2",
		"DB_NOTIFY_URL":       "postgres://sidecar:pw@primary:5432/app",
		"DB_PRIMARY_WINDOW":   "30s",
		"LOG_LEVEL":           "DEBUG",
		"LOG_FORMAT":          "console",
		"SHUTDOWN_TIMEOUT":    "1m",

		// Trust at the seams (issue 12).
		"INVALID_TOKEN_RATE":         "0",
		"BODY_IDLE_TIMEOUT":          "0",
		"JWKS_PATH":                  "/keys/../jwks",
		"IDENTITY_JWT_KEY":           "testdata/identity-key.pem",
		"IDENTITY_JWT_ISSUER":        "https://auth.example.test",
		"IDENTITY_JWT_AUDIENCE":      "app",
		"IDENTITY_JWT_PREVIOUS_KEYS": " testdata/identity-previous.pub.pem, testdata/identity-key.pem ,",
	}
}

// nonDefaultConfig is what nonDefaultEnviron loads as.
func nonDefaultConfig(tb testing.TB) config.Config {
	tb.Helper()
	return config.Config{
		UpstreamURL:      mustParseURL(tb, "https://app.internal:3000/base"),
		DatabaseURL:      "postgres://sidecar:pw@db:5432/app?sslmode=require",
		RedisURL:         "rediss://:pw@cache:6380/2",
		ListenAddr:       "0.0.0.0:8443",
		AdminAddr:        "[::1]:9999",
		AdminToken:       "0123456789abcdef",
		SessionCacheTTL:  time.Hour,
		SessionKeyPrefix: "auth:s:",
		NegativeCacheTTL: 0,
		LocalCacheTTL:    90 * time.Second,
		LocalCacheSize:   42,
		CacheWarmOnStart: true,
		CacheWarmLimit:   7,
		PublicPaths:      []string{"/login", "/_next/static", "/"},
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.168.1.7/32"),
			netip.MustParsePrefix("2001:db8::/32"),
			netip.MustParsePrefix("::1/128"),
		},
		SessionCookie:    "__Secure-next-auth.session-token",
		LogoutPaths:      []string{"/logout", "/api/auth/signout"},
		ValidatePath:     "/auth/check",
		HealthPath:       "/health",
		RedisPoolSize:    20,
		RedisMinIdle:     20,
		RedisPoolTimeout: 250 * time.Millisecond,
		RedisIdleTimeout: 5 * time.Minute,
		RedisMaxRetries:  0,
		RedisOpTimeout:   50 * time.Millisecond,
		BreakerFailures:  3,
		BreakerOpenFor:   time.Minute,
		DBMaxConns:       25,
		DBQueryTimeout:   500 * time.Millisecond,
		DBNotifyURL:      "postgres://sidecar:pw@primary:5432/app",
		DBPrimaryWindow:  30 * time.Second,
		DBNotifyChannel:  "_sessions2",
		LogLevel:         "debug",
		LogFormat:        "console",
		ShutdownTimeout:  time.Minute,

		InvalidTokenRate:        0,
		BodyIdleTimeout:         0,
		JWKSPath:                "/jwks",
		IdentityJWTKey:          "testdata/identity-key.pem",
		IdentityJWTIssuer:       "https://auth.example.test",
		IdentityJWTAudience:     "app",
		IdentityJWTPreviousKeys: []string{"testdata/identity-previous.pub.pem", "testdata/identity-key.pem"},
	}
}

// topologyEnvirons set the Redis variables that exclude REDIS_URL, each with the Config
// fields they load as; the rest of the environment is nonDefaultEnviron's.
func topologyEnvirons(tb testing.TB) []struct {
	env  map[string]string
	want func(*config.Config)
} {
	tb.Helper()
	pem := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(pem, []byte("not checked here"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return []struct {
		env  map[string]string
		want func(*config.Config)
	}{
		{map[string]string{"REDIS_SENTINEL_ADDRS": "s1:26379, s2:26379", "REDIS_SENTINEL_MASTER": "mymaster",
			"REDIS_SENTINEL_PASSWORD": "spw", "REDIS_USERNAME": "app", "REDIS_PASSWORD": "pw", "REDIS_TLS": "true",
			"REDIS_CA_FILE": pem, "REDIS_CERT_FILE": pem, "REDIS_KEY_FILE": pem},
			func(c *config.Config) {
				c.RedisSentinelAddrs, c.RedisClusterAddrs = []string{"s1:26379", "s2:26379"}, nil
				c.RedisSentinelMaster, c.RedisSentinelPassword = "mymaster", "spw"
				c.RedisUsername, c.RedisPassword, c.RedisTLS = "app", "pw", true
				c.RedisCAFile, c.RedisCertFile, c.RedisKeyFile = pem, pem, pem
			}},
		{map[string]string{"REDIS_CLUSTER_ADDRS": "n1:7000,n2:7000,n3:7000", "REDIS_PASSWORD": "pw"},
			func(c *config.Config) {
				c.RedisClusterAddrs, c.RedisSentinelAddrs, c.RedisPassword = []string{"n1:7000", "n2:7000", "n3:7000"}, nil, "pw"
			}},
	}
}

func TestLoadEveryVariable(t *testing.T) {
	covered := map[string]bool{}
	environ, want := nonDefaultEnviron(), nonDefaultConfig(t)
	for k := range environ {
		covered[k] = true
	}
	if got := mustLoad(t, environ); !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
	for _, topo := range topologyEnvirons(t) {
		env, want := nonDefaultEnviron(), nonDefaultConfig(t)
		delete(env, "REDIS_URL")
		want.RedisURL = ""
		for k, v := range topo.env {
			env[k], covered[k] = v, true
		}
		topo.want(&want)
		if got := mustLoad(t, env); !reflect.DeepEqual(got, want) {
			t.Errorf("Load(%v) =\n%+v\nwant\n%+v", topo.env, got, want)
		}
	}
	for _, v := range envVars(t) {
		if !covered[v.name] {
			t.Errorf("test sets no value for %s", v.name)
		}
	}
}

func TestRedisModeFollowsTheVariableSet(t *testing.T) {
	for env, want := range map[string]string{
		"": config.RedisDisabled, "REDIS_URL": config.RedisSingle,
		"REDIS_SENTINEL_ADDRS": config.RedisSentinel, "REDIS_CLUSTER_ADDRS": config.RedisCluster,
	} {
		environ := map[string]string{}
		switch env {
		case "REDIS_URL":
			environ[env] = "redis://r:6379"
		case "REDIS_SENTINEL_ADDRS":
			environ[env], environ["REDIS_SENTINEL_MASTER"] = "s:26379", "m"
		case "REDIS_CLUSTER_ADDRS":
			environ[env] = "n:7000"
		}
		if got := mustLoad(t, environ).RedisMode(); got != want {
			t.Errorf("%s: mode %q, want %q", env, got, want)
		}
	}
}

func TestDBNotifyURLDefaultsToDatabaseURL(t *testing.T) {
	c := mustLoad(t, map[string]string{"DATABASE_URL": "postgres://db/app"})
	if c.DBNotifyURL != "postgres://db/app" {
		t.Fatalf("DBNotifyURL = %q, want DATABASE_URL", c.DBNotifyURL)
	}
}

func TestIdentityAudienceDefaultsToTheUpstreamOrigin(t *testing.T) {
	got := mustLoad(t, map[string]string{"UPSTREAM_URL": "https://user:pw@app.internal:3000/base/"})
	if got.IdentityJWTAudience != "https://app.internal:3000" {
		t.Errorf("IDENTITY_JWT_AUDIENCE = %q, want the upstream's origin", got.IdentityJWTAudience)
	}
}

func TestLoadNoneDisables(t *testing.T) {
	got := mustLoad(t, map[string]string{"LOGOUT_PATHS": "none", "DB_NOTIFY_CHANNEL": "none"})
	if len(got.LogoutPaths) != 0 || got.DBNotifyChannel != "" {
		t.Errorf("LogoutPaths = %q, DBNotifyChannel = %q; want both empty", got.LogoutPaths, got.DBNotifyChannel)
	}
}
