package e2e

// Signed identity (issue 12) against the built binary: the assertion the app receives is
// verified with the JWKS the binary serves, as an app would, and every claim is checked.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// writeKey writes blocks as a PEM file in dir and returns its path.
func writeKey(tb testing.TB, dir, name string, blocks ...*pem.Block) string {
	tb.Helper()
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// testKeys writes an Ed25519 key as PKCS#8 and a P-256 key as SEC 1 after its EC PARAMETERS
// (what `openssl ecparam -genkey` writes).
func testKeys(tb testing.TB) (ed25519Path, p256Path string) {
	tb.Helper()
	dir := tb.TempDir()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		tb.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		tb.Fatal(err)
	}
	params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // OID prime256v1
	return writeKey(tb, dir, "ed25519.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		writeKey(tb, dir, "p256.pem", &pem.Block{Type: "EC PARAMETERS", Bytes: params}, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
}

// jwk is one key of a JWKS, as an app reads it.
type jwk struct{ Kty, Crv, X, Y, Kid, Alg, Use, D string }

func fetchJWKS(tb testing.TB, sc *Sidecar, url string) []jwk {
	tb.Helper()
	r := sc.Do(tb, newRequest(tb, http.MethodGet, url, "", nil))
	var set struct{ Keys []jwk }
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &set) != nil || len(set.Keys) == 0 {
		tb.Fatalf("JWKS at %s: %d %q", url, r.Status, r.Body)
	}
	if ct, cc := r.Header.Get("Content-Type"), r.Header.Get("Cache-Control"); ct != "application/json" || cc != "public, max-age=300" {
		tb.Errorf("JWKS Content-Type %q, Cache-Control %q; want application/json, public, max-age=300", ct, cc)
	}
	return set.Keys
}

func b64d(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		tb.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

// thumbprint is RFC 7638's, computed here from the published members.
func thumbprint(k jwk) string {
	var members string
	switch k.Kty {
	case "OKP":
		members = fmt.Sprintf(`{"crv":"%s","kty":"OKP","x":"%s"}`, k.Crv, k.X)
	case "EC":
		members = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Crv, k.X, k.Y)
	}
	sum := sha256.Sum256([]byte(members))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// verifyJWT checks token's signature with the key of its kid in keys and returns its
// header and claims.
func verifyJWT(tb testing.TB, keys []jwk, token string) (map[string]string, map[string]any) {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("assertion %q is not a JWS", token)
	}
	var header map[string]string
	var claims map[string]any
	if json.Unmarshal(b64d(tb, parts[0]), &header) != nil || json.Unmarshal(b64d(tb, parts[1]), &claims) != nil {
		tb.Fatalf("assertion %q does not decode", token)
	}
	var key *jwk
	for i := range keys {
		if keys[i].Kid == header["kid"] {
			key = &keys[i]
		}
	}
	if key == nil {
		tb.Fatalf("kid %q is not in the JWKS", header["kid"])
	}
	if key.Kid != thumbprint(*key) || key.Use != "sig" || key.D != "" || key.Alg != header["alg"] {
		tb.Errorf("JWK %+v: kid is not its thumbprint %q, or not a public signing key for %s", *key, thumbprint(*key), header["alg"])
	}
	input, sig := []byte(parts[0]+"."+parts[1]), b64d(tb, parts[2])
	ok := false
	switch header["alg"] {
	case "EdDSA":
		ok = key.Crv == "Ed25519" && ed25519.Verify(b64d(tb, key.X), input, sig)
	case "ES256":
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, append(b64d(tb, key.X), b64d(tb, key.Y)...)...))
		digest := sha256.Sum256(input)
		ok = err == nil && len(sig) == 64 && ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	if !ok {
		tb.Fatalf("%s assertion does not verify with the published key", header["alg"])
	}
	return header, claims
}

func unix(v any) time.Time {
	f, _ := v.(float64)
	return time.Unix(int64(f), 0)
}

