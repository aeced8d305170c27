package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// LookupFunc is the behaviour every session source shares: the valid session for a token
// hash, pgsession.ErrNotFound (possibly wrapped) when there is none, another error when
// the source cannot decide.
type LookupFunc func(ctx context.Context, tokenHash string) (pgsession.Session, error)

// LookupSuite runs the shared session-source behaviour against the source newSource
// builds over a fresh database. Timestamps are compared to the second, so a source may
// serialise them at that precision.
func LookupSuite(t *testing.T, newSource func(t *testing.T, db *DB) LookupFunc) {
	t.Helper()
	db := NewDB(t)
	lookup := newSource(t, db)
	ctx := context.Background()

	t.Run("ValidSessionHasEveryField", func(t *testing.T) {
		user := db.User(t, UserSpec{
			FirstName: "José", LastName: "O'Brien", Username: "jose", AvatarURL: "https://example.test/a.png",
		})
		activity := time.Now().Add(-time.Minute)
		_, hash := db.Session(t, user, SessionSpec{
			IPAddress: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", LastActivityAt: activity,
		})
		got, err := lookup(ctx, hash)
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		assertSession(t, got, db.row(t, hash))
	})
	t.Run("NullColumnsReadAsZero", func(t *testing.T) {
		_, hash := db.Session(t, db.User(t, UserSpec{}), SessionSpec{})
		got, err := lookup(ctx, hash)
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		want := db.row(t, hash)
		if want.FirstName != "" || want.IPAddress != "" || !want.LastActivityAt.IsZero() {
			t.Fatalf("seeded row is not NULL-filled: %+v", want)
		}
		assertSession(t, got, want)
	})

	for _, tc := range notFoundCases(db) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lookup(ctx, tc.hash(t))
			if !errors.Is(err, pgsession.ErrNotFound) {
				t.Fatalf("lookup: got %v, want ErrNotFound", err)
			}
		})
	}
}

type notFoundCase struct {
	name string
	hash func(t *testing.T) string // seeds a session the source must not return
}

func notFoundCases(db *DB) []notFoundCase {
	ctx := context.Background()
	return []notFoundCase{
		{"UnknownHash", func(*testing.T) string { return Hash(randomHex(16)) }},
		{"Expired", func(t *testing.T) string {
			_, h := db.Session(t, db.User(t, UserSpec{}), SessionSpec{ExpiresIn: -time.Second})
			return h
		}},
		{"Revoked", func(t *testing.T) string {
			_, h := db.Session(t, db.User(t, UserSpec{}), SessionSpec{Revoked: true})
			return h
		}},
		{"UserDeleted", func(t *testing.T) string {
			user := db.User(t, UserSpec{})
			_, h := db.Session(t, user, SessionSpec{})
			if _, err := db.Pool.Exec(ctx, `DELETE FROM platform.users WHERE id = $1`, user); err != nil {
				t.Fatalf("delete user: %v", err)
			}
			return h
		}},
	}
}

// row reads the session with this hash straight from the table, whatever its state.
func (db *DB) row(t *testing.T, hash string) pgsession.Session {
	t.Helper()
	var (
		s        pgsession.Session
		activity *time.Time
	)
	err := db.Pool.QueryRow(context.Background(), `SELECT s.token_hash, s.id::text, s.user_id::text,
		u.email, coalesce(u.first_name, ''), coalesce(u.last_name, ''), coalesce(u.username, ''),
		coalesce(u.avatar_url, ''), s.expires_at, s.created_at, s.last_activity_at,
		coalesce(s.ip_address, ''), coalesce(s.user_agent, '')
		FROM platform.user_sessions s JOIN platform.users u ON u.id = s.user_id
		WHERE s.token_hash = $1`, hash).Scan(&s.TokenHash, &s.ID, &s.UserID,
		&s.Email, &s.FirstName, &s.LastName, &s.Username, &s.AvatarURL,
		&s.ExpiresAt, &s.CreatedAt, &activity, &s.IPAddress, &s.UserAgent)
	if err != nil {
		t.Fatalf("read session row: %v", err)
	}
	if activity != nil {
		s.LastActivityAt = *activity
	}
	return s
}

func assertSession(t *testing.T, got, want pgsession.Session) {
	t.Helper()
	for _, c := range []struct{ field, got, want string }{
		{"TokenHash", got.TokenHash, want.TokenHash},
		{"ID", got.ID, want.ID},
		{"UserID", got.UserID, want.UserID},
		{"Email", got.Email, want.Email},
		{"FirstName", got.FirstName, want.FirstName},
		{"LastName", got.LastName, want.LastName},
		{"Username", got.Username, want.Username},
		{"AvatarURL", got.AvatarURL, want.AvatarURL},
		{"IPAddress", got.IPAddress, want.IPAddress},
		{"UserAgent", got.UserAgent, want.UserAgent},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	for _, c := range []struct {
		field     string
		got, want time.Time
	}{
		{"ExpiresAt", got.ExpiresAt, want.ExpiresAt},
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"LastActivityAt", got.LastActivityAt, want.LastActivityAt},
	} {
		if c.got.IsZero() != c.want.IsZero() || c.got.Sub(c.want).Abs() >= time.Second {
			t.Errorf("%s = %v, want %v (to the second)", c.field, c.got, c.want)
		}
	}
}
