-- authsidecar: least-privilege reader role (SPEC "Postgres contract").
-- Run as the owner of the platform tables (usually the app's migration role), once the
-- login role exists (login-role.sql creates it):
--   psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -v role=authsidecar -f role.sql
-- -v role names the sidecar's role; without it the role is authsidecar (docker-compose.yml
-- runs this file that way). The role may read the two session tables and nothing else;
-- LISTEN needs no privilege.
--
-- WARNING: enabling row-level security denies every row to any role that is neither the
-- table owner, a superuser, a BYPASSRLS role nor covered by a policy. If the application
-- connects as such a role, give it a policy of its own before running this file.
--
-- Idempotent. The policies are named after the role they serve. Needs psql >= 10 (\if).
-- pgsession.CreateReaderRole runs this same file without psql: it drops the lines that
-- start with a backslash and puts the quoted role name in place of :"role".

\if :{?role}
\else
  \set role authsidecar
\endif

GRANT USAGE ON SCHEMA platform TO :"role";
GRANT SELECT ON platform.users, platform.user_sessions TO :"role";

ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.user_sessions ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS :"role" ON platform.users;
CREATE POLICY :"role" ON platform.users FOR SELECT TO :"role" USING (true);

DROP POLICY IF EXISTS :"role" ON platform.user_sessions;
CREATE POLICY :"role" ON platform.user_sessions FOR SELECT TO :"role" USING (true);
