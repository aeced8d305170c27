// Package testenv provides the integration-test fixtures shared by every package: a
// migrated Postgres database per test, Redis key prefixes, a private redis-server to kill
// and restart, a TCP forwarder to cut or stall a connection, and a scanner that looks for
// raw tokens in everything Redis holds and the sidecar logs. For TLS it makes a throwaway
// CA with server and client certificates (TLSFiles), starts redis-server speaking only TLS
// (RedisTLS, also for Sentinel and Cluster) and a private Postgres with ssl=on
// (StartPostgresTLS).
//
// Service addresses come from AUTHSIDECAR_TEST_DATABASE_URL and AUTHSIDECAR_TEST_REDIS_URL.
// When one is unset, the fixtures look for the local server the README describes
// (redis://127.0.0.1:6379/0, postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
// and use it if it answers; otherwise the test fails with one line saying how to run the
// suite. Nothing skips: a bare `go test ./...` is either a real run or a red one. Under CI
// a variable must be set: CI runs scripts/test.sh, which sets both.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by the fixtures.
const (
	EnvDatabaseURL = "AUTHSIDECAR_TEST_DATABASE_URL"
	EnvRedisURL    = "AUTHSIDECAR_TEST_REDIS_URL"
	EnvCI          = "CI"
)

// The local servers the README describes, used when a variable is unset and they answer.
const (
	LocalRedisURL    = "redis://127.0.0.1:6379/0"
	LocalDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// HowToRun is the one line a test fails with when it finds no service to run against.
const HowToRun = "run the suite with scripts/test.sh (it installs and starts Redis and PostgreSQL and sets " +
	EnvRedisURL + " and " + EnvDatabaseURL + "), or set both to running servers"

// localProbes are the fallbacks of the variables, each probed at most once per test binary:
// a sync.OnceValue computed on first use and never written again, so every test of a
// package sees the same answer and an absent server costs one short timeout, not one per test.
var localProbes = map[string]func() bool{
	EnvRedisURL:    sync.OnceValue(func() bool { return ping("127.0.0.1:6379", "") == nil }),
	EnvDatabaseURL: sync.OnceValue(probePostgres),
}

var localURLs = map[string]string{EnvRedisURL: LocalRedisURL, EnvDatabaseURL: LocalDatabaseURL}

// requireEnv returns the variable's value; when it is unset, the local server's URL if that
// server answers. Otherwise the test fails with one line: under CI because the script sets
// every variable, elsewhere because a silent skip would report green for tests that never ran.
func requireEnv(tb testing.TB, name string) string {
	tb.Helper()
	v, err := resolveEnv(name, os.Getenv, localProbes[name])
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// resolveEnv is requireEnv's decision, with the environment and the probe passed in.
func resolveEnv(name string, getenv func(string) string, localAnswers func() bool) (string, error) {
	if v := getenv(name); v != "" {
		return v, nil
	}
	if getenv(EnvCI) != "" {
		return "", fmt.Errorf("%s is not set and CI is: integration services are required under CI; %s", name, HowToRun)
	}
	if localAnswers() {
		return localURLs[name], nil
	}
	return "", fmt.Errorf("%s is not set and nothing answers at %s: %s", name, localURLs[name], HowToRun)
}

func probePostgres() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, LocalDatabaseURL)
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx) == nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// randomHex returns 2n lower-case hex characters.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
