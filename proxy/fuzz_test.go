package proxy

// Fuzz targets for every parser of client bytes in the public listener, each with the
// property it must keep: token and cookie extraction, path resolution and public-path
// matching, the header rules, and the identity-header encoding. Seed corpora are in
// testdata/fuzz/<target>; scripts/fuzz.sh runs each target for 10,000 new inputs in CI.

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/pgsession"
)

// fuzzPublic are the public paths of the fuzzed handler.
var fuzzPublic = []string{"/login", "/_next/static"}

// fuzzAuth records every token the handler asks about; "good" is a session.
type fuzzAuth struct {
	mu     sync.Mutex
	tokens []string
}

func (a *fuzzAuth) Validate(_ context.Context, token string) (authcache.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens = append(a.tokens, token)
	if token == "good" {
		return authcache.Result{Session: jose, Layer: authcache.LayerLocal}, nil
	}
	return authcache.Result{}, authcache.ErrInvalid
}

func (a *fuzzAuth) ValidateCached(ctx context.Context, token string) (authcache.Result, error) {
	return a.Validate(ctx, token)
}

func (a *fuzzAuth) Invalidate(context.Context, authcache.Target, string) (int, error) { return 0, nil }

func (a *fuzzAuth) Watch(string, pgsession.Session, func()) func() { return func() {} }

// fuzzApp is the upstream as a RoundTripper: it records what was forwarded and answers 200,
// so a fuzzed request never leaves the process.
type fuzzApp struct {
	mu  sync.Mutex
	got []*http.Request
}

