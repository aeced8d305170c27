package pgsession_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

func TestLookupSharedBehaviour(t *testing.T) {
	testenv.LookupSuite(t, func(t *testing.T, db *testenv.DB) testenv.LookupFunc {
		return open(t, db.URL, 2*time.Second).Lookup
	})
}

func TestLookupReturnsExactColumns(t *testing.T) {
	db := testenv.NewDB(t)
	store := open(t, db.URL, 2*time.Second)
	user := db.User(t, testenv.UserSpec{Email: "a@example.test", FirstName: "Ada"})
	_, hash := db.Session(t, user, testenv.SessionSpec{UserAgent: "ua"})

	got, err := store.Lookup(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.TokenHash != hash || got.UserID != user || got.Email != "a@example.test" ||
		got.FirstName != "Ada" || got.LastName != "" || got.UserAgent != "ua" ||
		!got.LastActivityAt.IsZero() || got.ExpiresAt.Location() != time.UTC {
		t.Fatalf("unexpected session %+v", got)
	}
}

func TestLookupBoundedByQueryTimeoutWhenPostgresStalls(t *testing.T) {
	const timeout = 300 * time.Millisecond
	db := testenv.NewDB(t)
	_, hash := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	fwd := testenv.NewForwarder(t, hostPort(t, db.URL))
	warm := open(t, db.URLVia(fwd.Addr()), timeout)
	if _, err := warm.Lookup(context.Background(), hash); err != nil {
		t.Fatalf("lookup before stall: %v", err)
	}
	// The bound is the timeout plus what this machine adds to a lookup that waits on nothing.
	slack := testenv.Slack(t, func() {
		if _, err := warm.Lookup(context.Background(), hash); err != nil {
			t.Fatalf("lookup before stall: %v", err)
		}
	})

	fwd.Pause()
	// A pooled connection goes silent mid-query; a new store cannot even finish connecting.
	cold := open(t, db.URLVia(fwd.Addr()), timeout)
	for name, store := range map[string]*pgsession.Store{"pooled": warm, "connecting": cold} {
		start := time.Now()
		_, err := store.Lookup(context.Background(), hash)
		elapsed := time.Since(start)
		if err == nil || errors.Is(err, pgsession.ErrNotFound) {
			t.Errorf("%s: lookup while stalled: got %v, want an undecidable error", name, err)
		}
		if elapsed > timeout+slack {
			t.Errorf("%s: lookup took %v, want at most %v", name, elapsed, timeout+slack)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: got %v, want it to wrap context.DeadlineExceeded", name, err)
		}
	}
	fwd.Resume()
	if _, err := warm.Lookup(context.Background(), hash); err != nil {
		t.Fatalf("lookup after recovery: %v", err)
	}
}

func TestOpenSucceedsWhilePostgresIsDown(t *testing.T) {
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", testenv.FreePort(t))
	store := open(t, dsn, time.Second)
	_, err := store.Lookup(context.Background(), testenv.Hash("x"))
	if err == nil || errors.Is(err, pgsession.ErrNotFound) {
		t.Fatalf("lookup with Postgres down: got %v, want an undecidable error", err)
	}
	if err := store.Ping(context.Background()); err == nil {
		t.Fatal("ping with Postgres down succeeded")
	}
}

// TestOpenDoesNotDial counts connections instead of timing Open: against a server that
// accepts and never answers, Open returns having made no connection, even with a query
// timeout of a minute, and the first query is what dials.
func TestOpenDoesNotDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open and silent until cleanup
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	opened := make(chan error, 1)
	var store *pgsession.Store
	go func() {
		var err error
		store, err = pgsession.Open(context.Background(), pgsession.Options{
			URL: "postgres://postgres@" + ln.Addr().String() + "/x?sslmode=disable", QueryTimeout: time.Minute,
		})
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
	case <-time.After(30 * time.Second): // a hang bound: a dialling Open would wait a minute
		t.Fatal("Open is waiting on a server that never answers")
	}
	if n := len(accepted); n != 0 {
		t.Fatalf("Open made %d connections, want none", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := store.Ping(ctx); err == nil {
		t.Fatal("ping against a silent server succeeded")
	}
	if n := len(accepted); n == 0 {
		t.Fatal("the first query made no connection: the counter proves nothing")
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	_, err := pgsession.Open(context.Background(), pgsession.Options{URL: "postgres://u:hunter2@[::1"})
	if err == nil {
		t.Fatal("Open accepted a malformed DSN")
	}
	if got := err.Error(); strings.Contains(got, "hunter2") {
		t.Fatalf("error leaks the password: %s", got)
	}
}

func TestPingAndMetrics(t *testing.T) {
	db := testenv.NewDB(t)
	store := open(t, db.URL, time.Second)
	if err := store.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(store)
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got["authsidecar_postgres_pool_connections/total"] < 1 || got["authsidecar_feed_role/off"] != 1 {
		t.Fatalf("metrics %v: want a pool connection and the feed off", got)
	}
	if _, ok := got["authsidecar_postgres_primary_pool_connections/total"]; ok {
		t.Fatal("a store without a replica exports a primary pool")
	}
}

func TestRevokedSinceListsRevocationsAndExpiriesInTheGap(t *testing.T) {
	db := testenv.NewDB(t)
	store := open(t, db.URL, time.Second)
	user := db.User(t, testenv.UserSpec{})
	_, oldRevoked := db.Session(t, user, testenv.SessionSpec{Revoked: true})
	exec(t, db, `UPDATE platform.user_sessions SET revoked_at = now() - interval '10 minutes' WHERE token_hash = $1`, oldRevoked)
	db.Session(t, user, testenv.SessionSpec{ExpiresIn: -10 * time.Minute})
	db.Session(t, user, testenv.SessionSpec{})
	since := dbNow(t, db).Add(-time.Minute)
	_, revoked := db.Session(t, user, testenv.SessionSpec{})
	db.Revoke(t, revoked)
	_, expired := db.Session(t, user, testenv.SessionSpec{ExpiresIn: -30 * time.Second})

	got, err := store.RevokedSince(context.Background(), since)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{revoked, expired}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("RevokedSince = %v, want %v", got, want)
	}
}

func TestActiveListsValidSessionsNewestFirst(t *testing.T) {
	db := testenv.NewDB(t)
	store := open(t, db.URL, time.Second)
	user := db.User(t, testenv.UserSpec{})
	now := dbNow(t, db)
	_, recent := db.Session(t, user, testenv.SessionSpec{LastActivityAt: now.Add(-time.Minute)})
	_, older := db.Session(t, user, testenv.SessionSpec{LastActivityAt: now.Add(-10 * time.Minute)})
	db.Session(t, user, testenv.SessionSpec{LastActivityAt: now.Add(-3 * time.Hour)})
	db.Session(t, user, testenv.SessionSpec{Revoked: true})
	db.Session(t, user, testenv.SessionSpec{ExpiresIn: -time.Second})
	_, fresh := db.Session(t, user, testenv.SessionSpec{}) // never active: created_at counts

	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{10, []string{fresh, recent, older}},
		{2, []string{fresh, recent}},
		{0, nil},
	} {
		got, err := store.Active(context.Background(), now.Add(-time.Hour), tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		hashes := make([]string, 0, len(got))
		for _, s := range got {
			hashes = append(hashes, s.TokenHash)
		}
		if !slices.Equal(hashes, tc.want) {
			t.Errorf("Active(limit %d) = %v, want %v", tc.limit, hashes, tc.want)
		}
	}
}
