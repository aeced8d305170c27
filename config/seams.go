package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/assertion"
)

// maxInvalidTokenRate keeps INVALID_TOKEN_RATE a rate a limit can mean.
const maxInvalidTokenRate = 1_000_000

// normalizeSeams cleans JWKS_PATH and the key list, and gives IDENTITY_JWT_AUDIENCE its
// default, the origin of UPSTREAM_URL.
func (c *Config) normalizeSeams() {
	c.JWKSPath = cleanAbsolute(c.JWKSPath)
	var keys []string
	for _, k := range c.IdentityJWTPreviousKeys {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	c.IdentityJWTPreviousKeys = keys
	if c.IdentityJWTAudience == "" && c.UpstreamURL != nil {
		c.IdentityJWTAudience = origin(c.UpstreamURL)
	}
}

// origin is scheme://host[:port] of u, without credentials or path.
func origin(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// validateSeams checks the limits and the signing keys. A key file that cannot be used is a
// configuration error, reported with the others before anything listens.
func (c *Config) validateSeams(p *problems) {
	p.check("INVALID_TOKEN_RATE", nonNegative(c.InvalidTokenRate))
	if c.InvalidTokenRate > maxInvalidTokenRate {
		p.check("INVALID_TOKEN_RATE", fmt.Errorf("%d is more than %d per second", c.InvalidTokenRate, maxInvalidTokenRate))
	}
	p.check("BODY_IDLE_TIMEOUT", nonNegative(c.BodyIdleTimeout))
	p.check("JWKS_PATH", checkAbsolute(c.JWKSPath))
	if c.JWKSPath == c.ValidatePath || c.JWKSPath == c.HealthPath {
		p.check("JWKS_PATH", errors.New("must differ from VALIDATE_PATH and HEALTH_PATH"))
	}
	p.check("IDENTITY_JWT_ISSUER", checkVisibleText(c.IdentityJWTIssuer))
	p.check("IDENTITY_JWT_AUDIENCE", checkVisibleText(c.IdentityJWTAudience))
	if c.IdentityJWTKey != "" {
		if _, err := assertion.LoadPrivateKey(c.IdentityJWTKey); err != nil {
			p.add("IDENTITY_JWT_KEY", "%v", err)
		}
	}
	for i, path := range c.IdentityJWTPreviousKeys {
		if _, err := assertion.LoadPublicKey(path); err != nil {
			p.add("IDENTITY_JWT_PREVIOUS_KEYS", "entry %d: %v", i+1, err)
		}
	}
	if c.IdentityJWTKey == "" && len(c.IdentityJWTPreviousKeys) > 0 {
		p.add("IDENTITY_JWT_PREVIOUS_KEYS", "set without IDENTITY_JWT_KEY; nothing would be signed")
	}
}

// checkVisibleText accepts text without control characters (spaces allowed).
func checkVisibleText(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("must not contain control characters")
	}
	return nil
}
