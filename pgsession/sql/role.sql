-- authsidecar: least-privilege reader role (SPEC "Postgres contract").
-- Create the login role first, then run this file:
--   CREATE ROLE authsidecar LOGIN PASSWORD '...';
--   psql -f role.sql
-- The role may read the two session tables and nothing else; LISTEN needs no privilege.
--
-- WARNING: enabling row-level security denies every row to any role that is neither the
-- table owner, a superuser, a BYPASSRLS role nor covered by a policy. If the application
-- connects as such a role, give it a policy of its own before running this file.
--
-- Idempotent. Every occurrence of the bare word authsidecar below is the role name
-- (the policies are named after the role they serve).

GRANT USAGE ON SCHEMA platform TO authsidecar;
GRANT SELECT ON platform.users, platform.user_sessions TO authsidecar;

ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.user_sessions ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS authsidecar ON platform.users;
CREATE POLICY authsidecar ON platform.users FOR SELECT TO authsidecar USING (true);

DROP POLICY IF EXISTS authsidecar ON platform.user_sessions;
CREATE POLICY authsidecar ON platform.user_sessions FOR SELECT TO authsidecar USING (true);