func (a *fuzzApp) RoundTrip(r *http.Request) (*http.Response, error) {
	a.mu.Lock()
	a.got = append(a.got, r)
	a.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func fuzzHandler() (*Handler, *fuzzAuth, *fuzzApp) {
	auth, app := &fuzzAuth{}, &fuzzApp{}
	return New(Options{
		Upstream: &url.URL{Scheme: "http", Host: "app.test"}, Auth: auth, Transport: app,
		Health:      http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		PublicPaths: fuzzPublic, SessionCookie: "session", ValidatePath: "/api/auth/validate",
		HealthPath: "/api/health/redis", LogoutPaths: []string{"/api/auth/logout"},
	}), auth, app
}

// visibleASCII is the SPEC's token alphabet, written apart from validToken.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// FuzzTokenFrom: whatever the Authorization and Cookie headers hold, a token is only ever
// cut out of them (never invented), a bearer token wins over the cookie, and the token a
// lookup is asked about is visible ASCII and 1 to 4096 bytes; anything else is refused with
// 401 before any lookup.
func FuzzTokenFrom(f *testing.F) {
	f.Add("Bearer abc", "session=xyz")
	f.Add("bearer", "")
	f.Add("Basic dXNlcjpwYXNz", `a=b; session="q"; session=second`)
	f.Add("BEARER   tok\x7f", "session=caf\xc3\xa9")
	f.Add("Bearer "+strings.Repeat("a", maxTokenLen), "")
	f.Add("Bearer "+strings.Repeat("a", maxTokenLen+1), "session=good")
	f.Add("Token good", "session=good")
	f.Add("Bearer\tgood", "session= good ")
	f.Fuzz(func(t *testing.T, auth, cookie string) {
		h := http.Header{"Authorization": {auth}, "Cookie": {cookie}}
		tok, found := tokenFrom(h, "session")
		scheme, _, _ := strings.Cut(auth, " ")
		switch {
		case !found && tok != "":
			t.Fatalf("not found but token %q", tok)
		case found && strings.EqualFold(scheme, "Bearer") && !strings.HasSuffix(auth, tok):
			t.Fatalf("bearer header %q gave %q, not its own token", auth, tok)
		case found && !strings.Contains(auth, tok) && !strings.Contains(cookie, tok):
			t.Fatalf("token %q is in neither header", tok)
		}
		if want := len(tok) >= 1 && len(tok) <= 4096 && visibleASCII(tok); validToken(tok) != want {
			t.Fatalf("validToken(%q) = %v, want %v", tok, !want, want)
		}

		// Through the handler: every token that reaches a lookup has the SPEC's shape.
		handler, lookups, _ := fuzzHandler()
		req := httptest.NewRequest(http.MethodGet, "/api/data", nil)
		req.Header = h.Clone()
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		for _, asked := range lookups.tokens {
			if len(asked) == 0 || len(asked) > maxTokenLen || !visibleASCII(asked) {
				t.Fatalf("a lookup was asked about %q", asked)
			}
		}
		if !found || !validToken(tok) {
			if len(lookups.tokens) != 0 || rec.Code != http.StatusUnauthorized {
				t.Fatalf("malformed token %q: %d lookups, status %d; want none and 401", tok, len(lookups.tokens), rec.Code)
			}
		}
	})
}

// cleanSegments reports a resolved path: rooted, no empty, "." or ".." segment (a trailing
// slash aside).
func cleanSegments(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	for i, s := range segs {
		if s == "." || s == ".." || (s == "" && !(i == 0 && len(segs) == 1)) {
			return false
		}
	}
	return true
}

// publicBySegment is the SPEC's matching rule, written apart from matchesAny: a public path
// matches itself and its subtree, on a segment boundary.
func publicBySegment(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if pre == "/" || p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// FuzzPathRouting: whatever the request-target, the path the handler resolves has no dot
// segments, resolving it again changes nothing, it is public exactly when a public path
// matches it on a segment boundary, and a request reaches the app without a session only
// on such a path, forwarded in its resolved form and without identity headers.
func FuzzPathRouting(f *testing.F) {
	for _, target := range []string{"/login", "/login/x", "/login2", "/login/../api/secret", "/_next/static/%2e%2e/api",
		"/login%2F..%2Fapi", "/login/../../api", "/login/a/../b", "/api/../login", "/api/%2e%2e/_next/static/x.js",
		"//login//x", "/login/..;/api", "/_next/static/..%5Capi", "/./login/.", "/login/", "/api/auth/validate/../../../login"} {
		f.Add(target, "/login")
	}
	f.Add("/a/b/../c", "/a/b")
	f.Add("/static.x/y", "/static")
	f.Fuzz(func(t *testing.T, target, prefix string) {
		// The resolver on any string.
		c := cleanPath(target)
		if !cleanSegments(c) || cleanPath(c) != c {
			t.Fatalf("cleanPath(%q) = %q: not resolved, or not stable", target, c)
		}
		if strings.HasSuffix(target, "/") != strings.HasSuffix(c, "/") && c != "/" {
			t.Fatalf("cleanPath(%q) = %q changed the trailing slash", target, c)
		}
		// Matching against a configured (cleaned, as config does) prefix.
		if pre := path.Clean("/" + prefix); pre != "/" || prefix == "/" {
			if got, want := matchesAny(c, []string{pre}), publicBySegment(c, []string{pre}); got != want {
				t.Fatalf("matchesAny(%q, %q) = %v, want %v", c, pre, got, want)
			}
		}

		// The whole handler, on a request-target as a client sends it.
		if !strings.HasPrefix(target, "/") {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: sidecar.test\r\nX-User-Id: spoofed\r\n\r\n")))
		if err != nil {
			return // Go's server would answer 400 before the handler
		}
		req.RemoteAddr = "192.0.2.1:1234"
		resolved := cleanPath(req.URL.Path)
		handler, _, app := fuzzHandler()
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		public := publicBySegment(resolved, fuzzPublic)
		switch {
		case len(app.got) > 1:
			t.Fatalf("%q was forwarded %d times", target, len(app.got))
		case len(app.got) == 1:
			out := app.got[0]
			if !public || out.URL.Path != resolved || !cleanSegments(out.URL.Path) {
				t.Fatalf("%q reached the app as %q without a session (resolved %q, public %v)", target, out.URL.Path, resolved, public)
			}
			if back, err := url.PathUnescape(out.URL.EscapedPath()); err != nil || back != out.URL.Path {
				t.Fatalf("%q: the app reads %q as %q, not the authorised %q", target, out.URL.EscapedPath(), back, out.URL.Path)
			}
			for name := range out.Header {
				if isIdentityHeader(name) {
					t.Fatalf("%q: a public path carried %s", target, name)
				}
			}
		case public && !ambiguousPath(resolved):
			t.Fatalf("%q resolves to the public %q but was answered %d", target, resolved, rec.Code)
		case rec.Code != http.StatusUnauthorized && rec.Code != http.StatusBadRequest && rec.Code != http.StatusTeapot:
			t.Fatalf("%q: status %d without a session", target, rec.Code)
		}
	})
}

// fold is a header name as the rules compare it: ASCII lower case, '_' read as '-'.
func fold(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		case r == '_':
			return '-'
		}
		return r
	}, name)
}

// spoofable is the SPEC's rule of what a client may never send, written apart from
// isClientForbidden: identity headers, and Next.js's internal ones.
func spoofable(name string) bool {
	n := fold(name)
	return strings.HasPrefix(n, "x-user-") || strings.HasPrefix(n, "x-session-") || n == "x-auth-signature" ||
		n == "x-auth-assertion" || strings.HasPrefix(n, "x-middleware-subrequest") ||
		strings.HasPrefix(n, "x-invoke-") || n == "x-now-route-matches"
}

