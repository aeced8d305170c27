package config_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/config"
)

// badValue is one invalid setting of one variable.
type badValue struct{ name, value string }

// badValues has an example of every class of invalid value of every variable.
func badValues() []badValue {
	return []badValue{
		{"UPSTREAM_URL", "http://[::1"},
		{"UPSTREAM_URL", "ftp://app:21"},
		{"UPSTREAM_URL", "app:3000"},
		{"UPSTREAM_URL", "http:///path-only"},
		{"UPSTREAM_URL", "http://app:3000/?x=1"},
		{"DATABASE_URL", "postgres://db:notaport/app"},
		{"DATABASE_URL", "host=db sslmode=sometimes"},
		{"REDIS_URL", "http://cache:6379"},
		{"REDIS_URL", "cache:6379"},
		{"REDIS_URL", "redis://cache:6379/not-a-db"},
		{"REDIS_SENTINEL_MASTER", "mymaster"},
		{"REDIS_SENTINEL_PASSWORD", "spw"},
		{"REDIS_CLUSTER_ADDRS", "n1:7000,n2:99999"},
		{"REDIS_USERNAME", "app"},
		{"REDIS_PASSWORD", "pw"},
		{"REDIS_TLS", "true"},
		{"REDIS_TLS", "maybe"},
		{"REDIS_CA_FILE", "/nonexistent/ca.pem"},
		{"LISTEN_ADDR", "8080"},
		{"LISTEN_ADDR", ":http"},
		{"ADMIN_ADDR", "127.0.0.1:65536"},
		{"ADMIN_ADDR", "127.0.0.1:"},
		{"ADMIN_TOKEN", "short"},
		{"ADMIN_TOKEN", "0123456789 abcdef"},
		{"SESSION_CACHE_TTL", "5 minutes"},
		{"SESSION_CACHE_TTL", "0"},
		{"SESSION_CACHE_TTL", "-1m"},
		{"SESSION_KEY_PREFIX", "my prefix:"},
		{"SESSION_KEY_PREFIX", "tab\there"},
		{"SESSION_KEY_PREFIX", "{app}:"},
		{"NEGATIVE_CACHE_TTL", "-5s"},
		{"LOCAL_CACHE_TTL", "-1ns"},
		{"LOCAL_CACHE_SIZE", "0"},
		{"LOCAL_CACHE_SIZE", "lots"},
		{"LOCAL_CACHE_SIZE", "99999999999"},
		{"CACHE_WARM_ON_START", "yes please"},
		{"CACHE_WARM_LIMIT", "-1"},
		{"PUBLIC_PATHS", "/ok,login"},
		{"TRUSTED_PROXIES", "10.0.0.0/33"},
		{"TRUSTED_PROXIES", "fe80::1%eth0"},
		{"SESSION_COOKIE", "session id"},
		{"SESSION_COOKIE", "a=b"},
		{"LOGOUT_PATHS", "logout"},
		{"LOGOUT_PATHS", " , "},
		{"LOGOUT_PATHS", "none,/logout"},
		{"VALIDATE_PATH", "api/auth/validate"},
		{"HEALTH_PATH", "health"},
		{"REDIS_POOL_SIZE", "0"},
		{"REDIS_MIN_IDLE", "-1"},
		{"REDIS_MIN_IDLE", "11"},
		{"REDIS_POOL_TIMEOUT", "0s"},
		{"REDIS_IDLE_TIMEOUT", "-30s"},
		{"REDIS_MAX_RETRIES", "-1"},
		{"REDIS_OP_TIMEOUT", "0"},
		{"BREAKER_FAILURES", "0"},
		{"BREAKER_OPEN_FOR", "soon"},
		{"DB_MAX_CONNS", "-3"},
		{"DB_QUERY_TIMEOUT", "0"},
		{"DB_NOTIFY_URL", "postgres://db:notaport/app"},
		{"DB_PRIMARY_WINDOW", "-1s"},
		{"DB_NOTIFY_CHANNEL", "Sessions"},
		{"DB_NOTIFY_CHANNEL", "1sessions"},
		{"DB_NOTIFY_CHANNEL", "sessions; DROP TABLE x"},
		{"DB_NOTIFY_CHANNEL", strings.Repeat("a", 64)},
		{"LOG_LEVEL", "verbose"},
		{"LOG_FORMAT", "text"},
		{"SHUTDOWN_TIMEOUT", "0"},
		{"SHUTDOWN_TIMEOUT", "a\nSECOND_LINE: injected"},
	}
}

