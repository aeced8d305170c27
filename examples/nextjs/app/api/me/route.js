// What the app received from the sidecar, decoded: handy with curl. With AUTHSIDECAR_JWKS_URL
// set, "verified": true says the signed X-Auth-Assertion verified and matched the headers.
//   curl -H 'Authorization: Bearer authsidecar-demo-token' http://localhost:8080/api/me
import { getIdentity } from '../../identity';

export const dynamic = 'force-dynamic';

export async function GET() {
  const user = await getIdentity();
  if (!user) return Response.json({ error: 'no verified identity (is the sidecar in front?)' }, { status: 401 });
  return Response.json(user);
}
