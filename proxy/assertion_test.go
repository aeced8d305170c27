package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/assertion"
)

func newTestSigner(tb testing.TB) *assertion.Signer {
	tb.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := assertion.New(assertion.Options{Key: key, Issuer: "authsidecar", Audience: "http://app", CacheSize: 100})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// verifyEdDSA checks token against the JWKS document and returns its claims.
func verifyEdDSA(tb testing.TB, jwks []byte, token string) map[string]any {
	tb.Helper()
	parts := strings.Split(token, ".")
	var set struct{ Keys []struct{ X, Kid string } }
	if len(parts) != 3 || json.Unmarshal(jwks, &set) != nil || len(set.Keys) == 0 {
		tb.Fatalf("token %q or JWKS %s unusable", token, jwks)
	}
	x, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(x, []byte(parts[0]+"."+parts[1]), sig) {
		tb.Fatalf("assertion does not verify")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		tb.Fatal(err)
	}
	return claims
}

func TestAuthenticatedRequestsCarryASignedAssertion(t *testing.T) {
	app := newUpstream(t, nil)
	signer := newTestSigner(t)
	srv, _ := newTestProxy(t, app, func(o *Options) {
		o.Assertions, o.JWKSPath = signer, "/.well-known/authsidecar/jwks.json"
	})
	forged := http.Header{"X-Auth-Assertion": {"eyJhbGciOiJub25lIn0.e30."}, "X_Auth_Assertion": {"x"}}

	// Public path: the client's assertion is dropped and none is added.
	do(t, "GET", srv.URL+"/login", forged)
	if got := app.last(t).Header; got.Get("X-Auth-Assertion") != "" || got.Get("X_Auth_Assertion") != "" {
		t.Fatalf("public path: the app saw an assertion: %v", got)
	}
	// Protected path: the sidecar's own, verifiable with the JWKS it serves without a token.
	forged.Set("Authorization", "Bearer good")
	do(t, "GET", srv.URL+"/dashboard", forged)
	tok := app.last(t).Header.Values("X-Auth-Assertion")
	resp := do(t, "GET", srv.URL+"/.well-known/authsidecar/jwks.json", nil)
	jwks, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(tok) != 1 {
		t.Fatalf("JWKS %d, assertions %q", resp.StatusCode, tok)
	}
	claims := verifyEdDSA(t, jwks, tok[0])
	if claims["sub"] != jose.UserID || claims["sid"] != jose.ID || claims["name"] != "José Müller" {
		t.Errorf("claims %v", claims)
	}
	// VALIDATE_PATH hands it out too, for auth_request and forwardAuth setups.
	v := do(t, "GET", srv.URL+"/api/auth/validate", http.Header{"Authorization": {"Bearer good"}})
	verifyEdDSA(t, jwks, v.Header.Get("X-Auth-Assertion"))
	if app.count() != 2 {
		t.Errorf("the app saw %d requests, want 2 (JWKS and validate are the sidecar's)", app.count())
	}
}

func TestJWKSPathIsTheAppsWithoutAKey(t *testing.T) {
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, func(o *Options) { o.JWKSPath = "/.well-known/authsidecar/jwks.json" })
	if resp := do(t, "GET", srv.URL+"/.well-known/authsidecar/jwks.json", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("JWKS path without IDENTITY_JWT_KEY: %d, want 401 like any protected path", resp.StatusCode)
	}
}
