// Reads the identity headers that authsidecar injects (SPEC "Identity headers").
// A value with non-ASCII bytes or a '%' arrives percent-encoded UTF-8, every other value as
// is, so decodeURIComponent on every value always yields the original.
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

export async function getIdentity() {
  const h = await headers(); // async in Next 15; also makes the page dynamic
  const out = {};
  for (const [key, name] of Object.entries(FIELDS)) {
    const v = decode(h.get(name));
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out.id ? out : null;
}
