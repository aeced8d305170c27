package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are a throwaway certificate authority and two certificates it signed, a server's
// (for 127.0.0.1 and localhost) and a client's, written as PEM files to a directory of the
// test. Keys are ECDSA P-256 and made by the test: no key is ever committed. Make two to
// get a CA that does not trust the other's certificates.
type TLSFiles struct {
	CAFile     string // the CA's certificate: what a client or a server trusts
	ServerCert string // server certificate, SAN 127.0.0.1 and localhost, server and client use
	ServerKey  string // its key (PKCS #8, mode 0600)
	ClientCert string // client certificate, CN ClientName
	ClientKey  string // its key (PKCS #8, mode 0600)

	roots  *x509.CertPool
	client tls.Certificate
}

// ClientName is the common name of TLSFiles' client certificate.
const ClientName = "authsidecar-test-client"

// NewTLSFiles makes a CA valid for a day, signs the two certificates and writes the five
// files to a new temporary directory, removed at cleanup.
func NewTLSFiles(tb testing.TB) *TLSFiles {
	tb.Helper()
	dir := tb.TempDir()
	caKey := newKey(tb)
	caTmpl := certTemplate("authsidecar test CA " + randomHex(4))
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER := sign(tb, caTmpl, caTmpl, caKey, caKey)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatalf("testenv: parse CA: %v", err)
	}
	f := &TLSFiles{CAFile: filepath.Join(dir, "ca.crt"), roots: x509.NewCertPool()}
	f.roots.AddCert(ca)
	writePEM(tb, f.CAFile, "CERTIFICATE", caDER, 0o644)

	// The server certificate serves clients too: a Redis replica presents it to its master.
	server := certTemplate("localhost")
	server.DNSNames, server.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	f.ServerCert, f.ServerKey = f.issue(tb, dir, "server", server, ca, caKey)

	client := certTemplate(ClientName)
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	f.ClientCert, f.ClientKey = f.issue(tb, dir, "client", client, ca, caKey)
	if f.client, err = tls.LoadX509KeyPair(f.ClientCert, f.ClientKey); err != nil {
		tb.Fatalf("testenv: load client certificate: %v", err)
	}
	return f
}

// ClientConfig returns a TLS configuration that trusts only this CA and presents the client
// certificate when a server asks for one.
func (f *TLSFiles) ClientConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: f.roots, Certificates: []tls.Certificate{f.client}}
}

// issue signs tmpl with the CA and writes name.crt and name.key.
func (f *TLSFiles) issue(tb testing.TB, dir, name string, tmpl *x509.Certificate, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	tb.Helper()
	key := newKey(tb)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der := sign(tb, tmpl, ca, key, caKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("testenv: marshal key: %v", err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(tb, certFile, "CERTIFICATE", der, 0o644)
	writePEM(tb, keyFile, "PRIVATE KEY", keyDER, 0o600)
	return certFile, keyFile
}

func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120)) // never fails (crypto/rand)
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"authsidecar tests"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testenv: generate key: %v", err)
	}
	return key
}

func sign(tb testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatalf("testenv: sign certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return der
}

func writePEM(tb testing.TB, path, blockType string, der []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode); err != nil {
		tb.Fatalf("testenv: write %s: %v", path, err)
	}
}
