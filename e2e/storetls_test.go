package e2e

// TLS to the stores (issue 12): the built binary on a redis-server that speaks only TLS
// (--port 0 --tls-port; a single node, Sentinel and Cluster) and on a private Postgres with
// ssl=on (initdb, run as the postgres OS user when the tests run as root), all with a CA
// and certificates the test makes. With the right CA the sidecar serves from both stores
// over verified TLS; when it cannot verify a store (another CA, no client certificate)
// that store fails closed: requests fall back to the other store, the log says why, health
// says so, and a valid session is never refused with a 401.

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

const (
	tlsRedisPassword    = "storetls-redis-password-s3cret"
	tlsPostgresPassword = "storetls-postgres-password-s3cret" // trust auth: sent, never needed
)

// tlsRig is a stack on a private Redis that speaks only TLS, on a database of the shared
// Postgres or of a private one with ssl=on, reached through a forwarder to cut it.
type tlsRig struct {
	st    *stack
	ca    *testenv.TLSFiles // the CA of both servers' certificates
	redis *testenv.RedisServer
	pg    *testenv.PostgresServer // nil: the shared Postgres, in plain text
	pgFwd *testenv.Forwarder
	up    *Upstream
}

func newTLSRig(t *testing.T, authClients string, tlsPostgres bool) *tlsRig {
	t.Helper()
	rig := &tlsRig{ca: testenv.NewTLSFiles(t), up: NewUpstream(t, echoUser)}
	rig.redis = testenv.StartRedis(t, testenv.RedisTLS(rig.ca, authClients), testenv.RedisPassword(tlsRedisPassword))
	var db *testenv.DB
	if tlsPostgres {
		rig.pg = testenv.StartPostgresTLS(t, rig.ca)
		db = testenv.NewDBOn(t, rig.pg.URL("postgres"))
	} else {
		db = testenv.NewDB(t)
	}
	rdb := rig.redis.Client(t)
	rig.st = &stack{db: db, rdb: rdb, prefix: testenv.Prefix(t, rdb)}
	rig.pgFwd = testenv.NewForwarder(t, hostOf(t, db.URL))
	return rig
}

// trust is what a sidecar is given to verify the stores with.
type trust struct {
	redisCA    string // REDIS_CA_FILE
	clientCert bool   // REDIS_CERT_FILE and REDIS_KEY_FILE: the rig's client certificate
	postgresCA string // sslrootcert, on the TLS Postgres
}

// trusted is the rig's CA everywhere, with the client certificate.
func (rig *tlsRig) trusted() trust { return trust{rig.ca.CAFile, true, rig.ca.CAFile} }

// env is the configuration of a sidecar named name: rediss:// with the password and tr,
// and the database's DSN with a password and application_name authsidecar-<name>, so the
// test finds its connections on the server.
func (rig *tlsRig) env(t *testing.T, name string, tr trust, overrides map[string]string) map[string]string {
	t.Helper()
	u, err := url.Parse(rig.st.db.URLVia(rig.pgFwd.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), tlsPostgresPassword)
	q := u.Query()
	q.Set("application_name", "authsidecar-"+name)
	if rig.pg != nil {
		q.Set("sslrootcert", tr.postgresCA)
	}
	u.RawQuery = q.Encode()
	env := rig.st.env(rig.up.URL, map[string]string{
		"REDIS_URL": rig.redis.URL(), "REDIS_CA_FILE": tr.redisCA, "DATABASE_URL": u.String(),
		"LOCAL_CACHE_TTL": "0", // every request asks Redis, the store under test
		"LOG_LEVEL":       "info",
	})
	if tr.clientCert {
		env["REDIS_CERT_FILE"], env["REDIS_KEY_FILE"] = rig.ca.ClientCert, rig.ca.ClientKey
	}
	for k, v := range overrides {
		env[k] = v
	}
	return env
}

// cacheSession has sc validate a new session until Redis holds it: a session "cached
// before" for the tests that then break TLS.
func (rig *tlsRig) cacheSession(t *testing.T, sc *Sidecar) (token, userID string) {
	t.Helper()
	token, hash, userID := rig.st.session(t, testenv.SessionSpec{})
	awaitCachedVia(t, sc, token, userID, "Redis", func() bool {
		return rig.st.rdb.Exists(t.Context(), rig.st.sessionKey(hash)).Val() == 1
	})
	return token, userID
}

