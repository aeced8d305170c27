-- Demo only: creates the login role that pgsession/sql/role.sql then restricts to SELECT on
-- the two session tables, with a known password, so docker-compose.yml's sidecar connects as
-- the least-privilege role:
--   DATABASE_URL=postgres://authsidecar:authsidecar-demo-password@postgres:5432/app
-- In production create the role with a secret password (or use your IAM/secret manager).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authsidecar') THEN
    CREATE ROLE authsidecar LOGIN PASSWORD 'authsidecar-demo-password';
  ELSE
    ALTER ROLE authsidecar WITH LOGIN PASSWORD 'authsidecar-demo-password';
  END IF;
END
$$;
