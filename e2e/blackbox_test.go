package e2e

// Black-box tests of the SPEC's public listener rules against the built binary, real Redis
// and real Postgres: header stripping, token extraction, the sidecar's own paths, public
// paths and dot-segments, and the error answers.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// standard starts a stack, a recording upstream and a sidecar with public paths /login and
// /_next/static and the session cookie "sid".
func standard(t *testing.T, overrides map[string]string) (*stack, *Upstream, *Sidecar) {
	t.Helper()
	st := newStack(t)
	up := NewUpstream(t, nil)
	env := map[string]string{"PUBLIC_PATHS": "/login,/_next/static", "SESSION_COOKIE": "sid"}
	for k, v := range overrides {
		env[k] = v
	}
	return st, up, StartSidecar(t, st.env(up.URL, env))
}

// assertJSONError checks an error answer: status, exact JSON body, no-store.
func assertJSONError(t *testing.T, r Response, status int, msg string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %q", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.Body, err)
	}
	if want := map[string]any{"error": msg}; !reflect.DeepEqual(got, want) {
		t.Errorf("body %v, want %v", got, want)
	}
}

func assertUnauthorized(t *testing.T, r Response) {
	t.Helper()
	assertJSONError(t, r, http.StatusUnauthorized, "unauthorized")
	if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("WWW-Authenticate %q, want Bearer", got)
	}
}

var spoofHeaders = []string{"X-User-Id", "x_user_id", "X-SESSION-ID", "X-Auth-Signature", "X-User-Foo",
	"x-user-email", "X_Session_Expires_At", "x_auth_signature"}

func TestBlackboxSpoofedIdentityHeadersAreStripped(t *testing.T) {
	t.Parallel()
	st, up, sc := standard(t, nil)
	token, _, userID := st.session(t, testenv.SessionSpec{})
	for _, tc := range []struct{ name, path, token string }{
		{"public path", "/login", ""},
		{"public subtree", "/_next/static/chunk.js", ""},
		{"protected path", "/api/me", token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, sc.URL+tc.path, tc.token, nil)
			for _, h := range spoofHeaders {
				req.Header[h] = []string{"spoofed"} // as sent, not canonicalised
			}
			req.Header.Set("X-Userid", "kept") // not an identity header: no "x-user-" prefix
			if r := sc.Do(t, req); r.Status != http.StatusOK {
				t.Fatalf("status %d, body %q", r.Status, r.Body)
			}
			got := up.Last(t).Header
			for name, vals := range got {
				if strings.Contains(strings.Join(vals, ","), "spoofed") {
					t.Errorf("upstream received spoofed header %s: %q", name, vals)
				}
			}
			if got.Get("X-Userid") != "kept" {
				t.Errorf("X-Userid was stripped too: %q", got.Get("X-Userid"))
			}
		})
	}
	if got := up.Last(t).Header.Get("X-User-Id"); got != userID {
		t.Errorf("protected path: X-User-Id %q, want the session's user %q", got, userID)
	}
}

func TestBlackboxTokenSources(t *testing.T) {
	t.Parallel()
	st, up, sc := standard(t, nil)
	token, _, userID := st.session(t, testenv.SessionSpec{})
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"bearer", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"bearer lower-case", map[string]string{"Authorization": "bearer " + token}, 200},
		{"bearer upper-case", map[string]string{"Authorization": "BEARER " + token}, 200},
		{"bearer mixed case", map[string]string{"Authorization": "bEaReR " + token}, 200},
		{"cookie", map[string]string{"Cookie": "theme=dark; sid=" + token + "; other=1"}, 200},
		{"basic auth does not stop the cookie", map[string]string{"Authorization": "Basic dXNlcjpwYXNz", "Cookie": "sid=" + token}, 200},
		{"bearer wins over cookie", map[string]string{"Authorization": "Bearer " + token, "Cookie": "sid=wrong-token"}, 200},
		{"invalid bearer is not rescued by cookie", map[string]string{"Authorization": "Bearer wrong-token", "Cookie": "sid=" + token}, 401},
		{"other cookie name", map[string]string{"Cookie": "session=" + token}, 401},
		{"no token", map[string]string{}, 401},
		{"basic auth alone", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, 401},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.Count()
			req := newRequest(t, http.MethodGet, sc.URL+"/api/me", "", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			r := sc.Do(t, req)
			if r.Status != tc.want {
				t.Fatalf("status %d, want %d; body %q", r.Status, tc.want, r.Body)
			}
			reached := map[bool]int{true: 1, false: 0}[tc.want == 200]
			if got := up.Count() - before; got != reached {
				t.Fatalf("upstream received %d requests, want %d", got, reached)
			}
		})
	}
	for _, got := range up.Requests() {
		if got.Header.Get("X-User-Id") != userID {
			t.Errorf("upstream received X-User-Id %q, want %q", got.Header.Get("X-User-Id"), userID)
		}
	}
}

