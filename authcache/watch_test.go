package authcache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// wSource is a primary whose sessions can be changed, deleted or made unreachable, counting
// the checks that reach it.
type wSource struct {
	mu       sync.Mutex
	sessions map[string]pgsession.Session // token hash → session; absent: ErrNotFound
	err      error                        // when set, every lookup fails with it
	checks   int
	hold     chan struct{} // when set, a lookup reports on started and waits for hold to close
	started  chan struct{}
}

func (s *wSource) set(h string, sess *pgsession.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions == nil {
		s.sessions = map[string]pgsession.Session{}
	}
	if sess == nil {
		delete(s.sessions, h)
		return
	}
	s.sessions[h] = *sess
}

func (s *wSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *wSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checks
}

func (s *wSource) Lookup(ctx context.Context, h string) (pgsession.Session, error) {
	return s.LookupPrimary(ctx, h)
}

func (s *wSource) LookupPrimary(_ context.Context, h string) (pgsession.Session, error) {
	s.mu.Lock()
	s.checks++
	sess, ok := s.sessions[h]
	err := s.err
	hold, started := s.hold, s.started
	s.mu.Unlock()
	if hold != nil {
		started <- struct{}{}
		<-hold
	}
	switch {
	case err != nil:
		return pgsession.Session{}, err
	case !ok:
		return pgsession.Session{}, pgsession.ErrNotFound
	}
	return sess, nil
}

// wFixture is a Cache without Redis over a wSource holding one session of user "u".
type wFixture struct {
	c    *Cache
	src  *wSource
	hash string
	sess pgsession.Session
}

func newWFixture(t *testing.T, expiresIn time.Duration) *wFixture {
	t.Helper()
	src := &wSource{}
	f := &wFixture{src: src, hash: HashToken("tok"),
		c: New(src, Options{LookupTimeout: time.Second, LocalTTL: time.Minute, LocalSize: 100})}
	f.sess = pgsession.Session{TokenHash: f.hash, ID: "s", UserID: "u", ExpiresAt: time.Now().Add(expiresIn)}
	src.set(f.hash, &f.sess)
	return f
}

// watch registers the session and returns a channel closed when end runs (it fails the
// test if end runs twice).
func (f *wFixture) watch(t *testing.T) (ended <-chan struct{}, stop func()) {
	t.Helper()
	ch := make(chan struct{})
	var once sync.Once
	stop = f.c.Watch(f.hash, f.sess, func() {
		ran := false
		once.Do(func() { close(ch); ran = true })
		if !ran {
			t.Error("end ran twice")
		}
	})
	return ch, stop
}

func wEnded(t *testing.T, ended <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(within):
		t.Fatalf("%s: the watch did not end within %v", what, within)
	}
}

func wOpen(t *testing.T, ended <-chan struct{}, f *wFixture, checksBefore int, what string) {
	t.Helper()
	evEventually(t, 5*time.Second, what+": the check ran", func() bool { return f.src.count() > checksBefore })
	time.Sleep(20 * time.Millisecond) // the check's verdict, if it were to end the watch
	select {
	case <-ended:
		t.Fatalf("%s: the watch ended", what)
	default:
	}
}

// Every way an eviction reaches this process ends a watch whose session the primary no
// longer has, within a check: nothing polls.
func TestEveryEvictionSourceEndsTheWatch(t *testing.T) {
	sources := []struct {
		name  string
		evict func(f *wFixture)
	}{
		{"LogoutByTokenHash", func(f *wFixture) {
			_, _ = f.c.Invalidate(context.Background(), Target{TokenHash: f.hash}, ReasonLogout)
		}},
		{"AdminByToken", func(f *wFixture) { _, _ = f.c.Invalidate(context.Background(), Target{Token: "tok"}, ReasonAdmin) }},
		{"AdminByUser", func(f *wFixture) { _, _ = f.c.Invalidate(context.Background(), Target{UserID: "u"}, ReasonAdmin) }},
		{"NotifyToken", func(f *wFixture) { f.c.Changed(pgsession.Event{TokenHash: f.hash}) }},
		{"NotifyUser", func(f *wFixture) { f.c.Changed(pgsession.Event{UserID: "u"}) }},
		{"ResyncRevoked", func(f *wFixture) { f.c.Resynced([]string{f.hash}) }},
		{"ResyncMissedDelete", func(f *wFixture) { f.c.Resynced(nil) }}, // the resync finds revoked rows only
		{"PeerToken", func(f *wFixture) { f.c.onPeerMessage(string(encodePeerMessage(eviction{tokenHash: f.hash}))) }},
		{"PeerUser", func(f *wFixture) { f.c.onPeerMessage(string(encodePeerMessage(eviction{userID: "u"}))) }},
		{"PeersResubscribed", func(f *wFixture) { f.c.onPeers(true); f.c.onPeers(false); f.c.onPeers(true) }},
	}
	for _, tc := range sources {
		t.Run(tc.name, func(t *testing.T) {
			f := newWFixture(t, time.Hour)
			ended, stop := f.watch(t)
			defer stop()
			f.src.set(f.hash, nil) // revoked or deleted in Postgres
			start := time.Now()
			tc.evict(f)
			wEnded(t, ended, 5*time.Second, tc.name)
			t.Logf("measured: %s ended the watch %v after the eviction", tc.name, time.Since(start))
			if n := f.c.Watching(); n != 0 {
				t.Fatalf("%d watches left after the end", n)
			}
		})
	}
}

