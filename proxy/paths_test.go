package proxy

import "testing"

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