// awaitCachedVia asks sc for the session until inRedis says Redis holds it: the first
// requests may find the client still connecting (a TLS handshake, a cluster's slot map)
// and fall back to Postgres without filling the cache.
func awaitCachedVia(t *testing.T, sc *Sidecar, token, userID, where string, inRedis func() bool) {
	t.Helper()
	eventually(t, 5*time.Second, "the session cached in "+where+" over TLS", func() bool {
		assertDecision(t, cached, sc.Get(t, "/api/me", token), http.StatusOK, userID)
		return inRedis()
	})
}

// assertSecretsNotLogged checks the sidecars' logs for the stores' passwords and the raw
// tokens issued.
func (rig *tlsRig) assertSecretsNotLogged(t *testing.T, sidecars ...*Sidecar) {
	t.Helper()
	for i, sc := range sidecars {
		for _, secret := range []string{tlsRedisPassword, tlsPostgresPassword} {
			if strings.Contains(sc.Stderr(), secret) {
				t.Errorf("sidecar %d logged a store password", i)
			}
		}
	}
	rig.st.assertNoRawTokens(t, sidecars...)
}

// awaitLogLine waits until the sidecar's log (flushed every second) has a line matching re,
// and returns the first.
func awaitLogLine(t *testing.T, sc *Sidecar, re *regexp.Regexp) string {
	t.Helper()
	var line string
	eventually(t, 5*time.Second, "a log line matching "+re.String(), func() bool {
		line = re.FindString(sc.Stderr())
		return line != ""
	})
	return line
}

