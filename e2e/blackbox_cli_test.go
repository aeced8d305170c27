package e2e

// Black-box tests of the command line: configuration errors, -h and version.

import (
	"strings"
	"testing"
)

func TestBlackboxConfigErrorsExit2NamingEachVariable(t *testing.T) {
	t.Parallel()
	const secret = "s3cretpassw0rd"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // the variables named, one line each, in this order
	}{
		{"nothing set", map[string]string{}, []string{"UPSTREAM_URL", "DATABASE_URL"}},
		{"bad values", map[string]string{
			"UPSTREAM_URL": "http://127.0.0.1:1", "DATABASE_URL": "postgres://app:" + secret + "@127.0.0.1/db",
			"REDIS_URL": "redis://:" + secret + "@[::1", "SESSION_CACHE_TTL": "5 minutes",
			"BREAKER_FAILURES": "many", "LOG_FORMAT": "xml",
		}, []string{"REDIS_URL", "SESSION_CACHE_TTL", "BREAKER_FAILURES", "LOG_FORMAT"}},
		{"bad URL with a password", map[string]string{
			"UPSTREAM_URL": "http://user:" + secret + "@host:port:bad", "DATABASE_URL": "postgres://u:" + secret + "@h/db",
		}, []string{"UPSTREAM_URL"}},
		{"unparsable DSN with a password", map[string]string{
			"UPSTREAM_URL": "http://127.0.0.1:1", "DATABASE_URL": "postgres://u:" + secret + "@h:notaport/db",
		}, []string{"DATABASE_URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runSidecar(t, tc.env)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(tc.want), stderr)
			}
			for i, name := range tc.want {
				if !strings.HasPrefix(lines[i], name+": ") {
					t.Errorf("line %d = %q, want it to name %s", i, lines[i], name)
				}
			}
			if strings.Contains(stderr+stdout, secret) {
				t.Errorf("the password was echoed:\n%s", stderr)
			}
		})
	}
}

// specVariables is every variable of the SPEC's configuration table.
var specVariables = []string{"UPSTREAM_URL", "DATABASE_URL", "REDIS_URL", "LISTEN_ADDR", "ADMIN_ADDR",
	"ADMIN_TOKEN", "SESSION_CACHE_TTL", "SESSION_KEY_PREFIX", "NEGATIVE_CACHE_TTL", "LOCAL_CACHE_TTL",
	"LOCAL_CACHE_SIZE", "CACHE_WARM_ON_START", "CACHE_WARM_LIMIT", "PUBLIC_PATHS", "TRUSTED_PROXIES",
	"SESSION_COOKIE", "LOGOUT_PATHS", "VALIDATE_PATH", "HEALTH_PATH", "REDIS_POOL_SIZE", "REDIS_MIN_IDLE",
	"REDIS_POOL_TIMEOUT", "REDIS_IDLE_TIMEOUT", "REDIS_MAX_RETRIES", "REDIS_OP_TIMEOUT", "BREAKER_FAILURES",
	"BREAKER_OPEN_FOR", "DB_MAX_CONNS", "DB_QUERY_TIMEOUT", "DB_NOTIFY_CHANNEL", "LOG_LEVEL", "LOG_FORMAT",
	"SHUTDOWN_TIMEOUT"}

func TestBlackboxHelpListsEveryVariableWithItsDefault(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runSidecar(t, nil, "-h")
	if code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			rows[f[0]] = f[1]
		}
	}
	defaults := map[string]string{"LISTEN_ADDR": ":8080", "ADMIN_ADDR": "127.0.0.1:9091", "SESSION_CACHE_TTL": "5m",
		"SESSION_KEY_PREFIX": "session:", "NEGATIVE_CACHE_TTL": "5s", "LOCAL_CACHE_TTL": "10s",
		"LOCAL_CACHE_SIZE": "100000", "CACHE_WARM_LIMIT": "10000", "LOGOUT_PATHS": "/api/auth/logout",
		"VALIDATE_PATH": "/api/auth/validate", "HEALTH_PATH": "/api/health/redis", "REDIS_POOL_SIZE": "10",
		"REDIS_MIN_IDLE": "2", "REDIS_POOL_TIMEOUT": "1s", "REDIS_IDLE_TIMEOUT": "30s", "REDIS_MAX_RETRIES": "3",
		"REDIS_OP_TIMEOUT": "100ms", "BREAKER_FAILURES": "5", "BREAKER_OPEN_FOR": "10s", "DB_MAX_CONNS": "10",
		"DB_QUERY_TIMEOUT": "2s", "DB_NOTIFY_CHANNEL": "authsidecar_session_changed", "LOG_LEVEL": "info",
		"LOG_FORMAT": "json", "SHUTDOWN_TIMEOUT": "15s", "CACHE_WARM_ON_START": "false"}
	for _, name := range specVariables {
		got, ok := rows[name]
		if !ok {
			t.Errorf("-h does not list %s", name)
			continue
		}
		if want, has := defaults[name]; has && got != want {
			t.Errorf("-h shows %s default %q, want %q", name, got, want)
		}
	}
}

func TestBlackboxVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runSidecar(t, nil, "version")
	// The stamped version, then what the build info records (revision, Go version).
	if code != 0 || !strings.HasPrefix(stdout, "authsidecar blackbox-test (") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestBlackboxUnknownCommandSaysSoFirstThenHints(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runSidecar(t, nil, "bogus")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 2 || stdout != "" || len(lines) != 2 ||
		lines[0] != `authsidecar: unknown command "bogus"` || !strings.Contains(lines[1], "authsidecar -h") {
		t.Fatalf("bogus: exit %d, stdout %q, stderr %q; want exit 2, the error, then a one-line hint", code, stdout, stderr)
	}
}