func TestSeamsIdentityAssertionVerifiesWithTheJWKS(t *testing.T) {
	t.Parallel()
	edPath, p256Path := testKeys(t)
	st := newStack(t)
	up := NewUpstream(t, nil)
	// "old" signs with the P-256 key; "cur" has rotated to Ed25519 and still publishes it.
	old := StartSidecar(t, st.env(up.URL, map[string]string{"IDENTITY_JWT_KEY": p256Path,
		"IDENTITY_JWT_ISSUER": "https://auth.example.test", "IDENTITY_JWT_AUDIENCE": "app-audience"}))
	cur := StartSidecar(t, st.env(up.URL, map[string]string{"IDENTITY_JWT_KEY": edPath, "IDENTITY_JWT_PREVIOUS_KEYS": p256Path}))

	userID := st.db.User(t, testenv.UserSpec{Email: "jose-" + fmt.Sprint(time.Now().UnixNano()) + "@example.test",
		FirstName: "José", LastName: "Müller", Username: "jose"})
	token, hash := st.db.Session(t, userID, testenv.SessionSpec{ExpiresIn: time.Hour})
	var sessionID, email string
	var expiresAt time.Time
	if err := st.db.Pool.QueryRow(context.Background(), `SELECT s.id::text, s.expires_at, u.email FROM platform.user_sessions s
		JOIN platform.users u ON u.id = s.user_id WHERE s.token_hash = $1`, hash).Scan(&sessionID, &expiresAt, &email); err != nil {
		t.Fatal(err)
	}

	keys := fetchJWKS(t, cur, cur.AdminURL+"/.well-known/jwks.json")
	public := fetchJWKS(t, cur, cur.URL+"/.well-known/authsidecar/jwks.json")
	if len(keys) != 2 || keys[0].Alg != "EdDSA" || keys[1].Alg != "ES256" || fmt.Sprint(keys) != fmt.Sprint(public) {
		t.Fatalf("JWKS: admin %+v, public %+v; want the Ed25519 key, then the previous P-256 one, on both", keys, public)
	}

	before := time.Now()
	if r := cur.Get(t, "/api/me", token); r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	got := up.Last(t).Header.Values("X-Auth-Assertion")
	if len(got) != 1 {
		t.Fatalf("the app received %d assertions", len(got))
	}
	header, claims := verifyJWT(t, keys, got[0])
	if header["alg"] != "EdDSA" || header["typ"] != "JWT" || header["kid"] != keys[0].Kid {
		t.Errorf("header %v", header)
	}
	want := map[string]any{"iss": "authsidecar", "aud": up.URL, "sub": userID, "sid": sessionID, "email": email,
		"name": "José Müller", "preferred_username": "jose"}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	iat, exp := unix(claims["iat"]), unix(claims["exp"])
	if iat.Before(before.Add(-time.Second)) || iat.After(time.Now()) || exp.Sub(iat) > 5*time.Minute || exp.Sub(iat) < 4*time.Minute {
		t.Errorf("iat %v, exp %v: want iat now and exp at most 5 minutes later", iat, exp)
	}

	// Reused for the next request of the session.
	cur.Get(t, "/api/me", token)
	if again := up.Last(t).Header.Get("X-Auth-Assertion"); again != got[0] {
		t.Errorf("the second request got a new assertion; want the first one reused")
	}

	// Signed before the rotation, by the old key: still verifies with the current JWKS.
	old.Get(t, "/api/me", token)
	header, claims = verifyJWT(t, keys, up.Last(t).Header.Get("X-Auth-Assertion"))
	if header["alg"] != "ES256" || claims["iss"] != "https://auth.example.test" || claims["aud"] != "app-audience" {
		t.Errorf("old key's assertion: header %v, claims %v", header, claims)
	}

	// A changed email reaches the app with a fresh assertion (the trigger evicts the cached
	// session; the new identity misses the assertion cache).
	if _, err := st.db.Pool.Exec(context.Background(), `UPDATE platform.users SET email = 'new-'||email WHERE id = $1`, userID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "an assertion with the new email", func() bool {
		cur.Get(t, "/api/me", token)
		_, c := verifyJWT(t, keys, up.Last(t).Header.Get("X-Auth-Assertion"))
		return c["email"] == "new-"+email
	})
}

func TestSeamsAssertionNeverOutlivesItsSession(t *testing.T) {
	t.Parallel()
	edPath, _ := testKeys(t)
	st := newStack(t)
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"IDENTITY_JWT_KEY": edPath, "PUBLIC_PATHS": "/login"}))
	token, hash, _ := st.session(t, testenv.SessionSpec{ExpiresIn: 90 * time.Second})
	var expiresAt time.Time
	if err := st.db.Pool.QueryRow(context.Background(), `SELECT expires_at FROM platform.user_sessions WHERE token_hash = $1`, hash).Scan(&expiresAt); err != nil {
		t.Fatal(err)
	}
	sc.Get(t, "/api/me", token)
	keys := fetchJWKS(t, sc, sc.AdminURL+"/.well-known/jwks.json")
	_, claims := verifyJWT(t, keys, up.Last(t).Header.Get("X-Auth-Assertion"))
	if exp := unix(claims["exp"]); exp.After(expiresAt) || exp.Before(expiresAt.Add(-time.Second)) {
		t.Errorf("exp %v for a session that expires at %v", exp, expiresAt)
	}
	// A public path carries none, whatever the client sends, with a session or without.
	for _, tok := range []string{"", token} {
		r := newRequest(t, http.MethodGet, sc.URL+"/login", tok, nil)
		r.Header["X-Auth-Assertion"] = []string{"forged"}
		r.Header["x_auth_assertion"] = []string{"forged"}
		sc.Do(t, r)
		for k, v := range up.Last(t).Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "x-auth-assertion") {
				t.Errorf("public path: the app received %s: %q", k, v)
			}
		}
	}
}

func TestSeamsBadKeyFilesExit2NamingTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec384)
	p384 := writeKey(t, dir, "p384.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	edPath, _ := testKeys(t)
	for _, tc := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"IDENTITY_JWT_KEY": filepath.Join(dir, "missing.pem")}, "IDENTITY_JWT_KEY"},
		{map[string]string{"IDENTITY_JWT_KEY": p384}, "IDENTITY_JWT_KEY"},
		{map[string]string{"IDENTITY_JWT_KEY": edPath, "IDENTITY_JWT_PREVIOUS_KEYS": edPath + "," + p384}, "IDENTITY_JWT_PREVIOUS_KEYS"},
	} {
		env := map[string]string{"UPSTREAM_URL": "http://127.0.0.1:1", "DATABASE_URL": "postgres://127.0.0.1:1/x"}
		for k, v := range tc.env {
			env[k] = v
		}
		code, _, stderr := runSidecar(t, env)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.name+": ") || strings.Contains(stderr, "BEGIN") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming %s", tc.env, code, stderr, tc.name)
		}
	}
}
