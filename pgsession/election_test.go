package pgsession_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// shared is a settable FeedOptions.Shared: whether the replicas' relay is up.
type shared struct {
	mu      sync.Mutex
	up      bool
	changed chan struct{}
}

func newShared(up bool) *shared { return &shared{up: up, changed: make(chan struct{})} }

func (s *shared) get() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up, s.changed
}

func (s *shared) set(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up = up
	close(s.changed)
	s.changed = make(chan struct{})
}

// replica is one sidecar's change feed in an election, with what it saw.
type replica struct {
	store  *pgsession.Store
	sink   *recorder
	freed  chan struct{}
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// startReplica runs a feed on db with the relay given by sh, until stopped or cleanup.
func startReplica(t *testing.T, db *testenv.DB, sh *shared) *replica {
	t.Helper()
	r := &replica{
		store: open(t, db.URL, time.Second),
		sink:  &recorder{events: make(chan pgsession.Event, 100), resyncs: make(chan []string, 100), states: make(chan bool, 100)},
		freed: make(chan struct{}, 10), wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = r.store.Listen(ctx, pgsession.FeedOptions{
			Channel: db.Channel, FirstSyncWindow: time.Minute, Group: "test",
			Shared: sh.get, Wake: r.wake, StandbyFreed: func() { r.freed <- struct{}{} },
		}, r.sink)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// roles waits until the replicas' roles, counted, are want, and fails after within.
func roles(t *testing.T, within time.Duration, want map[pgsession.FeedRole]int, replicas ...*replica) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := map[pgsession.FeedRole]int{}
		for _, r := range replicas {
			got[r.store.FeedRole()]++
		}
		if equalCounts(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("roles %v, want %v within %v", got, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func equalCounts(a, b map[pgsession.FeedRole]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func holder(t *testing.T, replicas ...*replica) *replica {
	t.Helper()
	for _, r := range replicas {
		if r.store.FeedRole() == pgsession.FeedHolder {
			return r
		}
	}
	t.Fatal("no holder")
	return nil
}

// feedBackends counts the feed's connections on the database (LISTEN or waiting to).
func feedBackends(t *testing.T, db *testenv.DB) int {
	t.Helper()
	var n int
	err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, pgsession.ListenApplicationName).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOneHolderOneStandbyTheRestIdle(t *testing.T) {
	db := testenv.NewDB(t)
	sh := newShared(true)
	var fleet []*replica
	for range 4 {
		fleet = append(fleet, startReplica(t, db, sh))
	}
	roles(t, 10*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1, pgsession.FeedStandby: 1, pgsession.FeedIdle: 2}, fleet...)
	if n := feedBackends(t, db); n != 2 {
		t.Fatalf("%d feed connections on the primary, want 2 (holder and standby)", n)
	}
	// Only the holder hears a change.
	h := holder(t, fleet...)
	<-h.sink.resyncs // the holder's takeover resync
	_, hash := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	db.Revoke(t, hash)
	h.sink.wantEvent(t, pgsession.Event{TokenHash: hash}, time.Second)
	for _, r := range fleet {
		if r != h && len(r.sink.events) != 0 {
			t.Fatalf("a replica in role %s heard the change", r.store.FeedRole())
		}
	}
}

func TestStandbyTakesOverWithinThreeSecondsAndResyncs(t *testing.T) {
	db := testenv.NewDB(t)
	sh := newShared(true)
	a := startReplica(t, db, sh)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1}, a)
	b := startReplica(t, db, sh)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedStandby: 1}, b)
	<-a.sink.resyncs

	start := time.Now()
	a.stop() // the holder dies: its connection, and its lock, go with it
	roles(t, 3*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1}, b)
	t.Logf("standby took the feed over %v after the holder stopped", time.Since(start).Round(time.Millisecond))
	b.sink.wantResync(t, time.Second)
	select {
	case <-b.freed:
	default:
		t.Fatal("leaving the standby slot was not announced")
	}

	// With no standby, a revocation made before the next holder comes is found by its
	// takeover resync.
	b.stop()
	_, revokedMeanwhile := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	db.Revoke(t, revokedMeanwhile) // nobody listens: only the resync can find it
	c := startReplica(t, db, sh)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1}, c)
	if got := c.sink.wantResync(t, time.Second); !contains(got, revokedMeanwhile) {
		t.Fatalf("the takeover resync %v misses the session revoked while nobody listened", got)
	}
}

