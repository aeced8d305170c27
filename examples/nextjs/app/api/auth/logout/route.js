// Logout: revokes the current session in Postgres (the source of truth). authsidecar is in
// front: it validated the session and sent its id in X-Session-Id; when this handler answers
// 2xx on a LOGOUT_PATHS path the sidecar evicts the session from every cache before the
// answer reaches the client, so the token is refused at once.
import { Pool } from 'pg';

export const dynamic = 'force-dynamic';
export const runtime = 'nodejs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let pool;
function getPool() {
  if (!pool) {
    if (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set');
    pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  }
  return pool;
}

export async function POST(request) {
  const sessionId = request.headers.get('x-session-id');
  if (!sessionId || !UUID.test(sessionId)) {
    return Response.json({ error: 'no session' }, { status: 401 });
  }
  try {
    const res = await getPool().query(
      'UPDATE platform.user_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
      [sessionId],
    );
    return Response.json({ loggedOut: true, revoked: res.rowCount }, {
      status: 200,
      headers: { 'Set-Cookie': 'session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax' },
    });
  } catch (err) {
    console.error('logout failed:', err.message);
    return Response.json({ error: 'logout failed' }, { status: 500 });
  }
}
