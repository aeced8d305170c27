// Reads the identity headers that authsidecar injects (SPEC "Identity headers").
// A value with non-ASCII bytes or a '%' arrives percent-encoded UTF-8, every other value as
// is, so decodeURIComponent on every value always yields the original.
//
// With AUTHSIDECAR_JWKS_URL set, the app also verifies X-Auth-Assertion, the JWT the sidecar
// signs for every authenticated request (IDENTITY_JWT_KEY), and trusts the headers only when
// it verifies and names the same user and session: a request that reached the app some other
// way, with forged X-User-* headers, is then treated as anonymous.
//   AUTHSIDECAR_JWKS_URL      e.g. http://127.0.0.1:9091/.well-known/jwks.json (ADMIN_ADDR)
//   AUTHSIDECAR_JWT_AUDIENCE  the sidecar's IDENTITY_JWT_AUDIENCE (default: its UPSTREAM_URL origin)
//   AUTHSIDECAR_JWT_ISSUER    the sidecar's IDENTITY_JWT_ISSUER (default: authsidecar)
import { headers } from 'next/headers';

const FIELDS = {
  id: 'x-user-id',
  email: 'x-user-email',
  username: 'x-user-username',
  firstName: 'x-user-first-name',
  lastName: 'x-user-last-name',
  sessionId: 'x-session-id',
  sessionExpiresAt: 'x-session-expires-at',
};

function decode(value) {
  if (value == null) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // not valid percent-encoding: show it raw rather than fail the page
  }
}

const JWKS_URL = process.env.AUTHSIDECAR_JWKS_URL;
let jwks; // createRemoteJWKSet caches the keys, and fetches again for an unknown kid (rotation)

// verifyAssertion returns the assertion's claims, or throws if it does not verify.
async function verifyAssertion(token) {
  const { createRemoteJWKSet, jwtVerify } = await import('jose');
  jwks ??= createRemoteJWKSet(new URL(JWKS_URL));
  const { payload } = await jwtVerify(token, jwks, {
    issuer: process.env.AUTHSIDECAR_JWT_ISSUER || 'authsidecar',
    audience: process.env.AUTHSIDECAR_JWT_AUDIENCE,
    algorithms: ['EdDSA', 'ES256'],
  });
  return payload;
}

export async function getIdentity() {
  const h = await headers(); // async in Next 15; also makes the page dynamic
  const out = {};
  for (const [key, name] of Object.entries(FIELDS)) {
    const v = decode(h.get(name));
    if (v !== undefined && v !== '') out[key] = v;
  }
  if (!out.id) return null;
  if (JWKS_URL) {
    try {
      const claims = await verifyAssertion(h.get('x-auth-assertion') ?? '');
      if (claims.sub !== out.id || claims.sid !== out.sessionId) return null;
      out.verified = true;
    } catch {
      return null; // no assertion, or a forged or expired one: not signed in
    }
  }
  return out;
}
