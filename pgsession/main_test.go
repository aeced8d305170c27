package pgsession_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a Store on dsn, closed at cleanup.
func open(t *testing.T, dsn string, timeout time.Duration) *pgsession.Store {
	t.Helper()
	store, err := pgsession.Open(context.Background(), pgsession.Options{
		URL: dsn, MaxConns: 4, QueryTimeout: timeout, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(store.Close)
	return store
}

// hostPort returns the host:port a DSN points at.
func hostPort(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// dbNow is the database's clock, the one revoked_at and expires_at are written with.
func dbNow(t *testing.T, db *testenv.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.Pool.QueryRow(context.Background(), "SELECT now()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

func exec(t *testing.T, db *testenv.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
