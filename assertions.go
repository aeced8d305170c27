package main

import (
	"crypto"
	"fmt"
	"net/http"

	"github.com/authsidecar/authsidecar/assertion"
	"github.com/authsidecar/authsidecar/config"
)

// newAssertions builds the signer of X-Auth-Assertion from IDENTITY_JWT_*, or nil without
// IDENTITY_JWT_KEY. It keeps a signed assertion for as many sessions as the in-process
// cache holds. config.Load has checked the key files; one that changed since is a
// configuration error all the same.
func newAssertions(cfg config.Config) (*assertion.Signer, error) {
	if cfg.IdentityJWTKey == "" {
		return nil, nil
	}
	key, err := assertion.LoadPrivateKey(cfg.IdentityJWTKey)
	if err != nil {
		return nil, usageError{err: fmt.Errorf("IDENTITY_JWT_KEY: %w", err)}
	}
	var previous []crypto.PublicKey
	for i, path := range cfg.IdentityJWTPreviousKeys {
		pub, err := assertion.LoadPublicKey(path)
		if err != nil {
			return nil, usageError{err: fmt.Errorf("IDENTITY_JWT_PREVIOUS_KEYS: entry %d: %w", i+1, err)}
		}
		previous = append(previous, pub)
	}
	s, err := assertion.New(assertion.Options{
		Key: key, Previous: previous, Issuer: cfg.IdentityJWTIssuer, Audience: cfg.IdentityJWTAudience,
		CacheSize: cfg.LocalCacheSize,
	})
	if err != nil {
		return nil, usageError{err: fmt.Errorf("IDENTITY_JWT_KEY: %w", err)}
	}
	return s, nil
}

// jwksHandler serves the signer's JWKS on the admin listener; nil without a signer.
func jwksHandler(s *assertion.Signer) http.Handler {
	if s == nil {
		return nil
	}
	return http.HandlerFunc(s.ServeJWKS)
}
