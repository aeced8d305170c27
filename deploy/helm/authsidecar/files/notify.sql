-- authsidecar: change notification (SPEC "Postgres contract").
-- Every change that can invalidate a cached session is announced with pg_notify on the
-- channel the sidecar LISTENs on (DB_NOTIFY_CHANNEL, default below). The sidecar then
-- evicts the matching entries from every cache.
--   platform.user_sessions: UPDATE of revoked_at/expires_at, DELETE -> {"tokenHash": "<hex>"}
--   platform.users:         UPDATE of email/first_name/last_name/username/avatar_url,
--                           DELETE                                 -> {"userId": "<uuid>"}
-- Other columns of platform.users (created_at, or any the app adds) reach neither the
-- identity headers nor validity, so changing them notifies nothing: a user event costs
-- every replica all of that user's cached sessions.
-- Idempotent: `psql -f notify.sql` may be re-run. To use another channel, replace the
-- quoted channel literal in both functions.

CREATE OR REPLACE FUNCTION platform.authsidecar_notify_session() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('authsidecar_session_changed',
                    json_build_object('tokenHash', OLD.token_hash)::text);
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION platform.authsidecar_notify_user() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('authsidecar_session_changed',
                    json_build_object('userId', OLD.id)::text);
  RETURN NULL;
END
$fn$;

-- A no-op UPDATE (same values) must not flush caches, hence the WHEN clauses. No
-- "UPDATE OF revoked_at, expires_at": it would miss a revocation made by another BEFORE
-- trigger in an UPDATE that does not name the column.
DROP TRIGGER IF EXISTS authsidecar_session_updated ON platform.user_sessions;
CREATE TRIGGER authsidecar_session_updated
  AFTER UPDATE ON platform.user_sessions
  FOR EACH ROW
  WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
  EXECUTE FUNCTION platform.authsidecar_notify_session();

DROP TRIGGER IF EXISTS authsidecar_session_deleted ON platform.user_sessions;
CREATE TRIGGER authsidecar_session_deleted
  AFTER DELETE ON platform.user_sessions
  FOR EACH ROW EXECUTE FUNCTION platform.authsidecar_notify_session();

-- No "UPDATE OF" column list here: it would miss a listed column changed by another
-- BEFORE trigger in an UPDATE that does not name it. The WHEN clause alone decides.
DROP TRIGGER IF EXISTS authsidecar_user_updated ON platform.users;
CREATE TRIGGER authsidecar_user_updated
  AFTER UPDATE ON platform.users
  FOR EACH ROW
  WHEN (OLD.email IS DISTINCT FROM NEW.email
        OR OLD.first_name IS DISTINCT FROM NEW.first_name
        OR OLD.last_name IS DISTINCT FROM NEW.last_name
        OR OLD.username IS DISTINCT FROM NEW.username
        OR OLD.avatar_url IS DISTINCT FROM NEW.avatar_url)
  EXECUTE FUNCTION platform.authsidecar_notify_user();

DROP TRIGGER IF EXISTS authsidecar_user_deleted ON platform.users;
CREATE TRIGGER authsidecar_user_deleted
  AFTER DELETE ON platform.users
  FOR EACH ROW EXECUTE FUNCTION platform.authsidecar_notify_user();
