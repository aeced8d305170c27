package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

var jose = Identity{
	UserID: "11111111-1111-1111-1111-111111111111", SessionID: "22222222-2222-2222-2222-222222222222",
	Email: "jose@example.com", FirstName: "José", LastName: "Müller", Username: "jm",
	SessionExpiresAt: t0.Add(24 * time.Hour),
}

func newEd25519(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newP256(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newSigner(tb testing.TB, o Options) *Signer {
	tb.Helper()
	if o.Issuer == "" {
		o.Issuer, o.Audience = "authsidecar", "http://app:3000"
	}
	s, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// verified is a JWT checked against a JWKS the way an app does it: header, kid lookup,
// signature with the published key.
type verified struct {
	header map[string]string
	claims map[string]any
}

func verify(tb testing.TB, jwks []byte, token string) verified {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts", len(parts))
	}
	var v verified
	decodeJSON(tb, parts[0], &v.header)
	decodeJSON(tb, parts[1], &v.claims)
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal(jwks, &set); err != nil {
		tb.Fatalf("JWKS %s: %v", jwks, err)
	}
	var key map[string]string
	for _, k := range set.Keys {
		if k["kid"] == v.header["kid"] {
			key = k
		}
	}
	if key == nil {
		tb.Fatalf("kid %q not in the JWKS %s", v.header["kid"], jwks)
	}
	if key["alg"] != v.header["alg"] {
		tb.Fatalf("JWK alg %q, token alg %q", key["alg"], v.header["alg"])
	}
	sig := unb64(tb, parts[2])
	input := []byte(parts[0] + "." + parts[1])
	if !verifySignature(tb, key, input, sig) {
		tb.Fatalf("signature does not verify with the published key")
	}
	return v
}

func verifySignature(tb testing.TB, key map[string]string, input, sig []byte) bool {
	tb.Helper()
	switch key["alg"] {
	case "EdDSA":
		return ed25519.Verify(ed25519.PublicKey(unb64(tb, key["x"])), input, sig)
	case "ES256":
		raw := append([]byte{4}, append(unb64(tb, key["x"]), unb64(tb, key["y"])...)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil || len(sig) != 64 {
			tb.Fatalf("ES256 key %v (%v) or signature of %d bytes", key, err, len(sig))
		}
		digest := sha256.Sum256(input)
		return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	tb.Fatalf("unknown alg %q", key["alg"])
	return false
}

func decodeJSON(tb testing.TB, part string, v any) {
	tb.Helper()
	if err := json.Unmarshal(unb64(tb, part), v); err != nil {
		tb.Fatalf("part %q: %v", part, err)
	}
}

func unb64(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		tb.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

func TestAssertionVerifiesWithTheJWKSAndStatesTheIdentity(t *testing.T) {
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{"EdDSA", newEd25519(t)}, {"ES256", newP256(t)}} {
		t.Run(tc.alg, func(t *testing.T) {
			s := newSigner(t, Options{Key: tc.key})
			tok, err := s.Assertion(jose, t0)
			if err != nil {
				t.Fatal(err)
			}
			v := verify(t, s.JWKS(), tok)
			if v.header["alg"] != tc.alg || v.header["typ"] != "JWT" || v.header["kid"] == "" {
				t.Errorf("header %v", v.header)
			}
			want := map[string]any{
				"iss": "authsidecar", "aud": "http://app:3000", "sub": jose.UserID, "sid": jose.SessionID,
				"email": "jose@example.com", "name": "José Müller", "preferred_username": "jm",
				"iat": float64(t0.Unix()), "exp": float64(t0.Add(5 * time.Minute).Unix()),
			}
			for k, w := range want {
				if v.claims[k] != w {
					t.Errorf("claim %s = %v, want %v", k, v.claims[k], w)
				}
			}
			if len(v.claims) != len(want) {
				t.Errorf("claims %v, want exactly %v", v.claims, want)
			}
		})
	}
}

func TestAssertionNeverOutlivesItsSession(t *testing.T) {
	s := newSigner(t, Options{Key: newEd25519(t)})
	id := jose
	id.SessionExpiresAt = t0.Add(90 * time.Second)
	tok, _ := s.Assertion(id, t0)
	if exp := verify(t, s.JWKS(), tok).claims["exp"]; exp != float64(id.SessionExpiresAt.Unix()) {
		t.Fatalf("exp %v, want the session's expiry %d", exp, id.SessionExpiresAt.Unix())
	}
}

func TestEmptyIdentityFieldsAreOmitted(t *testing.T) {
	s := newSigner(t, Options{Key: newEd25519(t)})
	tok, _ := s.Assertion(Identity{UserID: "u", SessionID: "s", SessionExpiresAt: t0.Add(time.Hour)}, t0)
	c := verify(t, s.JWKS(), tok).claims
	for _, k := range []string{"email", "name", "preferred_username"} {
		if _, ok := c[k]; ok {
			t.Errorf("empty %s sent: %v", k, c)
		}
	}
	id := Identity{UserID: "u", SessionID: "s", LastName: "Müller", SessionExpiresAt: t0.Add(time.Hour)}
	tok, _ = s.Assertion(id, t0)
	if name := verify(t, s.JWKS(), tok).claims["name"]; name != "Müller" {
		t.Errorf("name of a user with only a last name = %q", name)
	}
}

func TestAssertionIsReusedUntilShortlyBeforeItExpires(t *testing.T) {
	s := newSigner(t, Options{Key: newEd25519(t), CacheSize: 100})
	first, _ := s.Assertion(jose, t0)
	cases := []struct {
		name  string
		id    Identity
		at    time.Time
		fresh bool
	}{
		{"same session a minute later", jose, t0.Add(time.Minute), false},
		{"just before four fifths of its life", jose, t0.Add(4*time.Minute - time.Second), false},
		{"at four fifths of its life", jose, t0.Add(4 * time.Minute), true},
		{"email changed", func() Identity { id := jose; id.Email = "new@example.com"; return id }(), t0.Add(time.Second), true},
		{"name changed", func() Identity { id := jose; id.FirstName = "Josée"; return id }(), t0.Add(time.Second), true},
		{"session extended", func() Identity { id := jose; id.SessionExpiresAt = t0.Add(48 * time.Hour); return id }(), t0.Add(time.Second), true},
		{"clock went back", jose, t0.Add(-time.Minute), true},
	}
	for _, tc := range cases {
		s.cache = newCache(100)
		s.cache.put(cacheKeyOf(jose), first, t0.Add(4*time.Minute).Unix(), t0.Unix())
		got, err := s.Assertion(tc.id, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if (got != first) != tc.fresh {
			t.Errorf("%s: fresh = %v, want %v", tc.name, got != first, tc.fresh)
		}
		if c := verify(t, s.JWKS(), got).claims; tc.fresh && c["iat"] != float64(tc.at.Unix()) {
			t.Errorf("%s: iat %v, want %d", tc.name, c["iat"], tc.at.Unix())
		}
	}
}

func TestAssertionCacheIsBounded(t *testing.T) {
	s := newSigner(t, Options{Key: newEd25519(t), CacheSize: 64})
	for i := range 1000 {
		id := jose
		id.SessionID = strings.Repeat("x", i%7) + time.Duration(i).String()
		if _, err := s.Assertion(id, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.len(); n > 64 || n < 32 {
		t.Fatalf("cache holds %d assertions, want at most 64 (and not emptied)", n)
	}
}

func TestNoReuseWithoutACache(t *testing.T) {
	s := newSigner(t, Options{Key: newP256(t)})
	a, _ := s.Assertion(jose, t0)
	b, _ := s.Assertion(jose, t0)
	if a == b { // ECDSA signatures are randomised: equal tokens mean one was reused
		t.Fatal("an assertion was reused with CacheSize 0")
	}
}

func TestJWKSPublishesPreviousKeysAfterTheCurrentOne(t *testing.T) {
	cur, old1, old2 := newEd25519(t), newP256(t), newEd25519(t)
	s := newSigner(t, Options{Key: cur, Previous: []crypto.PublicKey{old1.Public(), old2.Public(), cur.Public(), old1.Public()}})
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("JWKS has %d keys, want 3 (duplicates dropped): %s", len(set.Keys), s.JWKS())
	}
	if set.Keys[0]["alg"] != "EdDSA" || set.Keys[1]["alg"] != "ES256" || set.Keys[1]["crv"] != "P-256" || set.Keys[1]["y"] == "" {
		t.Errorf("keys %v", set.Keys)
	}
	for _, k := range set.Keys {
		if k["use"] != "sig" || k["kid"] == "" || k["d"] != "" {
			t.Errorf("key %v", k)
		}
	}
	// An assertion signed by the old key (before the rotation) still verifies.
	old := newSigner(t, Options{Key: old1})
	tok, _ := old.Assertion(jose, t0)
	verify(t, s.JWKS(), tok)
}

// RFC 8037 Appendix A.3: the thumbprint of its Ed25519 example key.
func TestKidIsTheRFC7638Thumbprint(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	k, err := newJWK(ed25519.PublicKey(x))
	if err != nil {
		t.Fatal(err)
	}
	if k.Kid != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("kid %q", k.Kid)
	}
}

func TestOnlyEd25519AndP256AreAccepted(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := New(Options{Key: p384}); err == nil {
		t.Error("a P-384 key was accepted")
	}
	if _, err := New(Options{Key: newEd25519(t), Previous: []crypto.PublicKey{p384.Public()}}); err == nil {
		t.Error("a P-384 previous key was accepted")
	}
	if _, err := New(Options{}); err == nil {
		t.Error("no key was accepted")
	}
}