func TestLoadReportsBadValueAsOneLineNamingTheVariable(t *testing.T) {
	for _, tt := range badValues() {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			lines := loadErrorLines(t, map[string]string{tt.name: tt.value})
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.name+": ") {
				t.Errorf("error lines = %q, want one line starting %q", lines, tt.name+": ")
			}
		})
	}
}

func TestRedisTopologyMistakesNameTheVariables(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"REDIS_URL": "redis://r:6379", "REDIS_CLUSTER_ADDRS": "n:7000"},
			"REDIS_CLUSTER_ADDRS: set together with REDIS_URL: choose one of REDIS_URL, REDIS_SENTINEL_ADDRS, REDIS_CLUSTER_ADDRS"},
		{map[string]string{"REDIS_SENTINEL_ADDRS": "s:26379", "REDIS_CLUSTER_ADDRS": "n:7000"},
			"REDIS_CLUSTER_ADDRS: set together with REDIS_SENTINEL_ADDRS: choose one of REDIS_URL, REDIS_SENTINEL_ADDRS, REDIS_CLUSTER_ADDRS"},
		{map[string]string{"REDIS_SENTINEL_ADDRS": "s:26379"},
			"REDIS_SENTINEL_MASTER: required with REDIS_SENTINEL_ADDRS: the name the Sentinels monitor the master by"},
		{map[string]string{"REDIS_URL": "redis://r:6379", "REDIS_PASSWORD": "secret-pw"},
			"REDIS_PASSWORD: applies to Sentinel and Cluster mode; with REDIS_URL put it in the URL (user:password@, rediss://)"},
		{map[string]string{"REDIS_URL": "redis://r:6379", "REDIS_CA_FILE": "/etc/hosts"},
			"REDIS_CA_FILE: set but TLS to Redis is off: use a rediss:// REDIS_URL or REDIS_TLS=true"},
		{map[string]string{"REDIS_URL": "rediss://r:6379", "REDIS_CERT_FILE": "/etc/hosts"},
			"REDIS_KEY_FILE: REDIS_CERT_FILE and REDIS_KEY_FILE go together"},
		{map[string]string{"REDIS_URL": "rediss://r:6379", "REDIS_CERT_FILE": "/nonexistent/cert.pem", "REDIS_KEY_FILE": "/etc/hosts"},
			`REDIS_CERT_FILE: cannot read "/nonexistent/cert.pem": no such file or directory`},
		{map[string]string{"REDIS_SENTINEL_ADDRS": "s1:26379,sentinel-two", "REDIS_SENTINEL_MASTER": "m"},
			`REDIS_SENTINEL_ADDRS: entry 2: "sentinel-two" is not host:port`},
	} {
		lines := loadErrorLines(t, tc.env)
		if len(lines) != 1 || lines[0] != tc.want {
			t.Errorf("%v: error lines %q, want [%q]", tc.env, lines, tc.want)
		}
		for _, l := range lines {
			if strings.Contains(l, "secret-pw") {
				t.Errorf("password echoed: %q", l)
			}
		}
	}
}

