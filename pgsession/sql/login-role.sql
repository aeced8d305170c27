-- authsidecar: the sidecar's login role. Run as a superuser or a role with CREATEROLE,
-- before role.sql (which the schema owner runs to grant it SELECT):
--   psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 \
--     -v role=authsidecar -v password="$SIDECAR_DB_PASSWORD" -f login-role.sql
-- Creates the role, or sets the password of the existing one, so running it again after
-- the password changed in the Secret rotates it. Idempotent. Without -v role the role is
-- authsidecar; -v password is required. The password is the one in the sidecar's
-- DATABASE_URL. Needs psql >= 10 (\if, \gexec).

\set VERBOSITY terse
\if :{?role}
\else
  \set role authsidecar
\endif
\if :{?password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'login-role.sql: pass the role''s password with -v password=...'; END $$;
\endif

-- format() quotes the name (%I) and the password (%L); \gexec runs the statement it builds.
SELECT format(CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
                   THEN 'ALTER ROLE %I WITH LOGIN PASSWORD %L'
                   ELSE 'CREATE ROLE %I LOGIN PASSWORD %L' END,
              :'role', :'password') \gexec