func TestIdleReplicaTakesTheFreedStandbySlotWhenWoken(t *testing.T) {
	db := testenv.NewDB(t)
	sh := newShared(true)
	a := startReplica(t, db, sh)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1}, a)
	b := startReplica(t, db, sh)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedStandby: 1}, b)
	c := startReplica(t, db, sh)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedIdle: 1}, c)

	a.stop()
	roles(t, 3*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1}, b)
	<-b.freed
	c.wake <- struct{}{} // what the freed announcement does through the cache's pub/sub
	roles(t, 3*time.Second, map[pgsession.FeedRole]int{pgsession.FeedStandby: 1}, c)
}

func TestEveryReplicaListensWhileTheRelayIsDown(t *testing.T) {
	db := testenv.NewDB(t)
	sh := newShared(true)
	fleet := []*replica{startReplica(t, db, sh), startReplica(t, db, sh), startReplica(t, db, sh)}
	roles(t, 10*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1, pgsession.FeedStandby: 1, pgsession.FeedIdle: 1}, fleet...)

	sh.set(false)
	roles(t, 5*time.Second, map[pgsession.FeedRole]int{pgsession.FeedSolo: 3}, fleet...)
	_, hash := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	db.Revoke(t, hash)
	for _, r := range fleet {
		r.sink.wantEvent(t, pgsession.Event{TokenHash: hash}, time.Second)
	}

	sh.set(true)
	roles(t, 10*time.Second, map[pgsession.FeedRole]int{pgsession.FeedHolder: 1, pgsession.FeedStandby: 1, pgsession.FeedIdle: 1}, fleet...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestLookupOnAReplicaConfirmsMissesAndRevocationsOnThePrimary(t *testing.T) {
	pair := testenv.StartPostgresPair(t, 3*time.Second)
	db := pair.NewDB(t)
	name := db.Pool.Config().ConnConfig.Database
	store, err := pgsession.Open(context.Background(), pgsession.Options{
		URL: pair.Standby.URL(name), PrimaryURL: pair.Primary.URL(name), QueryTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	ctx := context.Background()

	// Created on the primary a moment ago: the replica has not replayed it, the primary has.
	_, hash := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	if _, err := store.Lookup(ctx, hash); err != nil {
		t.Fatalf("a new session looked up through a lagging replica: %v, want it found on the primary", err)
	}
	time.Sleep(pair.ApplyDelay + 500*time.Millisecond) // now the replica has it too
	db.Revoke(t, hash)
	if _, err := store.Lookup(ctx, hash); err != nil {
		t.Fatalf("the replica should still show the session (lag), got %v", err)
	}
	if _, err := store.LookupPrimary(ctx, hash); err != pgsession.ErrNotFound {
		t.Fatalf("LookupPrimary after the revocation = %v, want ErrNotFound", err)
	}
	hashes, err := store.RevokedSince(ctx, time.Now().Add(-time.Minute))
	if err != nil || !contains(hashes, hash) {
		t.Fatalf("RevokedSince = %v, %v: it must read the primary", hashes, err)
	}
}

func TestLookupsThroughAnotherNameOfThePrimaryNeverUseThePrimaryPool(t *testing.T) {
	db := testenv.NewDB(t)
	primary := testenv.NewForwarder(t, hostPort(t, db.URL)) // counts nothing: cut, it refuses
	primary.Cut()
	store, err := pgsession.Open(context.Background(), pgsession.Options{
		URL: db.URL, PrimaryURL: db.URLVia(primary.Addr()), QueryTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	_, hash := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	ctx := context.Background()
	// DATABASE_URL reaches the primary (a pooler would too): it cannot lag, so neither a miss
	// nor a recently evicted token needs the primary pool, which here cannot answer.
	if _, err := store.Lookup(ctx, testenv.Hash("unknown")); err != pgsession.ErrNotFound {
		t.Fatalf("a miss = %v, want ErrNotFound from the lookup pool alone", err)
	}
	if _, err := store.LookupPrimary(ctx, hash); err != nil {
		t.Fatalf("LookupPrimary = %v, want the session from the lookup pool", err)
	}
}
