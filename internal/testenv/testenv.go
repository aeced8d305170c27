// Package testenv provides the integration-test fixtures shared by every package: a
// migrated Postgres database per test, Redis key prefixes, a private redis-server to kill
// and restart, and a TCP forwarder to cut or stall a connection.
//
// Service addresses come from AUTHSIDECAR_TEST_DATABASE_URL and AUTHSIDECAR_TEST_REDIS_URL.
// When one is unset a test skips, unless CI is set: under CI a missing service fails.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
)

// Environment variables read by the fixtures.
const (
	EnvDatabaseURL = "AUTHSIDECAR_TEST_DATABASE_URL"
	EnvRedisURL    = "AUTHSIDECAR_TEST_REDIS_URL"
	EnvCI          = "CI"
)

// requireEnv returns the variable's value, or skips (fails under CI) when it is unset.
func requireEnv(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv(EnvCI) != "" {
		tb.Fatalf("%s is not set and CI is: integration services are required under CI", name)
	}
	tb.Skipf("%s is not set; skipping integration test", name)
	return ""
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
