package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

// LoadPrivateKey reads a PEM file holding an Ed25519 or P-256 private key, PKCS#8
// ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY", as `openssl ecparam -genkey` writes it,
// EC PARAMETERS block included). Errors are one line: the file, then what is wrong, never
// the key's bytes.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	k, err := loadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	return k, nil
}

func loadPrivateKey(path string) (crypto.Signer, error) {
	blocks, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	for _, b := range blocks {
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, errors.New("PRIVATE KEY block is not valid PKCS#8")
			}
			return checkPrivate(k)
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			if err != nil {
				return nil, errors.New("EC PRIVATE KEY block is not a valid SEC 1 key")
			}
			return checkPrivate(k)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; give it unencrypted (PKCS#8)")
		}
	}
	return nil, errors.New("holds no PRIVATE KEY or EC PRIVATE KEY block")
}

// LoadPublicKey reads a PEM file holding an Ed25519 or P-256 public key ("PUBLIC KEY"), or a
// private key as LoadPrivateKey reads it, of which it returns the public half: a retired
// key file can be published as it is. Errors are as LoadPrivateKey's.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	k, err := loadPublicKey(path)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	return k, nil
}

func loadPublicKey(path string) (crypto.PublicKey, error) {
	blocks, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	for _, b := range blocks {
		if b.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, errors.New("PUBLIC KEY block is not a valid PKIX key")
		}
		if _, err := newJWK(k); err != nil {
			return nil, errors.New("not an Ed25519 or P-256 key")
		}
		return k, nil
	}
	priv, err := loadPrivateKey(path)
	if err != nil {
		return nil, errors.New("holds no PUBLIC KEY, PRIVATE KEY or EC PRIVATE KEY block")
	}
	return priv.Public(), nil
}

func readPEM(path string) ([]*pem.Block, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the caller names the file
		}
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, errors.New("not a PEM file")
	}
	return blocks, nil
}

func checkPrivate(k any) (crypto.Signer, error) {
	switch p := k.(type) {
	case ed25519.PrivateKey:
		return p, nil
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s; only P-256 (ES256) is supported", p.Curve.Params().Name)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("a %T key is not supported; use Ed25519 or P-256", k)
	}
}

// jwksMaxAge is how long a client may cache the JWKS, in seconds: as long as an assertion
// lives. A client that meets an unknown kid (after a rotation) fetches it again anyway.
const jwksMaxAge = int(MaxTTL / time.Second)

// ServeJWKS writes the JWKS document. Callers route only GET and HEAD to it.
func (s *Signer) ServeJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(jwksMaxAge))
	w.Header().Set("Content-Length", strconv.Itoa(len(s.jwks)))
	_, _ = w.Write(s.jwks)
}
