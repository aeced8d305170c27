package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestTokenFrom(t *testing.T) {
	cases := []struct {
		name      string
		header    http.Header
		cookie    string
		want      string
		wantFound bool
	}{
		{"bearer", http.Header{"Authorization": {"Bearer abc"}}, "", "abc", true},
		{"scheme is case-insensitive", http.Header{"Authorization": {"bEaReR abc"}}, "", "abc", true},
		{"extra spaces", http.Header{"Authorization": {"Bearer   abc"}}, "", "abc", true},
		{"empty bearer is present but invalid", http.Header{"Authorization": {"Bearer "}}, "", "", true},
		{"no header", http.Header{}, "", "", false},
		{"cookie", http.Header{"Cookie": {"a=1; session=xyz; b=2"}}, "session", "xyz", true},
		{"quoted cookie", http.Header{"Cookie": {`session="xyz"`}}, "session", "xyz", true},
		{"cookie not configured", http.Header{"Cookie": {"session=xyz"}}, "", "", false},
		{"bearer wins over cookie", http.Header{"Authorization": {"Bearer abc"}, "Cookie": {"session=xyz"}}, "session", "abc", true},
		{"other scheme leaves the cookie", http.Header{"Authorization": {"Basic dTpw"}, "Cookie": {"session=xyz"}}, "session", "xyz", true},
		{"other scheme alone", http.Header{"Authorization": {"Basic dTpw"}}, "session", "", false},
		{"cookie name must match exactly", http.Header{"Cookie": {"session2=xyz"}}, "session", "", false},
	}
	for _, tc := range cases {
		got, found := tokenFrom(tc.header, tc.cookie)
		if got != tc.want || found != tc.wantFound {
			t.Errorf("%s: tokenFrom = %q, %v; want %q, %v", tc.name, got, found, tc.want, tc.wantFound)
		}
	}
}

func TestValidToken(t *testing.T) {
	cases := []struct {
		token string
		want  bool
	}{
		{"abc-DEF_123.~+/=", true},
		{strings.Repeat("a", maxTokenLen), true},
		{strings.Repeat("a", maxTokenLen+1), false},
		{"", false},
		{"has space", false},
		{"tab\t", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"José", false},
	}
	for _, tc := range cases {
		if got := validToken(tc.token); got != tc.want {
			t.Errorf("validToken(%.20q) = %v, want %v", tc.token, got, tc.want)
		}
	}
}

func TestStripIdentity(t *testing.T) {
	h := http.Header{}
	spoofed := []string{"X-User-Id", "x-user-email", "X_User_Id", "x_USER-first_name", "X-Session-Id",
		"X_SESSION_EXPIRES_AT", "X-Auth-Signature", "x_auth_signature", "X-User-Anything"}
	kept := []string{"X-Username", "X-Auth-Signature2", "X-Sessionid", "Authorization", "X-Request-Id"}
	for _, k := range append(spoofed, kept...) {
		h[k] = []string{"v"} // as sent, not canonicalised
	}
	stripIdentity(h)
	for _, k := range spoofed {
		if _, ok := h[k]; ok {
			t.Errorf("%s survived", k)
		}
	}
	for _, k := range kept {
		if _, ok := h[k]; !ok {
			t.Errorf("%s was stripped", k)
		}
	}
}

func TestEncodeHeaderValue(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain value", "plain value"},
		{"José", "Jos%C3%A9"},
		{"Müller", "M%C3%BCller"},
		{"100%", "100%25"},
		{"line\nbreak", "line%0Abreak"},
		{"", ""},
	}
	for _, tc := range cases {
		got := encodeHeaderValue(tc.in)
		if got != tc.want {
			t.Errorf("encode(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != tc.in {
			t.Errorf("decodeURIComponent(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
}

func TestCleanPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/", "/"},
		{"", "/"},
		{"/api/x", "/api/x"},
		{"/api/x/", "/api/x/"},
		{"/_next/static/../api", "/_next/api"},
		{"/_next/static/../../api/", "/api/"},
		{"/a/./b", "/a/b"},
		{"//a//b", "/a/b"},
		{"/..", "/"},
		{"/.well-known/x", "/.well-known/x"},
	}
	for _, tc := range cases {
		if got := cleanPath(tc.in); got != tc.want {
			t.Errorf("cleanPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMatchesAny(t *testing.T) {
	public := []string{"/login", "/_next/static"}
	cases := []struct {
		path string
		want bool
	}{
		{"/login", true},
		{"/login/", true},
		{"/login/x", true},
		{"/login2", false},
		{"/_next/static/chunk.js", true},
		{"/_next/staticx", false},
		{"/api", false},
		{"/", false},
	}
	for _, tc := range cases {
		if got := matchesAny(tc.path, public); got != tc.want {
			t.Errorf("matchesAny(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	if !matchesAny("/anything", []string{"/"}) {
		t.Error(`"/" must make every path public`)
	}
}

func FuzzTokenFrom(f *testing.F) {
	f.Add("Bearer abc", "session=xyz")
	f.Add("bearer", "")
	f.Add("Basic x", "a=b; session=\"q\"")
	f.Fuzz(func(t *testing.T, auth, cookie string) {
		h := http.Header{"Authorization": {auth}, "Cookie": {cookie}}
		tok, found := tokenFrom(h, "session")
		if !found && tok != "" {
			t.Fatalf("not found but token %q", tok)
		}
		if validToken(tok) && (len(tok) > maxTokenLen || strings.ContainsAny(tok, " \t\r\n")) {
			t.Fatalf("validToken accepted %q", tok)
		}
	})
}

func FuzzStripIdentity(f *testing.F) {
	f.Add("X-User-Id")
	f.Add("x_session_x")
	f.Add("X-AUTH-SIGNATURE")
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"v"}}
		stripIdentity(h)
		norm := strings.Map(func(r rune) rune {
			switch {
			case r >= 'A' && r <= 'Z':
				return r + 'a' - 'A'
			case r == '_':
				return '-'
			}
			return r
		}, name)
		spoof := strings.HasPrefix(norm, "x-user-") || strings.HasPrefix(norm, "x-session-") || norm == "x-auth-signature"
		if _, kept := h[name]; kept == spoof {
			t.Fatalf("header %q: kept = %v, but spoofable = %v", name, kept, spoof)
		}
	})
}

func FuzzEncodeHeaderValue(f *testing.F) {
	f.Add("José")
	f.Add("50% off\r\n")
	f.Fuzz(func(t *testing.T, v string) {
		enc := encodeHeaderValue(v)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("encoded value %q holds byte %#x", enc, enc[i])
			}
		}
		if back, err := url.PathUnescape(enc); err != nil || back != v {
			t.Fatalf("round trip of %q: %q, %v", v, back, err)
		}
	})
}
