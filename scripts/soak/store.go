package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// driverAppName marks the driver's own Postgres connections, which the connection count
// of the sidecar leaves out.
const driverAppName = "authsidecar-soak"

// store writes the soak's sessions straight to Postgres (not through the forwarder), as
// the app would: logins and revocations.
type store struct {
	pool *pgxpool.Pool
}

// openStore connects to the soak database and creates the users sessions belong to.
func openStore(ctx context.Context, dbURL string) (*store, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = driverAppName
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	_, err = pool.Exec(ctx, `INSERT INTO platform.users (id, email, first_name, username)
		SELECT md5('soak-user-' || u)::uuid, 'soak' || u || '@example.com', 'Soak', 'soak' || u
		FROM generate_series(0, 99) AS u`)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("creating users: %w", err)
	}
	return &store{pool: pool}, nil
}

// create inserts n sessions valid for a day and returns their tokens.
func (s *store) create(ctx context.Context, n int) ([]string, error) {
	tokens := make([]string, n)
	hashes := make([]string, n)
	for i := range tokens {
		tokens[i] = newToken("soak-")
		hashes[i] = tokenHash(tokens[i])
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO platform.user_sessions (id, user_id, token_hash, expires_at, last_activity_at)
		SELECT gen_random_uuid(), md5('soak-user-' || (abs(hashtext(h)) % 100))::uuid, h, now() + interval '1 day', now()
		FROM unnest($1::text[]) AS h`, hashes)
	return tokens, err
}

// revoke sets revoked_at on token's session; the schema's trigger announces it.
func (s *store) revoke(ctx context.Context, token string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, tokenHash(token))
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("revoke: %d rows", tag.RowsAffected())
	}
	return err
}

// backends counts the connections to the soak database that are not the driver's.
func (s *store) backends(ctx context.Context) (float64, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name <> $1`, driverAppName).Scan(&n)
	return float64(n), err
}

// newToken is prefix and 32 random bytes in hex.
func newToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}

// tokenHash is what the sidecar looks a token up by: lowercase hex SHA-256.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