// FuzzStripIdentity: for any set of header names and any Connection header, stripping
// removes every identity name in any case and with '_' for '-', keeps names that are not
// "x-" names, treats two names that fold alike alike (no spelling survives whose twin was
// stripped), takes identity names out of Connection and keeps the others there, and
// stripping again changes nothing. The proxy-only rule (isProxyHeader) folds alike too,
// except for the three X-Forwarded-* names the proxy itself writes.
func FuzzStripIdentity(f *testing.F) {
	f.Add("X-User-Id\nx_user_email\nX-USER_first-NAME\nX-Userid\nAuthorization", "X-User-Id, x_session_id, X-Custom-Hop")
	f.Add("X-Auth-Signature\nx_auth_signature\nX-Auth-Signature2\nX-Sessionid\nX-Session-", "keep-alive")
	f.Add("x-real-ip\nX_Real_IP\nX-Forwarded-For\nx_forwarded_for\nX-Forwarded-Prefix", "Upgrade, ,X_USER_ID,")
	f.Add("X-Request-Id\nCookie\nx-middleware-subrequest", "")
	f.Add("x_Auth_Assertion\nX-Invoke-Path\nx-now-route-matches\nX-Middleware-Subrequest-Id", "x-invoke-query, x-keep")
	f.Fuzz(func(t *testing.T, names, connection string) {
		h := http.Header{}
		list := strings.Split(names, "\n")
		for _, n := range list {
			h[n] = []string{"v"} // as sent, not canonicalised
		}
		if connection != "" {
			h["Connection"] = []string{connection}
		}
		stripClientHeaders(h)
		byFold := map[string]bool{}
		for _, n := range list {
			_, kept := h[n]
			if n == "Connection" {
				continue
			}
			if spoofable(n) && kept {
				t.Fatalf("identity header %q survived", n)
			}
			if !strings.HasPrefix(fold(n), "x-") && !kept {
				t.Fatalf("%q, not an x- header, was stripped", n)
			}
			if k, seen := byFold[fold(n)]; seen && k != kept {
				t.Fatalf("%q kept %v, but a name folding alike was kept %v", n, kept, k)
			}
			byFold[fold(n)] = kept
		}
		var wantConn []string
		for tok := range strings.SplitSeq(connection, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !spoofable(tok) {
				wantConn = append(wantConn, tok)
			}
		}
		if got := h.Values("Connection"); connection != "" && len(wantConn) < countTokens(connection) {
			if len(got) != 1 || got[0] != strings.Join(wantConn, ", ") {
				t.Fatalf("Connection %q became %q, want %q", connection, got, strings.Join(wantConn, ", "))
			}
		}
		again := h.Clone()
		stripClientHeaders(again)
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("stripping twice changed %v into %v", h, again)
		}

		trio := map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true}
		proxyByFold := map[string]bool{}
		for _, n := range list {
			if trio[n] {
				continue
			}
			if p, seen := proxyByFold[fold(n)]; seen && p != isProxyHeader(n) {
				t.Fatalf("isProxyHeader(%q) = %v, but a name folding alike gave %v", n, !p, p)
			}
			proxyByFold[fold(n)] = isProxyHeader(n)
		}
	})
}

func countTokens(v string) int {
	n := 0
	for tok := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(tok) != "" {
			n++
		}
	}
	return n
}

// FuzzEncodeHeaderValue: an identity value is always a valid header value (printable
// ASCII), decodeURIComponent gives back the original, and a value that needs no encoding
// goes as it is.
func FuzzEncodeHeaderValue(f *testing.F) {
	f.Add("José")
	f.Add("50% off\r\n")
	f.Add("O'Brien-Smith (admin)")
	f.Add("\x00\x7f\xff")
	f.Fuzz(func(t *testing.T, v string) {
		enc := encodeHeaderValue(v)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("encoded value %q holds byte %#x", enc, enc[i])
			}
		}
		if back, err := url.PathUnescape(enc); err != nil || back != v {
			t.Fatalf("round trip of %q: %q, %v", v, back, err)
		}
		plain := !strings.Contains(v, "%")
		for i := 0; i < len(v); i++ {
			plain = plain && v[i] >= 0x20 && v[i] <= 0x7e
		}
		if plain != (enc == v) {
			t.Fatalf("encode(%q) = %q: a value is changed exactly when it needs encoding", v, enc)
		}
		h := http.Header{}
		setIdentity(h, pgsession.Session{UserID: "u", FirstName: v}, "")
		if v != "" && h.Get("X-User-First-Name") != enc {
			t.Fatalf("X-User-First-Name = %q, want %q", h.Get("X-User-First-Name"), enc)
		}
	})
}