func TestBlackboxMalformedTokensAreRefusedWithoutLookup(t *testing.T) {
	t.Parallel()
	st, up, sc := standard(t, nil)
	for _, tc := range []struct {
		name, token string
		viaCookie   bool
	}{
		{"4097 bytes", strings.Repeat("a", 4097), false},
		{"4097 bytes in the cookie", strings.Repeat("b", 4097), true},
		{"non-ASCII byte", "tok\xe9n-" + strconv.Itoa(1), false},
		{"non-ASCII in the cookie", "caf\xc3\xa9-token", true},
		{"inner tab", "tok\ten", false},
		{"inner space", "tok en", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, sc.URL+"/api/me", "", nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			if tc.viaCookie {
				req.Header = http.Header{"Cookie": {"sid=" + tc.token}}
			}
			assertUnauthorized(t, sc.Do(t, req))
			// A lookup would have left a negative entry behind.
			if n := st.rdb.Exists(context.Background(), st.negKey(testenv.Hash(tc.token))).Val(); n != 0 {
				t.Errorf("a negative entry exists: the malformed token was looked up")
			}
		})
	}
	// The boundary: 4096 bytes is a well-formed (unknown) token and is looked up.
	long := strings.Repeat("c", 4096)
	assertUnauthorized(t, sc.Get(t, "/api/me", long))
	eventually(t, 2*time.Second, "negative entry for a 4096-byte token", func() bool {
		return st.rdb.Exists(context.Background(), st.negKey(testenv.Hash(long))).Val() == 1
	})
	if n := up.Count(); n != 0 {
		t.Errorf("upstream received %d requests, want 0", n)
	}
}

var rfc3339Seconds = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

func TestBlackboxValidatePath(t *testing.T) {
	t.Parallel()
	st, up, sc := standard(t, nil)
	userID := st.db.User(t, testenv.UserSpec{Email: "jose@example.test", FirstName: "José", LastName: "Núñez",
		Username: "jose", AvatarURL: "https://cdn.example.test/a.png"})
	lastActive := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	token, _ := st.db.Session(t, userID, testenv.SessionSpec{IPAddress: "203.0.113.9", UserAgent: "Mozilla/5.0", LastActivityAt: lastActive})
	bare, _ := st.db.Session(t, st.db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})

	r := sc.Get(t, "/api/auth/validate", token)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q, body %q", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	wantKeys := map[string][]string{
		"session": {"createdAt", "expiresAt", "id", "ipAddress", "lastActivityAt", "userAgent", "userId"},
		"user":    {"avatarUrl", "email", "firstName", "id", "lastName", "username"},
	}
	if len(doc) != len(wantKeys) {
		t.Errorf("top-level keys %v, want session and user", doc)
	}
	for obj, keys := range wantKeys {
		if got := sortedKeys(doc[obj]); !reflect.DeepEqual(got, keys) {
			t.Errorf("%s keys %v, want %v", obj, got, keys)
		}
	}
	s, u := doc["session"], doc["user"]
	for _, k := range []string{"createdAt", "expiresAt", "lastActivityAt"} {
		if v, _ := s[k].(string); !rfc3339Seconds.MatchString(v) {
			t.Errorf("session.%s %q is not RFC 3339 (UTC, seconds)", k, v)
		}
	}
	want := map[string]any{"userId": userID, "ipAddress": "203.0.113.9", "userAgent": "Mozilla/5.0",
		"lastActivityAt": lastActive.Format(time.RFC3339)}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("session.%s = %v, want %v", k, s[k], v)
		}
	}
	wantUser := map[string]any{"id": userID, "email": "jose@example.test", "firstName": "José", "lastName": "Núñez",
		"username": "jose", "avatarUrl": "https://cdn.example.test/a.png"}
	if !reflect.DeepEqual(u, wantUser) {
		t.Errorf("user %v, want %v", u, wantUser)
	}
	for k, v := range map[string]string{"X-User-Id": userID, "X-User-Email": "jose@example.test",
		"X-User-First-Name": "Jos%C3%A9", "X-User-Last-Name": "N%C3%BA%C3%B1ez", "X-User-Username": "jose",
		"X-Session-Id": s["id"].(string), "X-Session-Expires-At": s["expiresAt"].(string)} {
		if got := r.Header.Get(k); got != v {
			t.Errorf("response header %s = %q, want %q", k, got, v)
		}
	}

	// NULL columns are JSON null, not "".
	r = sc.Get(t, "/api/auth/validate", bare)
	if r.Status != http.StatusOK || !strings.Contains(r.Body, `"lastActivityAt":null`) || !strings.Contains(r.Body, `"avatarUrl":null`) {
		t.Errorf("session with NULL columns: status %d, body %s", r.Status, r.Body)
	}
	assertUnauthorized(t, sc.Get(t, "/api/auth/validate", ""))
	assertUnauthorized(t, sc.Get(t, "/api/auth/validate", "not-a-session"))
	if n := up.Count(); n != 0 {
		t.Errorf("VALIDATE_PATH reached the upstream %d times", n)
	}
	st.remember(token, bare)
	st.assertNoRawTokens(t, sc)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys { // tiny: insertion sort keeps the import list short
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func TestBlackboxValidatePathUndecidableIs503(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	fwd := testenv.NewForwarder(t, hostOf(t, st.db.URL))
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"DATABASE_URL": st.db.URLVia(fwd.Addr())}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	fwd.Cut()
	r := sc.Get(t, "/api/auth/validate", token)
	assertJSONError(t, r, http.StatusServiceUnavailable, "session store unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	fwd.Restore()
	eventually(t, 5*time.Second, "validate answers 200 after Postgres is back", func() bool {
		return sc.Get(t, "/api/auth/validate", token).Status == http.StatusOK
	})
}

func TestBlackboxHealthPath(t *testing.T) {
	t.Parallel()
	_, up, sc := standard(t, nil)
	r := sc.Get(t, "/api/health/redis", "")
	var doc struct{ Status string }
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil || r.Status != http.StatusOK || doc.Status != "healthy" {
		t.Fatalf("health: status %d, body %s (%v)", r.Status, r.Body, err)
	}
	if up.Count() != 0 {
		t.Errorf("HEALTH_PATH reached the upstream")
	}
}

func TestBlackboxPublicPathsAndDotSegments(t *testing.T) {
	t.Parallel()
	_, up, sc := standard(t, nil)
	for _, tc := range []struct {
		name, uri string
		forwarded string // the path the app receives; "" when it must not be reached
	}{
		{"public path itself", "/login", "/login"},
		{"public subtree", "/login/x", "/login/x"},
		{"public subtree with query", "/login/x?next=/api", "/login/x?next=/api"},
		{"sibling prefix is not public", "/login2", ""},
		{"dot-segment escape", "/login/../api/secret", ""},
		{"encoded dot-segment escape", "/_next/static/%2e%2e/api", ""},
		{"encoded slash escape", "/login%2F..%2Fapi", ""},
		{"double-dot past root", "/login/../../api", ""},
		{"public path resolved", "/login/a/../b", "/login/b"},
		{"protected prefix resolved into public", "/api/../login", "/login"},
		{"encoded dots resolved into public", "/api/%2e%2e/_next/static/x.js", "/_next/static/x.js"},
		{"repeated slashes", "//login//x", "/login/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.Count()
			r := rawGet(t, sc, tc.uri)
			if tc.forwarded == "" {
				assertUnauthorized(t, r)
				if up.Count() != before {
					t.Fatalf("the app was reached")
				}
				return
			}
			if r.Status != http.StatusOK {
				t.Fatalf("status %d, body %q", r.Status, r.Body)
			}
			got := up.Last(t)
			if got.RequestURI != tc.forwarded {
				t.Errorf("app received %q, want %q", got.RequestURI, tc.forwarded)
			}
			if got.Header.Get("X-User-Id") != "" {
				t.Errorf("public path got identity headers")
			}
		})
	}
}

