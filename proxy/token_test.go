package proxy

import (
	"net/http"
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