func TestLoadReportsEveryProblemInDeclarationOrder(t *testing.T) {
	lines := loadErrorLines(t, map[string]string{
		"LOG_LEVEL":         "loud",
		"UPSTREAM_URL":      "ftp://app",
		"TRUSTED_PROXIES":   "10.0.0.0/8,not-an-ip, ,10.0.0.300",
		"SESSION_CACHE_TTL": "-1s",
		"REDIS_POOL_SIZE":   "x",
		"REDIS_MIN_IDLE":    "50", // not reported: the pool size it is checked against is invalid
	})
	want := []string{
		"UPSTREAM_URL: ",
		"SESSION_CACHE_TTL: ",
		`TRUSTED_PROXIES: entry 2: "not-an-ip"`,
		`TRUSTED_PROXIES: entry 4: "10.0.0.300"`,
		"REDIS_POOL_SIZE: ",
		"LOG_LEVEL: ",
	}
	if len(lines) != len(want) {
		t.Fatalf("error lines = %q, want %d lines", lines, len(want))
	}
	for i, prefix := range want {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
}

func TestLoadNeverEchoesPasswords(t *testing.T) {
	tests := []map[string]string{
		{"DATABASE_URL": "postgres://app:s3cret@db:notaport/app"},
		{"DATABASE_URL": "postgres://app:s3cret@[db/app"},
		{"DATABASE_URL": "host=db user=app password=s3cret port=x"},
		{"DATABASE_URL": "postgres://app:s3cret@db/app?sslmode=bogus"},
		{"DATABASE_URL": "postgres://app:s3cret%@db/app"},
		{"DATABASE_URL": "postgres://app:s3/cret@db:5432/app"},
		{"DATABASE_URL": "postgres://app:s3cret/@db:99999/app"},
		{"DATABASE_URL": "postgres://app:s3cret?x@db:notaport/app"},
		{"DATABASE_URL": "app:s3cret@db:5432/app"},
		{"DATABASE_URL": "host=db password=s3cret port=70000"},
		{"REDIS_URL": "redis://:s3cret#@cache:6379/0"},
		{"REDIS_URL": ":s3cret@cache:6379"},
		{"UPSTREAM_URL": "app:s3cret@app:3000"},
		{"UPSTREAM_URL": "http://app:s3cret%@app:3000"},
		{"REDIS_URL": "redis://:s3cret@cache:6379/not-a-db"},
		{"REDIS_URL": "redis://:s3cret@cache:notaport"},
		{"REDIS_URL": "http://:s3cret@cache:6379"},
		{"REDIS_URL": "redis://:s3cret@%zz"},
		{"UPSTREAM_URL": "ftp://app:s3cret@app"},
		{"UPSTREAM_URL": "http://app:s3cret@[app"},
		{"ADMIN_TOKEN": "s3cret"},
		{"ADMIN_TOKEN": "s3cret s3cret s3cret"},
	}
	for _, environ := range tests {
		lines := loadErrorLines(t, environ)
		if text := strings.Join(lines, "\n"); strings.Contains(text, "s3cret") {
			t.Errorf("error text echoes the secret: %q", text)
		}
	}
}

// TestLoadSaysWhatIsWrongInAURL: each message names the mistake and the fix, and quotes
// only what cannot be a password.
func TestLoadSaysWhatIsWrongInAURL(t *testing.T) {
	encode := "percent-encode the password: % as %25, @ as %40, : as %3A, / as %2F, ? as %3F, # as %23, space as %20"
	tests := []struct{ name, value, want string }{
		{"UPSTREAM_URL", "127.0.0.1:3000", "has no scheme: write http://127.0.0.1:3000"},
		{"UPSTREAM_URL", "app:3000", "has no scheme: write http://app:3000"},
		{"UPSTREAM_URL", "ftp://app:21", `scheme "ftp" is not http or https`},
		{"UPSTREAM_URL", "http://app:99999", "port 99999 is out of range (1-65535)"},
		{"UPSTREAM_URL", "http://app:0", "port 0 is out of range (1-65535)"},
		{"UPSTREAM_URL", "http://app:x", `port "x" is not a number`},
		{"UPSTREAM_URL", "http://[::1", "has an IPv6 host without its closing ]"},
		{"UPSTREAM_URL", "http:///path-only", "has no host: write http://host:port"},
		{"DATABASE_URL", "postgres://app:s3cr%et@db:5432/app", `the user name or password has a "%" that is not a %XX escape: ` + encode},
		{"DATABASE_URL", "postgres://app:pa%2@db:5432/app", `the user name or password has a "%" that is not a %XX escape: ` + encode},
		{"DATABASE_URL", "postgres://app:s3c/ret@db:5432/app", "the user name or password holds a / ? or # (the host cannot be found): " + encode},
		{"DATABASE_URL", "postgres://app:pw@db:notaport/app", `port "notaport" is not a number`},
		{"DATABASE_URL", "postgres://app:pw@db:70000/app", "port 70000 is out of range (1-65535)"},
		{"DATABASE_URL", "postgres://app:pw@db1:5432,db2:99999/app", "port 99999 is out of range (1-65535)"},
		{"DATABASE_URL", "postgres://app:pw@db/app?sslmode=sometimes", `sslmode "sometimes" is not one of disable, allow, prefer, require, verify-ca, verify-full`},
		{"DATABASE_URL", "host=db sslmode=sometimes", `sslmode "sometimes" is not one of disable, allow, prefer, require, verify-ca, verify-full`},
		{"DATABASE_URL", "host=db port=x", `port "x" is not a number`},
		{"DATABASE_URL", "db:5432/app", "has no scheme: write postgres://db:5432/app"},
		{"DATABASE_URL", "app:pw@db:5432/app", "has no scheme: start it with postgres://"},
		{"DATABASE_URL", "mysql://app:pw@db/app", `scheme "mysql" is not postgres or postgresql`},
		{"DATABASE_URL", "postgres://app:pw@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", `sslrootcert "/nonexistent/ca.pem" cannot be read`},
		{"DATABASE_URL", "host=db password=two words", "not a valid key=value connection string: single-quote a value that holds spaces or quotes (password='a b'), or use postgres://"},
		{"REDIS_URL", "cache:6379", "has no scheme: write redis://cache:6379"},
		{"REDIS_URL", "http://cache:6379", `scheme "http" is not redis or rediss`},
		{"REDIS_URL", "redis://cache:6379/not-a-db", `the database number (the path) "not-a-db" is not a number: use redis://host:6379/0`},
		{"REDIS_URL", "redis://:pw@cache:70000", "port 70000 is out of range (1-65535)"},
		{"REDIS_URL", "redis://:p%w@cache:6379", `the user name or password has a "%" that is not a %XX escape: ` + encode},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			lines := loadErrorLines(t, map[string]string{tt.name: tt.value})
			if want := tt.name + ": " + tt.want; len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
				t.Errorf("error lines = %q\nwant one line starting %q", lines, want)
			}
		})
	}
}

