package proxy

import (
	"net/http"
	"net/url"
	"testing"
)

func TestStripClientHeaders(t *testing.T) {
	h := http.Header{}
	spoofed := []string{"X-User-Id", "x-user-email", "X_User_Id", "x_USER-first_name", "X-Session-Id",
		"X_SESSION_EXPIRES_AT", "X-Auth-Signature", "x_auth_signature", "X-User-Anything",
		"X-Auth-Assertion", "x_auth_ASSERTION",
		"X-Middleware-Subrequest", "x_middleware_subrequest", "X-MIDDLEWARE-SUBREQUEST-ID",
		"X-Invoke-Path", "x_invoke_query", "X-Invoke-Status", "X-Now-Route-Matches", "x_now_route_matches"}
	kept := []string{"X-Username", "X-Auth-Signature2", "X-Sessionid", "Authorization", "X-Request-Id",
		"X-Auth-Assertions", "X-Middleware-Prefetch", "X-Invoked", "X-Now-Route", "Next-Router-State-Tree"}
	for _, k := range append(spoofed, kept...) {
		h[k] = []string{"v"} // as sent, not canonicalised
	}
	stripClientHeaders(h)
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