func TestEvictionOfAStillValidSessionKeepsTheWatch(t *testing.T) {
	f := newWFixture(t, time.Hour)
	ended, stop := f.watch(t)
	defer stop()
	// The trigger also announces a changed user, or an extended expires_at.
	before := f.src.count()
	f.c.Changed(pgsession.Event{UserID: "u"})
	wOpen(t, ended, f, before, "user changed")

	// An eviction of someone else asks nothing.
	before = f.src.count()
	f.c.Changed(pgsession.Event{UserID: "someone-else"})
	_, _ = f.c.Invalidate(context.Background(), Target{Token: "other"}, ReasonAdmin)
	time.Sleep(20 * time.Millisecond)
	if n := f.src.count(); n != before {
		t.Fatalf("evictions of other sessions made %d checks", n-before)
	}
}

func TestUndecidedCheckKeepsTheWatch(t *testing.T) {
	f := newWFixture(t, time.Hour)
	ended, stop := f.watch(t)
	defer stop()
	f.src.fail(errors.New("postgres down"))
	before := f.src.count()
	f.c.Changed(pgsession.Event{TokenHash: f.hash})
	wOpen(t, ended, f, before, "primary down")

	f.src.fail(nil)
	f.src.set(f.hash, nil)
	f.c.Changed(pgsession.Event{TokenHash: f.hash})
	wEnded(t, ended, 5*time.Second, "revoked once the primary answers")
}

// An eviction that lands while a check reads the primary is checked again: the running
// check may have read the row before the revocation.
func TestEvictionDuringACheckIsCheckedAgain(t *testing.T) {
	f := newWFixture(t, time.Hour)
	ended, stop := f.watch(t)
	defer stop()
	hold, started := make(chan struct{}), make(chan struct{}, 4)
	f.src.mu.Lock()
	f.src.hold, f.src.started = hold, started
	f.src.mu.Unlock()

	f.c.Changed(pgsession.Event{UserID: "u"}) // a first check, which reads the valid row
	<-started
	f.src.set(f.hash, nil)
	f.c.Changed(pgsession.Event{TokenHash: f.hash}) // lands during it
	f.src.mu.Lock()
	f.src.hold = nil
	f.src.mu.Unlock()
	close(hold)
	wEnded(t, ended, 5*time.Second, "the second eviction")
}

func TestWatchEndsAtExpiry(t *testing.T) {
	f := newWFixture(t, 300*time.Millisecond)
	ended, stop := f.watch(t)
	defer stop()
	f.src.set(f.hash, nil) // expired: Postgres no longer returns it
	wEnded(t, ended, 5*time.Second, "expiry")
	if early := time.Until(f.sess.ExpiresAt); early > 0 {
		t.Fatalf("ended %v before expires_at", early)
	}
}

func TestExtendedSessionOutlivesItsFirstExpiry(t *testing.T) {
	f := newWFixture(t, 300*time.Millisecond)
	ended, stop := f.watch(t)
	defer stop()
	// The app extends the session; the trigger announces it (or the timer finds it).
	extended := f.sess
	extended.ExpiresAt = time.Now().Add(time.Hour)
	f.src.set(f.hash, &extended)
	select {
	case <-ended:
		t.Fatal("the watch ended at the first expires_at of an extended session")
	case <-time.After(600 * time.Millisecond):
	}
}

func TestUndecidedCheckAtExpiryEndsTheWatch(t *testing.T) {
	f := newWFixture(t, 200*time.Millisecond)
	ended, stop := f.watch(t)
	defer stop()
	f.src.fail(errors.New("postgres down"))
	wEnded(t, ended, 5*time.Second, "expiry with the primary down")
}

func TestStoppedWatchNeverEnds(t *testing.T) {
	f := newWFixture(t, 200*time.Millisecond)
	ended, stop := f.watch(t)
	if n := f.c.Watching(); n != 1 {
		t.Fatalf("Watching = %d, want 1", n)
	}
	stop()
	stop() // idempotent
	if n := f.c.Watching(); n != 0 {
		t.Fatalf("Watching = %d after stop, want 0", n)
	}
	f.src.set(f.hash, nil)
	before := f.src.count()
	f.c.Changed(pgsession.Event{TokenHash: f.hash})
	select {
	case <-ended:
		t.Fatal("a stopped watch ended")
	case <-time.After(400 * time.Millisecond): // past its expires_at too
	}
	if n := f.src.count(); n != before {
		t.Fatalf("a stopped watch made %d checks", n-before)
	}
}

// A peer's eviction, delivered over Redis pub/sub, ends a watch on this replica.
func TestPeerEvictionOverRedisEndsTheWatch(t *testing.T) {
	rdb, prefix := evRedis(t)
	src := &wSource{}
	h := HashToken("tok")
	sess := pgsession.Session{TokenHash: h, ID: "s", UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}
	src.set(h, &sess)
	a := evCache(t, src, rdb, prefix)
	b := evCache(t, src, rdb, prefix)
	for _, target := range []Target{{TokenHash: h}, {UserID: "u"}} {
		src.set(h, &sess)
		ended := make(chan struct{})
		stop := b.Watch(h, sess, func() { close(ended) })
		src.set(h, nil)
		start := time.Now()
		if _, err := a.Invalidate(context.Background(), target, ReasonAdmin); err != nil {
			t.Fatal(err)
		}
		wEnded(t, ended, 5*time.Second, "peer eviction")
		t.Logf("measured: a peer's eviction (%+v) ended the watch %v after it", target, time.Since(start))
		stop()
	}
}
