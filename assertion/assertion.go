// Package assertion signs the identity the sidecar forwards as a short-lived JWT (the
// X-Auth-Assertion header) and publishes the public keys as a JWKS, so an app that can be
// reached another way than through the sidecar can still tell a real identity from forged
// headers.
//
// A JWT is three base64url parts: a header (alg, kid, typ), the claims, and a signature over
// the first two. Ed25519 (alg EdDSA) and P-256 (alg ES256, the signature being r||s, 64
// bytes) are all it needs, so the standard library does the work. Signing costs tens of
// microseconds, so an assertion is reused for its session until shortly before it expires
// (cache.go); a changed identity field misses the cache and gets a fresh one.
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
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxTTL is the longest lifetime of an assertion.
const MaxTTL = 5 * time.Minute

// Options configures a Signer.
type Options struct {
	// Key signs: an ed25519.PrivateKey or an *ecdsa.PrivateKey on P-256.
	Key crypto.Signer
	// Previous are public keys published in the JWKS but no longer used to sign, so that
	// assertions signed before a rotation still verify.
	Previous []crypto.PublicKey
	// Issuer and Audience become the iss and aud claims.
	Issuer, Audience string
	// TTL is an assertion's lifetime, at most MaxTTL (also the default); it never outlives
	// the session.
	TTL time.Duration
	// CacheSize is the most signed assertions kept for reuse; 0 signs every request.
	CacheSize int
}

// Identity is what an assertion says: the session and its user.
type Identity struct {
	UserID, SessionID                    string
	Email, FirstName, LastName, Username string
	// SessionExpiresAt caps the assertion's exp.
	SessionExpiresAt time.Time
}

// Signer signs assertions with one key and serves the JWKS of it and the previous keys.
type Signer struct {
	key      crypto.Signer
	alg      string
	header   string // base64url of the JOSE header, with the key's kid
	issuer   string
	audience string
	ttl      time.Duration
	cache    *cache // nil when reuse is off
	jwks     []byte
}

// New returns a Signer, or an error if a key is of a kind it cannot sign with or publish.
func New(o Options) (*Signer, error) {
	if o.Key == nil {
		return nil, errors.New("assertion: no signing key")
	}
	if o.TTL <= 0 || o.TTL > MaxTTL {
		o.TTL = MaxTTL
	}
	cur, err := newJWK(o.Key.Public())
	if err != nil {
		return nil, err
	}
	keys := []jwk{cur}
	for _, pub := range o.Previous {
		k, err := newJWK(pub)
		if err != nil {
			return nil, err
		}
		if k.Kid != cur.Kid && !containsKid(keys, k.Kid) {
			keys = append(keys, k)
		}
	}
	jwks, err := json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{keys})
	if err != nil {
		return nil, fmt.Errorf("assertion: encode JWKS: %w", err)
	}
	head, _ := json.Marshal(struct { // strings only: never fails
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{cur.Alg, cur.Kid, "JWT"})
	s := &Signer{
		key: o.Key, alg: cur.Alg, header: b64(head), issuer: o.Issuer, audience: o.Audience,
		ttl: o.TTL, jwks: append(jwks, '\n'),
	}
	if o.CacheSize > 0 {
		s.cache = newCache(o.CacheSize)
	}
	return s, nil
}

func containsKid(keys []jwk, kid string) bool {
	for _, k := range keys {
		if k.Kid == kid {
			return true
		}
	}
	return false
}

// Assertion returns a JWT stating id, signed at now or earlier: one signed for the same
// session and the same identity is reused until four fifths of its lifetime have passed.
func (s *Signer) Assertion(id Identity, now time.Time) (string, error) {
	k := cacheKeyOf(id)
	if s.cache != nil {
		if tok, ok := s.cache.get(k, now.Unix()); ok {
			return tok, nil
		}
	}
	iat := now.Unix()
	exp := min(now.Add(s.ttl).Unix(), id.SessionExpiresAt.Unix())
	tok, err := s.sign(id, iat, exp)
	if err != nil {
		return "", err
	}
	if s.cache != nil {
		s.cache.put(k, tok, iat+(exp-iat)*4/5, iat)
	}
	return tok, nil
}

// claims are the assertion's payload. iss, aud, sub, iat and exp are RFC 7519's; sid,
// email, name and preferred_username are OpenID Connect's.
type claims struct {
	Iss               string `json:"iss"`
	Aud               string `json:"aud"`
	Sub               string `json:"sub"`
	Sid               string `json:"sid"`
	Email             string `json:"email,omitempty"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Iat               int64  `json:"iat"`
	Exp               int64  `json:"exp"`
}

func (s *Signer) sign(id Identity, iat, exp int64) (string, error) {
	payload, err := json.Marshal(claims{
		Iss: s.issuer, Aud: s.audience, Sub: id.UserID, Sid: id.SessionID, Email: id.Email,
		Name:              strings.TrimSpace(id.FirstName + " " + id.LastName),
		PreferredUsername: id.Username, Iat: iat, Exp: exp,
	})
	if err != nil {
		return "", fmt.Errorf("assertion: encode claims: %w", err)
	}
	input := s.header + "." + b64(payload)
	var sig []byte
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case *ecdsa.PrivateKey:
		digest := sha256.Sum256([]byte(input))
		r, ss, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return "", fmt.Errorf("assertion: sign: %w", err)
		}
		sig = make([]byte, 64) // JWS ES256: r and s, 32 big-endian bytes each (RFC 7518 §3.4)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	default:
		return "", fmt.Errorf("assertion: cannot sign with a %T", s.key)
	}
	return input + "." + b64(sig), nil
}

// JWKS returns the JSON Web Key Set document: the signing key first, then the previous
// keys.
func (s *Signer) JWKS() []byte { return s.jwks }

// jwk is one public key of the JWKS (RFC 7517), with its RFC 7638 thumbprint as kid.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

func newJWK(pub crypto.PublicKey) (jwk, error) {
	var k jwk
	switch p := pub.(type) {
	case ed25519.PublicKey:
		k = jwk{Kty: "OKP", Crv: "Ed25519", X: b64(p), Alg: "EdDSA"}
		k.Kid = thumbprint(fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, k.X))
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return jwk{}, errors.New("assertion: only the P-256 curve is supported for ECDSA")
		}
		raw, err := p.Bytes() // 0x04 || X || Y
		if err != nil {
			return jwk{}, fmt.Errorf("assertion: public key: %w", err)
		}
		k = jwk{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:]), Alg: "ES256"}
		k.Kid = thumbprint(fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, k.X, k.Y))
	default:
		return jwk{}, fmt.Errorf("assertion: a %T key is not supported; use Ed25519 or P-256", pub)
	}
	k.Use = "sig"
	return k, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of the required members, given in lexical
// order without whitespace: base64url(SHA-256).
func thumbprint(members string) string {
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