func TestRequiredVariablesAreReportedWithTheOtherProblems(t *testing.T) {
	environ := map[string]string{"UPSTREAM_URL": "http://app:3000", "LISTEN_ADDR": "nope"}
	_, err := config.Load(environ, "UPSTREAM_URL", "DATABASE_URL")
	want := "DATABASE_URL: required but not set\n" +
		"LISTEN_ADDR: \"nope\" is not host:port"
	if err == nil || err.Error() != want {
		t.Errorf("Load error =\n%v\nwant\n%s", err, want)
	}
	if _, err := config.Load(environ); err == nil || strings.Contains(err.Error(), "required") {
		t.Errorf("without required names: %v", err)
	}
}

func TestUsageListsEveryVariableWithDefaultAndHelp(t *testing.T) {
	var buf bytes.Buffer
	config.Usage(&buf)
	out := buf.String()
	for _, v := range envVars(t) {
		if v.help == "" {
			t.Errorf("%s (field %s) has no help tag", v.name, v.field)
		}
		if !strings.Contains(out, "  "+v.name+" ") {
			t.Errorf("usage does not list %s", v.name)
		}
		if !strings.Contains(out, " "+v.def+" ") {
			t.Errorf("usage does not show %s's default %q", v.name, v.def)
		}
		if !strings.Contains(out, v.help) {
			t.Errorf("usage does not show %s's help", v.name)
		}
	}
	for _, cmd := range []string{"serve", "check", "healthcheck", "version"} {
		if !strings.Contains(out, "\n  "+cmd+" ") {
			t.Errorf("usage does not list the %s command", cmd)
		}
	}
}

func TestUsageAlignsTheTable(t *testing.T) {
	var buf bytes.Buffer
	config.Usage(&buf)
	_, table, _ := strings.Cut(buf.String(), "\n  VARIABLE")
	lines := strings.Split(strings.TrimRight("  VARIABLE"+table, "\n"), "\n")
	column := strings.Index(lines[0], "DEFAULT")
	for _, line := range lines[1:] {
		if line[column-1] != ' ' || line[column] == ' ' {
			t.Errorf("default column not aligned at %d in %q", column, line)
		}
	}
}
