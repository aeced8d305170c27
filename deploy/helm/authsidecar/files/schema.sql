-- authsidecar: the session schema the application owns (SPEC "Postgres contract").
-- Shipped for tests and the demo; idempotent, so `psql -f schema.sql` can be re-run.

CREATE SCHEMA IF NOT EXISTS platform;

CREATE TABLE IF NOT EXISTS platform.users (
  id uuid PRIMARY KEY, email text NOT NULL UNIQUE, first_name text, last_name text,
  username text, avatar_url text, created_at timestamptz NOT NULL DEFAULT now());

CREATE TABLE IF NOT EXISTS platform.user_sessions (
  id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES platform.users(id) ON DELETE CASCADE,
  token_hash text NOT NULL UNIQUE,            -- lowercase hex SHA-256 of the raw token
  expires_at timestamptz NOT NULL, last_activity_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(), ip_address text, user_agent text,
  revoked_at timestamptz);

-- Optional index, not part of the contract: it serves the resync query the listener runs
-- after a reconnect (Store.RevokedSince). It is partial on purpose: no lookup (which asks
-- for revoked_at IS NULL) can be planned through it, so `authsidecar check` keeps seeing
-- whether lookups use the token_hash index. An index on user_id (ON DELETE CASCADE) or on
-- activity (Store.Active) would help too, but a lookup with sequential scans disabled
-- could then be planned as a full scan of it; the app owns those decisions.
CREATE INDEX IF NOT EXISTS user_sessions_revoked_at_idx
  ON platform.user_sessions (revoked_at) WHERE revoked_at IS NOT NULL;
