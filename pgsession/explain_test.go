package pgsession_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

func TestExplainLookupUsesTokenHashIndex(t *testing.T) {
	db := testenv.NewDB(t)
	store := open(t, db.URL, 2*time.Second)
	user := db.User(t, testenv.UserSpec{})
	for range 20 {
		db.Session(t, user, testenv.SessionSpec{})
	}
	exec(t, db, "ANALYZE platform.user_sessions")

	got, err := store.ExplainLookup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := pgsession.LookupPlan{TokenIndex: "user_sessions_token_hash_key", Scan: "Index Scan", ScanIndex: "user_sessions_token_hash_key"}
	if got != want || !got.UsesTokenIndex() {
		t.Fatalf("plan = %+v, want %+v", got, want)
	}
}

func TestExplainLookupReportsMissingTokenHashIndex(t *testing.T) {
	db := testenv.NewDB(t)
	exec(t, db, "ALTER TABLE platform.user_sessions DROP CONSTRAINT user_sessions_token_hash_key")
	store := open(t, db.URL, 2*time.Second)

	got, err := store.ExplainLookup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.UsesTokenIndex() || got.TokenIndex != "" || got.ScanIndex != "" {
		t.Fatalf("plan = %+v, want no token index and no index scan", got)
	}
}

func TestExplainLookupFailsWhenPostgresIsDown(t *testing.T) {
	const timeout = time.Second
	store := open(t, "postgres://postgres@127.0.0.1:"+strconv.Itoa(testenv.FreePort(t))+"/x?sslmode=disable", timeout)
	slack := testenv.Slack(t, func() { _ = store.Ping(context.Background()) }) // refused at once
	start := time.Now()
	if _, err := store.ExplainLookup(context.Background()); err == nil {
		t.Fatal("explain against a closed port succeeded")
	}
	if d := time.Since(start); d > timeout+slack {
		t.Fatalf("explain took %v, want it bounded by the query timeout (%v + slack %v)", d, timeout, slack)
	}
}
