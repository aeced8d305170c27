package e2e

// Black-box tests of the Redis contract (each key, its TTL, its size), logout eviction and
// the Redis-off mode.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// ua111 is a real browser user agent, 111 bytes long.
const ua111 = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"

func TestBlackboxRedisKeysAndTTLs(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"SESSION_CACHE_TTL": "2m", "NEGATIVE_CACHE_TTL": "7s"}))
	ctx := context.Background()
	userID := st.db.User(t, testenv.UserSpec{})
	long, longHash := st.db.Session(t, userID, testenv.SessionSpec{ExpiresIn: time.Hour})
	short, shortHash := st.db.Session(t, userID, testenv.SessionSpec{ExpiresIn: 30 * time.Second})
	for _, tok := range []string{long, short} {
		if r := sc.Get(t, "/api/me", tok); r.Status != http.StatusOK {
			t.Fatalf("status %d", r.Status)
		}
	}
	unknown := "unknown-token-" + userID
	assertUnauthorized(t, sc.Get(t, "/api/me", unknown))

	for _, tc := range []struct {
		name, key string
		min, max  time.Duration
	}{
		{"session capped by SESSION_CACHE_TTL", st.sessionKey(longHash), 100 * time.Second, 2 * time.Minute},
		{"session capped by expires_at", st.sessionKey(shortHash), 20 * time.Second, 30 * time.Second},
		{"user index lives as long as its longest member", st.userKey(userID), 100 * time.Second, 2 * time.Minute},
		{"negative entry", st.negKey(testenv.Hash(unknown)), 4 * time.Second, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, err := st.rdb.PTTL(ctx, tc.key).Result()
			if err != nil || ttl < tc.min || ttl > tc.max {
				t.Errorf("PTTL %s = %v (%v), want within [%v, %v]", tc.key, ttl, err, tc.min, tc.max)
			}
		})
	}
	members, err := st.rdb.SMembers(ctx, st.userKey(userID)).Result()
	if err != nil || len(members) != 2 || !contains(members, longHash) || !contains(members, shortHash) {
		t.Errorf("user index members %v (%v), want both token hashes", members, err)
	}
	if typ := st.rdb.Type(ctx, st.userKey(userID)).Val(); typ != "set" {
		t.Errorf("user index is a %s, want set", typ)
	}
	// The raw token is never stored, neither in a key nor in a value, under any prefix.
	st.remember(long, short, unknown)
	st.assertNoRawTokens(t, sc)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestBlackboxCachedSessionFitsIn512Bytes(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	// A private server, so the key has the default prefix ("session:") as in production.
	srv := testenv.StartRedis(t)
	st.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { st.rdb.Close() })
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"REDIS_URL": srv.URL(), "SESSION_KEY_PREFIX": ""}))
	st.prefix = "session:"
	userID := st.db.User(t, testenv.UserSpec{Email: "margaret.hamilton@example-corp.test", FirstName: "Margaret",
		LastName: "Hamilton", Username: "mhamilton", AvatarURL: "https://cdn.example-corp.test/avatars/7f3c9a2e.png"})
	token, hash := st.db.Session(t, userID, testenv.SessionSpec{IPAddress: "203.0.113.42", UserAgent: ua111,
		LastActivityAt: time.Now()})
	if len(ua111) != 111 {
		t.Fatalf("user agent is %d bytes", len(ua111))
	}
	if r := sc.Get(t, "/api/me", token); r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	n, err := st.rdb.MemoryUsage(context.Background(), st.sessionKey(hash)).Result()
	if err != nil || n > 512 {
		t.Fatalf("MEMORY USAGE = %d (%v), want ≤ 512", n, err)
	}
	t.Logf("MEMORY USAGE of a cached session with a 111-byte user agent: %d bytes", n)
}

func TestBlackboxLogoutEvictsBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/auth/logout": // the app revokes the session, as a real one would
			hash := testenv.Hash(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			if _, err := st.db.Pool.Exec(r.Context(), `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
			}
		case "/api/auth/logout-fails":
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	// No change notifications: only the logout path can evict, and the local cache would
	// otherwise serve the token for LOCAL_CACHE_TTL.
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"DB_NOTIFY_CHANNEL": "none", "LOCAL_CACHE_TTL": "1m",
		"LOGOUT_PATHS": "/api/auth/logout,/api/auth/logout-fails"}))
	ctx := context.Background()
	token, hash, _ := st.session(t, testenv.SessionSpec{})
	if r := sc.Get(t, "/api/me", token); r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	if st.rdb.Exists(ctx, st.sessionKey(hash)).Val() != 1 {
		t.Fatalf("session was not cached")
	}

	// A failed logout evicts nothing.
	if r := sc.Get(t, "/api/auth/logout-fails", token); r.Status != http.StatusInternalServerError {
		t.Fatalf("failing logout: %d", r.Status)
	}
	if st.rdb.Exists(ctx, st.sessionKey(hash)).Val() != 1 {
		t.Fatalf("a non-2xx logout evicted the session")
	}

	if r := sc.Get(t, "/api/auth/logout", token); r.Status != http.StatusOK {
		t.Fatalf("logout: %d", r.Status)
	}
	// Checked the moment the answer arrives: the eviction happened before it was sent.
	if st.rdb.Exists(ctx, st.sessionKey(hash)).Val() != 0 {
		t.Errorf("session key still in Redis after the logout answer")
	}
	if st.rdb.SIsMember(ctx, st.userKey(st.userOf(t, hash)), hash).Val() {
		t.Errorf("token hash still in the user index")
	}
	before := up.Count()
	assertUnauthorized(t, sc.Get(t, "/api/me", token))
	if up.Count() != before {
		t.Errorf("the logged-out token reached the app")
	}
	st.assertNoRawTokens(t, sc)
}

func (st *stack) userOf(t *testing.T, hash string) string {
	t.Helper()
	var id string
	if err := st.db.Pool.QueryRow(context.Background(), `SELECT user_id::text FROM platform.user_sessions WHERE token_hash = $1`, hash).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestBlackboxRedisOffWorksEndToEnd(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"REDIS_URL": "", "PUBLIC_PATHS": "/login"}))
	token, hash, userID := st.session(t, testenv.SessionSpec{})
	expired, _, _ := st.session(t, testenv.SessionSpec{ExpiresIn: -time.Second})
	for range 3 {
		if r := sc.Get(t, "/api/me", token); r.Status != http.StatusOK || up.Last(t).Header.Get("X-User-Id") != userID {
			t.Fatalf("valid token: %d", r.Status)
		}
	}
	assertUnauthorized(t, sc.Get(t, "/api/me", expired))
	assertUnauthorized(t, sc.Get(t, "/api/me", "unknown"))
	if r := sc.Get(t, "/login", ""); r.Status != http.StatusOK {
		t.Errorf("public path: %d", r.Status)
	}
	if r := sc.Get(t, "/api/auth/validate", token); r.Status != http.StatusOK {
		t.Errorf("validate: %d", r.Status)
	}
	r := sc.Get(t, "/api/health/redis", "")
	var doc struct{ Status string }
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil || r.Status != http.StatusOK || doc.Status != "disabled" {
		t.Errorf("health: %d %s", r.Status, r.Body)
	}
	if n := st.rdb.Exists(context.Background(), st.sessionKey(hash)).Val(); n != 0 {
		t.Errorf("Redis-off sidecar wrote to Redis")
	}
	// Revocation still works without Redis (change notification, in-process cache).
	st.db.Revoke(t, hash)
	eventually(t, 3*time.Second, "revoked token refused without Redis", func() bool {
		return sc.Get(t, "/api/me", token).Status == http.StatusUnauthorized
	})
}
