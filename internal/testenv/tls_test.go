package testenv_test

import (
	"context"
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// The TLS fixtures are only worth something if they refuse what a TLS server must refuse:
// plain text, an unknown CA, and (when required) a client without a certificate.

func TestRedisTLSServesOnlyVerifiedTLSClients(t *testing.T) {
	t.Parallel()
	files, other := testenv.NewTLSFiles(t), testenv.NewTLSFiles(t)
	srv := testenv.StartRedis(t, testenv.RedisTLS(files, testenv.RedisClientCertRequired), testenv.RedisPassword("pw"))
	if !strings.HasPrefix(srv.URL(), "rediss://") {
		t.Errorf("URL %q of a TLS server, want rediss://", srv.URL())
	}
	if err := srv.Client(t).Set(t.Context(), "k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("a client with the CA and the client certificate: %v", err)
	}
	noCert := files.ClientConfig()
	noCert.Certificates = nil
	wrongCA := files.ClientConfig()
	wrongCA.RootCAs = other.ClientConfig().RootCAs
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want string // in the error
	}{
		{"plain text", nil, "EOF"}, // the server closes a connection that does not start TLS
		{"no client certificate", noCert, "certificate required"},
		{"another CA", wrongCA, "certificate signed by unknown authority"},
	} {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "pw", MaxRetries: -1, TLSConfig: tc.tls,
			DialTimeout: time.Second, ReadTimeout: time.Second})
		err := rdb.Ping(t.Context()).Err()
		rdb.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: PING error %v, want a refusal mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestPostgresTLSVerifiesWithItsCA(t *testing.T) {
	t.Parallel()
	files := testenv.NewTLSFiles(t)
	srv := testenv.StartPostgresTLS(t, files)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		dsn     string
		wantSSL bool
	}{
		{"verify-full with the CA", srv.URL("postgres"), true},
		{"plain text, served so that a test can see it", withParam(t, srv.URL("postgres"), "sslmode", "disable"), false},
	} {
		conn, err := pgx.Connect(ctx, tc.dsn)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var ssl bool
		err = conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl)
		conn.Close(context.Background())
		if err != nil || ssl != tc.wantSSL {
			t.Errorf("%s: pg_stat_ssl.ssl %v (%v), want %v", tc.name, ssl, err, tc.wantSSL)
		}
	}
	other := testenv.NewTLSFiles(t)
	_, err := pgx.Connect(ctx, withParam(t, srv.URL("postgres"), "sslrootcert", other.CAFile))
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("verify-full with another CA: %v, want a refusal", err)
	}
}

// withParam is dsn with the query parameter key set to value.
func withParam(t *testing.T, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}
