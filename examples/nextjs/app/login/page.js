// Public page: listed in the sidecar's PUBLIC_PATHS, so it is served without a session and
// without identity headers (any client-sent X-User-* header is stripped by the sidecar).
export const dynamic = 'force-static';

export const metadata = { title: 'Sign in — authsidecar example' };

export default function Login() {
  return (
    <main>
      <h1>Sign in</h1>
      <p>
        This example has no password form: sessions are issued by your real auth service. The demo
        database ships one session; send its token as <code>Authorization: Bearer &lt;token&gt;</code> or
        as the <code>session</code> cookie.
      </p>
      <p><a href="/">Go to the protected home page</a></p>
    </main>
  );
}
