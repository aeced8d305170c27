package proxy

import (
	"net/http"
	"strings"
)

// maxTokenLen bounds a token: anything longer is invalid without a lookup.
const maxTokenLen = 4096

// tokenFrom returns the request's session token: from `Authorization: Bearer`, else from
// the session cookie. An Authorization header of another scheme belongs to the app and does
// not stop the cookie from being read. found is false when the request carries no token at
// all; a token that is present but malformed is returned with found true and fails
// validToken.
func tokenFrom(h http.Header, cookie string) (token string, found bool) {
	for _, v := range h.Values("Authorization") {
		if scheme, rest, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Bearer") {
			return strings.TrimLeft(rest, " "), true
		}
	}
	if cookie == "" {
		return "", false
	}
	return cookieValue(h, cookie)
}

// cookieValue finds one cookie without parsing every cookie into an http.Cookie.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h.Values("Cookie") {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}

// validToken rejects, before any lookup, what no issued token can be: empty, longer than
// maxTokenLen, or holding a byte outside visible ASCII.
func validToken(t string) bool {
	if t == "" || len(t) > maxTokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 0x21 || t[i] > 0x7e {
			return false
		}
	}
	return true
}
