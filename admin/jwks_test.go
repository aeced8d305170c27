package admin_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/authsidecar/authsidecar/admin"
	"github.com/authsidecar/authsidecar/assertion"
)

func TestJWKSIsServedOnlyWithAKey(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := assertion.New(assertion.Options{Key: key, Issuer: "authsidecar", Audience: "http://app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		jwks http.Handler
		want int
	}{{http.HandlerFunc(signer.ServeJWKS), http.StatusOK}, {nil, http.StatusNotFound}} {
		h := admin.New(admin.Options{JWKS: tc.jwks})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
		if w.Code != tc.want {
			t.Fatalf("JWKS %v: %d, want %d", tc.jwks != nil, w.Code, tc.want)
		}
		if tc.want != http.StatusOK {
			continue
		}
		body, _ := io.ReadAll(w.Body)
		var set struct{ Keys []map[string]string }
		if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["alg"] != "EdDSA" {
			t.Errorf("JWKS %s (%v)", body, err)
		}
		if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") == "" {
			t.Errorf("headers %v", w.Header())
		}
	}
}
