package config_test

import (
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeamsSettingsReportBadValuesAsOneLine(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		environ map[string]string
		name    string
		says    string
	}{
		{map[string]string{"INVALID_TOKEN_RATE": "-1"}, "INVALID_TOKEN_RATE", "negative"},
		{map[string]string{"INVALID_TOKEN_RATE": "2000000"}, "INVALID_TOKEN_RATE", "per second"},
		{map[string]string{"INVALID_TOKEN_RATE": "1.5"}, "INVALID_TOKEN_RATE", "whole number"},
		{map[string]string{"BODY_IDLE_TIMEOUT": "-1s"}, "BODY_IDLE_TIMEOUT", "negative"},
		{map[string]string{"BODY_IDLE_TIMEOUT": "30"}, "BODY_IDLE_TIMEOUT", "duration"},
		{map[string]string{"JWKS_PATH": "jwks.json"}, "JWKS_PATH", "start with /"},
		{map[string]string{"JWKS_PATH": "/api/auth/validate"}, "JWKS_PATH", "differ"},
		{map[string]string{"IDENTITY_JWT_KEY": filepath.Join(dir, "missing.pem")}, "IDENTITY_JWT_KEY", "no such file"},
		{map[string]string{"IDENTITY_JWT_KEY": notPEM}, "IDENTITY_JWT_KEY", "not a PEM file"},
		{map[string]string{"IDENTITY_JWT_KEY": "testdata/identity-previous.pub.pem"}, "IDENTITY_JWT_KEY", "no PRIVATE KEY"},
		{map[string]string{"IDENTITY_JWT_KEY": "testdata/identity-key.pem", "IDENTITY_JWT_PREVIOUS_KEYS": "testdata/identity-key.pem," + notPEM}, "IDENTITY_JWT_PREVIOUS_KEYS", "entry 2"},
		{map[string]string{"IDENTITY_JWT_PREVIOUS_KEYS": "testdata/identity-key.pem"}, "IDENTITY_JWT_PREVIOUS_KEYS", "without IDENTITY_JWT_KEY"},
		{map[string]string{"IDENTITY_JWT_ISSUER": "a\tb"}, "IDENTITY_JWT_ISSUER", "control"},
	}
	for _, tc := range cases {
		lines := loadErrorLines(t, tc.environ)
		if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.name+": ") || !strings.Contains(lines[0], tc.says) {
			t.Errorf("%v: error lines %q, want one %s line saying %q", tc.environ, lines, tc.name, tc.says)
		}
	}
}

func TestAKeyFileIsNeverEchoed(t *testing.T) {
	secret := []byte("s3cret-key-material-s3cret")
	path := filepath.Join(t.TempDir(), "corrupt.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: secret})
	if err := os.WriteFile(path, block, 0o600); err != nil {
		t.Fatal(err)
	}
	lines := loadErrorLines(t, map[string]string{"IDENTITY_JWT_KEY": path})
	text := strings.Join(lines, "\n")
	if strings.Contains(text, "s3cret") || strings.Contains(text, base64.StdEncoding.EncodeToString(secret)[:16]) {
		t.Errorf("error text shows key material: %q", text)
	}
	if !strings.Contains(text, "IDENTITY_JWT_KEY: ") || !strings.Contains(text, "PKCS#8") {
		t.Errorf("error text %q does not say what is wrong", text)
	}
}
