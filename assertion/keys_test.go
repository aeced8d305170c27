package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePEM(tb testing.TB, blocks ...*pem.Block) string {
	tb.Helper()
	var b strings.Builder
	for _, bl := range blocks {
		b.Write(pem.EncodeToMemory(bl))
	}
	path := filepath.Join(tb.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func pkcs8(tb testing.TB, k any) *pem.Block {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func pkix(tb testing.TB, k any) *pem.Block {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

func TestLoadPrivateKeyReadsEd25519AndP256(t *testing.T) {
	ed, p256 := newEd25519(t), newP256(t)
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	params := &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}
	cases := []struct {
		name string
		path string
		alg  string
	}{
		{"Ed25519 PKCS#8", writePEM(t, pkcs8(t, ed)), "EdDSA"},
		{"P-256 PKCS#8", writePEM(t, pkcs8(t, p256)), "ES256"},
		{"P-256 SEC 1 after EC PARAMETERS (openssl ecparam -genkey)", writePEM(t, params, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), "ES256"},
	}
	for _, tc := range cases {
		k, err := LoadPrivateKey(tc.path)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		s := newSigner(t, Options{Key: k})
		if s.alg != tc.alg {
			t.Errorf("%s: alg %s, want %s", tc.name, s.alg, tc.alg)
		}
	}
}

func TestLoadPrivateKeyRefusesWhatItCannotUse(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(t.TempDir(), "nope.pem"), "cannot read"},
		{"not PEM", writeFile(t, "-----BEGIN nothing"), "not a PEM file"},
		{"P-384", writePEM(t, pkcs8(t, p384)), "only P-256"},
		{"RSA", writePEM(t, pkcs8(t, rsaKey)), "not supported"},
		{"public key only", writePEM(t, pkix(t, edPub)), "no PRIVATE KEY"},
		{"encrypted", writePEM(t, &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted"},
		{"corrupt PKCS#8", writePEM(t, &pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}), "not valid PKCS#8"},
	}
	for _, tc := range cases {
		_, err := LoadPrivateKey(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line containing %q", tc.name, err, tc.want)
		}
	}
}

func writeFile(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestLoadPublicKeyTakesPublicOrPrivateFiles(t *testing.T) {
	ed, p256 := newEd25519(t), newP256(t)
	for _, tc := range []struct {
		path string
		want any
	}{
		{writePEM(t, pkix(t, ed.Public())), ed.Public()},
		{writePEM(t, pkix(t, p256.Public())), p256.Public()},
		{writePEM(t, pkcs8(t, ed)), ed.Public()},
	} {
		got, err := LoadPublicKey(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if !got.(interface{ Equal(x crypto.PublicKey) bool }).Equal(tc.want) {
			t.Errorf("%s: wrong key", tc.path)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := LoadPublicKey(writePEM(t, pkix(t, p384.Public()))); err == nil {
		t.Error("a P-384 public key was accepted")
	}
}
