package proxy

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest writes a request byte for byte (header names exactly as written, which a Go
// client would not guarantee) and returns the status of the answer.
func rawRequest(t *testing.T, addr, request string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestIdentitySpoofsWithUnderscoresAreStripped sends identity names spelled with '_' and
// mixed case on the wire. Go's server keeps them as sent modulo canonicalisation
// ("X_User_Email" arrives as "X_user_email"), which an app behind a proxy that folds '_'
// to '-' (nginx with underscores_in_headers, many frameworks) reads as X-User-Email: only
// the sidecar's folding removes them.
func TestIdentitySpoofsWithUnderscoresAreStripped(t *testing.T) {
	spoofs := []string{"X_User_Email", "x_user_id", "X-USER_first-NAME", "x_session_expires_at",
		"X_Session_Id", "X_Auth_Signature", "x_user_role"}
	for _, tc := range []struct{ name, path, auth string }{
		{"protected path", "/dashboard", "Authorization: Bearer good\r\n"},
		{"public path", "/login", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newUpstream(t, nil)
			srv, _ := newTestProxy(t, app, nil)
			var b strings.Builder
			b.WriteString("GET " + tc.path + " HTTP/1.1\r\nHost: sidecar.test\r\n" + tc.auth)
			for _, name := range spoofs {
				b.WriteString(name + ": spoofed\r\n")
			}
			b.WriteString("Connection: close\r\n\r\n")
			if code := rawRequest(t, strings.TrimPrefix(srv.URL, "http://"), b.String()); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			got := app.last(t).Header
			for name, vals := range got {
				for _, v := range vals {
					if v == "spoofed" {
						t.Errorf("the app received %s: %s", name, v)
					}
				}
			}
			if tc.auth != "" && (len(got.Values("X-User-Email")) != 1 || got.Get("X-User-Email") != jose.Email) {
				t.Errorf("X-User-Email = %q, want only the session's", got.Values("X-User-Email"))
			}
		})
	}
}
