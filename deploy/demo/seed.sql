-- Demo data for docker-compose.yml, scripts/demo.sh and scripts/e2e.sh.
-- Load after pgsession/sql/schema.sql (and notify.sql / role.sql).
--
-- Demo session token (send it as `Authorization: Bearer authsidecar-demo-token`
-- or as the `session` cookie):
--     authsidecar-demo-token
-- Only its lowercase hex SHA-256 is stored, as the sidecar expects:
--     printf '%s' authsidecar-demo-token | sha256sum
--     d796d8a1a31c2f103fd0a19f652019d78b4418afe14518da9fdac3eb82d273bc
--
-- This token is public: never load this file into a real database.

INSERT INTO platform.users (id, email, first_name, last_name, username, avatar_url)
VALUES ('7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01', 'jose.muller@example.com', 'José', 'Müller',
        'jose.muller', NULL)
ON CONFLICT (id) DO NOTHING;

INSERT INTO platform.user_sessions
  (id, user_id, token_hash, expires_at, last_activity_at, ip_address, user_agent)
VALUES
  -- valid until 2099: the demo token
  ('2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01', '7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01',
   'd796d8a1a31c2f103fd0a19f652019d78b4418afe14518da9fdac3eb82d273bc',
   '2099-12-31T23:59:59Z', now(), '127.0.0.1', 'authsidecar-demo-seed'),
  -- already expired (token "authsidecar-expired-token"): always 401
  ('2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b02', '7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01',
   encode(sha256(convert_to('authsidecar-expired-token', 'UTF8')), 'hex'),
   '2020-01-01T00:00:00Z', '2019-12-31T23:00:00Z', '127.0.0.1', 'authsidecar-demo-seed')
ON CONFLICT (id) DO NOTHING;