// postgresConnections counts the server processes of the sidecar named name on the TLS
// Postgres, and those of them whose connection is TLS (pg_stat_ssl).
func (rig *tlsRig) postgresConnections(t *testing.T, name string) (all, tls int) {
	t.Helper()
	err := rig.st.db.Pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE s.ssl)
		FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1`,
		"authsidecar-"+name).Scan(&all, &tls)
	if err != nil {
		t.Fatalf("pg_stat_ssl: %v", err)
	}
	return all, tls
}

func TestStoreTLSServesFromBothStoresOverVerifiedTLS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		authClients string // what the Redis server asks of clients
		clientCert  bool   // REDIS_CERT_FILE and REDIS_KEY_FILE set
	}{
		{"server certificate only", testenv.RedisClientCertIgnored, false},
		{"client certificate required", testenv.RedisClientCertRequired, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rig := newTLSRig(t, tc.authClients, true)
			tr := rig.trusted()
			tr.clientCert = tc.clientCert
			env := rig.env(t, "verified", tr, nil)
			sc := StartSidecar(t, env)
			rig.cacheSession(t, sc)
			fresh, _, freshUser := rig.st.session(t, testenv.SessionSpec{})
			assertDecision(t, uncached, sc.Get(t, "/api/me", fresh), http.StatusOK, freshUser)
			revokedToken, _, _ := rig.st.session(t, testenv.SessionSpec{Revoked: true})
			assertUnauthorized(t, sc.Get(t, "/api/me", revokedToken))
			assertUnauthorized(t, sc.Get(t, "/api/me", "storetls-unknown-token"))

			awaitHealth(t, sc, "healthy", http.StatusOK, 5*time.Second)
			awaitReady(t, sc, http.StatusOK, 3*time.Second)
			// The server also serves plain text: only pg_stat_ssl tells TLS was used.
			all, tls := rig.postgresConnections(t, "verified")
			if all == 0 || tls != all {
				t.Errorf("the sidecar has %d connections to Postgres, %d of them TLS: want all, and at least one", all, tls)
			}
			t.Logf("measured: %d sidecar connections to Postgres, all TLS", all)
			rig.assertSecretsNotLogged(t, sc)

			assertCheckPasses(t, env)
		})
	}
}

// Log lines that say why a store is not used: go-redis's own (the cache's fallback line
// only says its deadline passed: go-redis retries a failed dial within it) and the proxy's
// when Postgres cannot decide.
var (
	redisFallbackLine = regexp.MustCompile(`\{[^\n]*"msg":"redis [a-z ]+ failed; falling back to postgres"[^\n]*\}`)
	redisClientLine   = regexp.MustCompile(`\{"level":"warn"[^\n]*"logger":"redis"[^\n]*tls: [^\n]*\}`)
	storeDownLine     = regexp.MustCompile(`\{"level":"warn"[^\n]*"msg":"session store unavailable"[^\n]*\}`)
)

// assertCheckPasses runs the operator suite with env, which connects as the sidecar does,
// and checks that every scenario passed. The throughput lines are left out: this binary
// is built with the race detector, which the targets are not meant for (runPlainCheck).
func assertCheckPasses(t *testing.T, env map[string]string) {
	t.Helper()
	_, stdout, _ := runSidecar(t, env, "check")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "PASS ") && !strings.HasPrefix(l, "FAIL redis.bench-") {
			t.Errorf("check over TLS: not a PASS line: %q", l)
		}
	}
	for _, want := range []string{"PASS redis.ping ", "PASS redis.set-get ", "PASS postgres.ping ", "PASS postgres.lookup-plan "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check over TLS: no %q line:\n%s", want, stdout)
		}
	}
	t.Logf("%s", lines[len(lines)-1])
}

// assertCheckFails runs the operator suite with env and checks that it fails, with the
// scenario's FAIL line saying why.
func assertCheckFails(t *testing.T, env map[string]string, scenario, why string) {
	t.Helper()
	code, stdout, _ := runSidecar(t, env, "check")
	line := regexp.MustCompile(`(?m)^FAIL ` + regexp.QuoteMeta(scenario) + ` .*$`).FindString(stdout)
	if code != 1 || !strings.Contains(line, why) {
		t.Errorf("check exited %d, want 1 with a FAIL %s line saying %q:\n%s", code, scenario, why, stdout)
	}
}

func TestStoreTLSRedisThatFailsVerificationFallsBackToPostgres(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		trust func(t *testing.T, rig *tlsRig) trust
		why   string // in the log line and the health document
	}{
		{"untrusted server certificate", func(t *testing.T, _ *tlsRig) trust {
			return trust{testenv.NewTLSFiles(t).CAFile, true, ""}
		}, "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"no client certificate", func(_ *testing.T, rig *tlsRig) trust {
			return trust{rig.ca.CAFile, false, ""}
		}, "tls: certificate required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rig := newTLSRig(t, testenv.RedisClientCertRequired, false)
			token, userID := rig.cacheSession(t, StartSidecar(t, rig.env(t, "verified", rig.trusted(), nil)))

			env := rig.env(t, "refused", tc.trust(t, rig), nil)
			assertCheckFails(t, env, "redis.ping", tc.why)
			sc := StartSidecar(t, env)
			// Redis cannot be used: every decision comes from Postgres, as without a cache.
			for range 5 {
				assertDecision(t, cached, sc.Get(t, "/api/me", token), http.StatusOK, userID)
				fresh, _, freshUser := rig.st.session(t, testenv.SessionSpec{})
				assertDecision(t, uncached, sc.Get(t, "/api/me", fresh), http.StatusOK, freshUser)
				revokedToken, _, _ := rig.st.session(t, testenv.SessionSpec{Revoked: true})
				assertUnauthorized(t, sc.Get(t, "/api/me", revokedToken))
			}
			awaitLogLine(t, sc, redisFallbackLine)
			line := awaitLogLine(t, sc, redisClientLine)
			if !strings.Contains(line, tc.why) {
				t.Errorf("the Redis client's warning does not say why (%q): %s", tc.why, line)
			}
			t.Logf("log: %s", line)
			awaitHealth(t, sc, "unhealthy", http.StatusServiceUnavailable, 5*time.Second)
			doc := healthDoc(t, sc)
			if !strings.Contains(strings.Join(doc.Errors, "\n"), tc.why) {
				t.Errorf("health document errors %q do not say why (%q)", doc.Errors, tc.why)
			}
			t.Logf("health document errors: %q", doc.Errors)

			// With Postgres gone as well, the session cached before is undecidable: 503,
			// never 401.
			rig.pgFwd.Cut()
			assertDecision(t, cached, sc.Get(t, "/api/me", token), http.StatusServiceUnavailable, "")
			assertDecision(t, invalid, sc.Get(t, "/api/me", "storetls-unknown-token"), http.StatusServiceUnavailable, "")
			rig.assertSecretsNotLogged(t, sc)
		})
	}
}

func TestStoreTLSPostgresThatFailsVerificationFailsClosed(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t, testenv.RedisClientCertRequired, true)
	token, userID := rig.cacheSession(t, StartSidecar(t, rig.env(t, "verified", rig.trusted(), nil)))

	const why = "tls: failed to verify certificate: x509: certificate signed by unknown authority"
	untrusted := rig.trusted()
	untrusted.postgresCA = testenv.NewTLSFiles(t).CAFile
	env := rig.env(t, "refused", untrusted, nil)
	assertCheckFails(t, env, "postgres.ping", why)
	sc := StartSidecar(t, env)
	// What Redis holds is still decided; nothing else can be, and nobody gets a 401.
	for range 3 {
		assertDecision(t, cached, sc.Get(t, "/api/me", token), http.StatusOK, userID)
		fresh, _, _ := rig.st.session(t, testenv.SessionSpec{})
		assertDecision(t, uncached, sc.Get(t, "/api/me", fresh), http.StatusServiceUnavailable, "")
		revokedToken, _, _ := rig.st.session(t, testenv.SessionSpec{Revoked: true})
		assertDecision(t, revoked, sc.Get(t, "/api/me", revokedToken), http.StatusServiceUnavailable, "")
		assertDecision(t, invalid, sc.Get(t, "/api/me", "storetls-unknown-token"), http.StatusServiceUnavailable, "")
	}
	awaitReady(t, sc, http.StatusServiceUnavailable, 3*time.Second)
	line := awaitLogLine(t, sc, storeDownLine)
	if !strings.Contains(line, why) {
		t.Errorf("the store's warning does not say why (%q): %s", why, line)
	}
	t.Logf("log: %s", line)
	// The server would have served it in plain text: it did not try.
	if all, _ := rig.postgresConnections(t, "refused"); all != 0 {
		t.Errorf("the sidecar that cannot verify Postgres holds %d connections to it", all)
	}
	// The health document describes Redis, which is fine.
	awaitHealth(t, sc, "healthy", http.StatusOK, 5*time.Second)
	rig.assertSecretsNotLogged(t, sc)
}

func TestStoreTLSSentinelAndClusterWithRedisTLS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode string
		// start starts the topology, speaking only TLS with ca's certificates, and returns
		// the sidecar's variables for it and a TLS client of it.
		start func(t *testing.T, ca *testenv.TLSFiles) (map[string]string, redis.Cmdable)
	}{
		{"sentinel", func(t *testing.T, ca *testenv.TLSFiles) (map[string]string, redis.Cmdable) {
			set := testenv.StartRedisSentinels(t, testenv.RedisTLS(ca, testenv.RedisClientCertRequired))
			return map[string]string{"REDIS_SENTINEL_ADDRS": strings.Join(set.Addrs(), ","),
				"REDIS_SENTINEL_MASTER": testenv.SentinelMaster}, set.Master.Client(t)
		}},
		{"cluster", func(t *testing.T, ca *testenv.TLSFiles) (map[string]string, redis.Cmdable) {
			cluster := testenv.StartRedisCluster(t, testenv.RedisTLS(ca, testenv.RedisClientCertRequired))
			return map[string]string{"REDIS_CLUSTER_ADDRS": strings.Join(cluster.Addrs(), ",")}, cluster.Client(t, nil)
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			ca := testenv.NewTLSFiles(t)
			vars, rdb := tc.start(t, ca)
			st := newStack(t)
			up := NewUpstream(t, echoUser)
			env := st.env(up.URL, map[string]string{"REDIS_URL": "", "REDIS_TLS": "true", "REDIS_CA_FILE": ca.CAFile,
				"REDIS_CERT_FILE": ca.ClientCert, "REDIS_KEY_FILE": ca.ClientKey, "LOCAL_CACHE_TTL": "0"})
			for k, v := range vars {
				env[k] = v
			}
			sc := StartSidecar(t, env)
			awaitHealthy(t, sc, tc.mode, 10*time.Second)
			token, hash, userID := st.session(t, testenv.SessionSpec{})
			key := st.sessionKey(hash)
			awaitCachedVia(t, sc, token, userID, "the "+tc.mode, func() bool {
				return rdb.Exists(t.Context(), key).Val() == 1
			})
		})
	}
}
