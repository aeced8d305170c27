-- Seeds the benchmark database (scripts/bench.sh), after pgsession/sql/schema.sql.
-- Tokens are derived from their number, so the script writes the same tokens to its wrk
-- token files without reading them back:
--   bench-hot-token   the one session every hit-path request presents
--   bench-a-<i>       :active sessions active just now (what CACHE_WARM_ON_START loads)
--   bench-m-<i>       :miss sessions last active a day ago (not warmed): the miss path
-- Every session carries a 111-byte browser user agent, the size the Redis memory target
-- is stated for. Run with: psql -v active=10000 -v miss=40000 -f scripts/bench-seed.sql
\set ON_ERROR_STOP on
\set ua 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0'

INSERT INTO platform.users (id, email, first_name, last_name, username, avatar_url)
SELECT md5('bench-user-' || u)::uuid, 'user' || u || '@bench.example.com', 'José', 'Müller',
       'user' || u, 'https://cdn.example.com/avatars/' || u || '.png'
FROM generate_series(0, 999) AS u;

INSERT INTO platform.user_sessions
  (id, user_id, token_hash, expires_at, last_activity_at, created_at, ip_address, user_agent)
SELECT md5('bench-session-' || t.token)::uuid, md5('bench-user-' || (t.n % 1000))::uuid,
       encode(sha256(convert_to(t.token, 'UTF8')), 'hex'),
       now() + interval '1 day', t.active, now() - interval '2 days', '203.0.113.7', :'ua'
FROM (
  SELECT 0 AS n, 'bench-hot-token' AS token, now() AS active
  UNION ALL
  SELECT i, 'bench-a-' || i, now() FROM generate_series(1, :active) AS i
  UNION ALL
  SELECT i, 'bench-m-' || i, now() - interval '1 day' FROM generate_series(1, :miss) AS i
) AS t;
ANALYZE platform.users;
ANALYZE platform.user_sessions;
