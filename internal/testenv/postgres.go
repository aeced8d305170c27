package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/pgsession"
)

const setupTimeout = 30 * time.Second

// DatabaseURL returns the admin DSN (URL form) from AUTHSIDECAR_TEST_DATABASE_URL.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	return requireEnv(tb, EnvDatabaseURL)
}

// DB is a freshly created, migrated database, dropped at cleanup. Its notification
// trigger sends on Channel, unique to it, so parallel tests never hear each other.
type DB struct {
	URL     string        // DSN of this database, as the admin user
	Pool    *pgxpool.Pool // admin pool on URL, closed at cleanup
	Channel string        // notification channel of the installed trigger
}

// NewDB creates and migrates a database named authsidecar_test_<random> on the shared test
// Postgres.
func NewDB(tb testing.TB) *DB {
	tb.Helper()
	return NewDBOn(tb, DatabaseURL(tb))
}

// NewDBOn creates and migrates a database on the server of the admin DSN admin.
func NewDBOn(tb testing.TB, admin string) *DB {
	tb.Helper()
	name := "authsidecar_test_" + randomHex(8)
	dsn := withPath(tb, admin, name)

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	adminExec(tb, ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		adminExec(tb, ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(pool.Close)
	db := &DB{URL: dsn, Pool: pool, Channel: "authsidecar_test_" + randomHex(8)}
	if err := pgsession.Migrate(ctx, pool, db.Channel); err != nil {
		tb.Fatalf("migrate test database: %v", err)
	}
	return db
}

func adminExec(tb testing.TB, ctx context.Context, dsn, sql string) {
	tb.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to admin database: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// URLVia returns the database's DSN with host:port replaced by addr, e.g. a Forwarder's.
func (db *DB) URLVia(addr string) string {
	u, err := url.Parse(db.URL)
	if err != nil {
		panic("testenv: DB.URL is not a URL: " + err.Error()) // NewDB built it
	}
	u.Host = addr
	return u.String()
}

func withPath(tb testing.TB, dsn, database string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("the admin DSN (%s) must be a postgres:// URL", EnvDatabaseURL)
	}
	u.Path = "/" + database
	u.RawPath = ""
	return u.String()
}

// OpenStore opens a pgsession.Store on this database with a 2 s query timeout, closed at
// cleanup.
func (db *DB) OpenStore(tb testing.TB) *pgsession.Store {
	tb.Helper()
	store, err := pgsession.Open(context.Background(), pgsession.Options{URL: db.URL, QueryTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatalf("testenv: open store: %v", err)
	}
	tb.Cleanup(store.Close)
	return store
}

// UserSpec describes a seeded user. Empty fields are stored as NULL, except Email,
// which defaults to a unique random address.
type UserSpec struct {
	Email, FirstName, LastName, Username, AvatarURL string
}

// User inserts a user and returns its id.
func (db *DB) User(tb testing.TB, u UserSpec) string {
	tb.Helper()
	if u.Email == "" {
		u.Email = "user-" + randomHex(6) + "@example.test"
	}
	var id string
	err := db.Pool.QueryRow(context.Background(), `INSERT INTO platform.users
		(id, email, first_name, last_name, username, avatar_url)
		VALUES (gen_random_uuid(), $1, $2, $3, $4, $5) RETURNING id::text`,
		u.Email, null(u.FirstName), null(u.LastName), null(u.Username), null(u.AvatarURL),
	).Scan(&id)
	if err != nil {
		tb.Fatalf("seed user: %v", err)
	}
	return id
}

// SessionSpec describes a seeded session. Empty strings and a zero LastActivityAt are
// stored as NULL.
type SessionSpec struct {
	ExpiresIn      time.Duration // from now; default 1h, negative = already expired
	Revoked        bool          // revoked_at = now()
	IPAddress      string
	UserAgent      string
	LastActivityAt time.Time
}

// Session inserts a session for userID and returns its random raw token and its hash.
func (db *DB) Session(tb testing.TB, userID string, s SessionSpec) (token, hash string) {
	tb.Helper()
	if s.ExpiresIn == 0 {
		s.ExpiresIn = time.Hour
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	token = base64.RawURLEncoding.EncodeToString(b)
	hash = Hash(token)
	var lastActivity *time.Time
	if !s.LastActivityAt.IsZero() {
		lastActivity = &s.LastActivityAt
	}
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO platform.user_sessions
		(id, user_id, token_hash, expires_at, last_activity_at, ip_address, user_agent, revoked_at)
		VALUES (gen_random_uuid(), $1, $2, now() + make_interval(secs => $3), $4, $5, $6,
		        CASE WHEN $7 THEN now() END)`,
		userID, hash, s.ExpiresIn.Seconds(), lastActivity, null(s.IPAddress), null(s.UserAgent), s.Revoked)
	if err != nil {
		tb.Fatalf("seed session: %v", err)
	}
	return token, hash
}

// Revoke sets revoked_at = now() on the session with this hash.
func (db *DB) Revoke(tb testing.TB, hash string) {
	tb.Helper()
	tag, err := db.Pool.Exec(context.Background(),
		`UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash)
	if err != nil {
		tb.Fatalf("revoke session: %v", err)
	}
	if tag.RowsAffected() != 1 {
		tb.Fatalf("revoke session: no session with hash %.8s…", hash)
	}
}

// ReaderRole creates a least-privilege reader role (pgsession.CreateReaderRole) with a
// random name and returns this database's DSN logging in as it. Roles are cluster-wide,
// so the role's grants and the role are dropped at cleanup.
func (db *DB) ReaderRole(tb testing.TB) string {
	tb.Helper()
	role := "authsidecar_test_" + randomHex(8)
	password := randomHex(16)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := pgsession.CreateReaderRole(ctx, db.Pool, role, password); err != nil {
		tb.Fatalf("create reader role: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		ident := pgx.Identifier{role}.Sanitize()
		if _, err := db.Pool.Exec(ctx, "DROP OWNED BY "+ident+"; DROP ROLE "+ident); err != nil {
			tb.Errorf("drop reader role: %v", err)
		}
	})
	u, err := url.Parse(db.URL)
	if err != nil {
		tb.Fatalf("parse database url: %v", err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// Hash returns the lowercase hex SHA-256 of a raw token, as stored in token_hash.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func null(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
