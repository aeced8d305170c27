package authcache

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

func lcHash(i int) string { return HashToken("token-" + strconv.Itoa(i)) }

func lcSession(h, user string, expires time.Time) localEntry {
	return localEntry{session: pgsession.Session{TokenHash: h, UserID: user, ExpiresAt: expires}, valid: true, until: expires}
}

func TestLocalEntryExpiresAtItsDeadline(t *testing.T) {
	l := newLocal(100)
	now := time.Unix(1_800_000_000, 0)
	h := lcHash(1)
	l.put(h, lcSession(h, "u", now.Add(time.Second)), l.gen.Load(), now)

	if _, ok := l.get(h, now.Add(999*time.Millisecond)); !ok {
		t.Fatal("entry missing before its deadline")
	}
	if _, ok := l.get(h, now.Add(time.Second)); ok {
		t.Fatal("entry still served at its deadline")
	}
}

func TestLocalSizeIsBounded(t *testing.T) {
	for _, size := range []int{1, 10, 63, 64, 100, 1000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			l := newLocal(size)
			until := time.Now().Add(time.Hour)
			for i := range 5*size + 100 {
				h := lcHash(i)
				l.put(h, lcSession(h, "u", until), l.gen.Load(), time.Now())
			}
			if n := l.len(); n > size || n == 0 {
				t.Fatalf("holds %d entries, want 1..%d", n, size)
			}
		})
	}
}

// TestLocalDropsExpiredEntriesAsNewOnesArrive holds the sweep on put: a steady stream of
// new tokens, each cached for a second, keeps the cache near the live entries (here 1,000)
// instead of letting it grow toward its bound (the soak's finding: 100,000 entries of
// which almost all were dead).
func TestLocalDropsExpiredEntriesAsNewOnesArrive(t *testing.T) {
	l := newLocal(100_000)
	now := time.Unix(1_800_000_000, 0)
	for i := range 200_000 {
		now = now.Add(time.Millisecond)
		h := lcHash(i)
		l.put(h, lcSession(h, "u", now.Add(time.Second)), l.gen.Load(), now)
	}
	if n := l.len(); n > 2_000 {
		t.Fatalf("holds %d entries after 200,000 puts, 1,000 of them live: expired entries are kept", n)
	}
}

func TestLocalPutWithGenerationFromBeforeAnEvictionIsDropped(t *testing.T) {
	until := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		evict func(l *local, h string)
	}{
		{"DeleteHash", func(l *local, h string) { l.deleteHash(h) }},
		{"DeleteHashOfAnotherToken", func(l *local, _ string) { l.deleteHash(lcHash(99)) }},
		{"DeleteUser", func(l *local, _ string) { l.deleteUser("u") }},
		{"Clear", func(l *local, _ string) { l.clear() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(100)
			h := lcHash(1)
			stale := l.gen.Load() // read before the lookup, as Validate does
			tc.evict(l, h)        // the revocation lands while the lookup runs
			l.put(h, lcSession(h, "u", until), stale, time.Now())
			if _, ok := l.get(h, time.Now()); ok {
				t.Fatal("a fill that started before the eviction was stored")
			}
			l.put(h, lcSession(h, "u", until), l.gen.Load(), time.Now())
			if _, ok := l.get(h, time.Now()); !ok {
				t.Fatal("a fill that started after the eviction was dropped")
			}
		})
	}
}

func TestLocalDeleteUserRemovesOnlyThatUsersSessions(t *testing.T) {
	l := newLocal(1000)
	until := time.Now().Add(time.Hour)
	mine := []string{lcHash(1), lcHash(2), lcHash(3)}
	for _, h := range mine {
		l.put(h, lcSession(h, "alice", until), l.gen.Load(), time.Now())
	}
	other := lcHash(4)
	l.put(other, lcSession(other, "bob", until), l.gen.Load(), time.Now())
	negative := lcHash(5)
	l.put(negative, localEntry{until: until}, l.gen.Load(), time.Now())

	got := l.deleteUser("alice")
	slices.Sort(got)
	slices.Sort(mine)
	if !slices.Equal(got, mine) {
		t.Fatalf("deleteUser = %v, want %v", got, mine)
	}
	for _, h := range mine {
		if _, ok := l.get(h, time.Now()); ok {
			t.Fatalf("session %.8s of the user survived", h)
		}
	}
	for _, h := range []string{other, negative} {
		if _, ok := l.get(h, time.Now()); !ok {
			t.Fatalf("entry %.8s of someone else was dropped", h)
		}
	}
	if got := l.deleteUser("alice"); len(got) != 0 {
		t.Fatalf("second deleteUser = %v, want nothing", got)
	}
}

func TestLocalDeleteHashReportsOnlyHeldSessions(t *testing.T) {
	l := newLocal(100)
	until := time.Now().Add(time.Hour)
	session, negative := lcHash(1), lcHash(2)
	l.put(session, lcSession(session, "u", until), l.gen.Load(), time.Now())
	l.put(negative, localEntry{until: until}, l.gen.Load(), time.Now())
	if !l.deleteHash(session) {
		t.Error("deleteHash of a held session = false")
	}
	if l.deleteHash(negative) {
		t.Error("deleteHash of a negative entry = true, want it not counted as a session")
	}
	if l.deleteHash(lcHash(3)) {
		t.Error("deleteHash of an absent entry = true")
	}
	if n := l.len(); n != 0 {
		t.Fatalf("%d entries left, want 0", n)
	}
}

// lcSource answers every lookup with one session, or ErrNotFound once revoked.
type lcSource struct {
	mu      sync.Mutex
	session pgsession.Session
	revoked bool
	calls   int
}

func (s *lcSource) LookupPrimary(ctx context.Context, h string) (pgsession.Session, error) {
	return s.Lookup(ctx, h)
}

func (s *lcSource) Lookup(_ context.Context, h string) (pgsession.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.revoked {
		return pgsession.Session{}, pgsession.ErrNotFound
	}
	sess := s.session
	sess.TokenHash = h
	return sess, nil
}

func (s *lcSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func TestLocalTTLIsCappedAtTheSessionsExpiry(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name      string
		expiresIn time.Duration
		servedFor time.Duration // how long the local copy may answer
	}{
		{"LocalTTL", time.Hour, 10 * time.Second},
		{"SessionExpiry", 3 * time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := start
			src := &lcSource{session: pgsession.Session{UserID: "u", ExpiresAt: start.Add(tc.expiresIn)}}
			c := New(src, Options{LocalTTL: 10 * time.Second, LocalSize: 100, NegativeTTL: time.Second,
				LookupTimeout: time.Second, Now: func() time.Time { return now }})
			ctx := context.Background()
			if _, err := c.Validate(ctx, "tok"); err != nil {
				t.Fatal(err)
			}
			now = start.Add(tc.servedFor - time.Millisecond)
			if res, err := c.Validate(ctx, "tok"); err != nil || res.Layer != LayerLocal {
				t.Fatalf("just before the deadline: %v from %q, want the local copy", err, res.Layer)
			}
			now = start.Add(tc.servedFor)
			_, _ = c.Validate(ctx, "tok")
			if got := src.count(); got != 2 {
				t.Fatalf("source asked %d times, want 2: the local copy must lapse at %v", got, tc.servedFor)
			}
		})
	}
}