// rawGet sends GET with uri exactly as written (the Go client would resolve nothing, but
// url.Parse would decode %2F).
func rawGet(t *testing.T, sc *Sidecar, uri string) Response {
	t.Helper()
	req := newRequest(t, http.MethodGet, sc.URL+"/", "", nil)
	req.URL.Opaque = "//" + req.URL.Host + uri
	if path, query, ok := strings.Cut(uri, "?"); ok {
		req.URL.Opaque, req.URL.RawQuery = "//"+req.URL.Host+path, query
	}
	return sc.Do(t, req)
}

func TestBlackboxRefusedTokensNeverReachTheApp(t *testing.T) {
	t.Parallel()
	st, up, sc := standard(t, nil)
	expired, _, _ := st.session(t, testenv.SessionSpec{ExpiresIn: -time.Minute})
	revoked, _, _ := st.session(t, testenv.SessionSpec{Revoked: true})
	revokedLater, hash, _ := st.session(t, testenv.SessionSpec{})
	if r := sc.Get(t, "/api/x", revokedLater); r.Status != http.StatusOK {
		t.Fatalf("before revocation: %d", r.Status)
	}
	st.db.Revoke(t, hash)
	eventually(t, 2*time.Second, "revocation takes effect", func() bool {
		return sc.Get(t, "/api/auth/validate", revokedLater).Status == http.StatusUnauthorized
	})
	before := up.Count()
	for _, tc := range []struct{ name, token string }{
		{"expired", expired}, {"revoked", revoked}, {"revoked while cached", revokedLater},
		{"unknown", "never-issued-token"}, {"missing", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
				assertUnauthorized(t, sc.Do(t, newRequest(t, method, sc.URL+"/api/data", tc.token, strings.NewReader("body"))))
			}
		})
	}
	if n := up.Count() - before; n != 0 {
		t.Errorf("the app received %d refused requests", n)
	}
}

func TestBlackboxUpstreamDownIs502(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	dead := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	sc := StartSidecar(t, st.env(dead, map[string]string{"PUBLIC_PATHS": "/login"}))
	token, _, _ := st.session(t, testenv.SessionSpec{})
	assertJSONError(t, sc.Get(t, "/api/me", token), http.StatusBadGateway, "bad gateway")
	assertJSONError(t, sc.Get(t, "/login", ""), http.StatusBadGateway, "bad gateway")
	assertUnauthorized(t, sc.Get(t, "/api/me", "unknown"))
}

func hostOf(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	return u.Host
}
