import { getIdentity } from './identity';
import LogoutButton from './logout-button';
import EventsDemo from './events-demo';

// Rendered on every request from the request's headers: never prerendered or cached.
export const dynamic = 'force-dynamic';

export default async function Home() {
  const user = await getIdentity();
  if (!user) {
    // Only reachable when the app is hit directly, without the sidecar in front.
    return (
      <main>
        <h1>Not signed in</h1>
        <p>
          No identity headers: this page is meant to be reached through authsidecar. See <a href="/login">/login</a>.
        </p>
      </main>
    );
  }
  const name = [user.firstName, user.lastName].filter(Boolean).join(' ') || user.username || user.email;
  return (
    <main>
      <h1 id="greeting">
        Signed in as <span data-testid="user-name">{name}</span>
      </h1>
      <table>
        <tbody>
          <tr><th align="left">User id</th><td data-testid="user-id">{user.id}</td></tr>
          <tr><th align="left">Email</th><td data-testid="user-email">{user.email}</td></tr>
          <tr><th align="left">Username</th><td>{user.username}</td></tr>
          <tr><th align="left">Session id</th><td>{user.sessionId}</td></tr>
          <tr><th align="left">Session expires</th><td>{user.sessionExpiresAt}</td></tr>
        </tbody>
      </table>
      <EventsDemo />
      <LogoutButton />
    </main>
  );
}
