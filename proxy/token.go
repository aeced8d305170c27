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

// stripIdentity deletes every header a client could use to pose as someone: names that,
// lower-cased with '_' read as '-', start with "x-user-" or "x-session-" or equal
// "x-auth-signature". Go keeps names with '_' un-canonicalised, so the check runs on each
// name as sent.
//
// A client could also name the identity headers in Connection, which makes ReverseProxy
// drop them as hop-by-hop after they were set: those names are taken out of Connection.
func stripIdentity(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
	if c, ok := h["Connection"]; ok && connectionNamesIdentity(c) {
		var keep []string
		for _, v := range c {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" && !isIdentityHeader(tok) {
					keep = append(keep, tok)
				}
			}
		}
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
}

func connectionNamesIdentity(values []string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if isIdentityHeader(strings.TrimSpace(tok)) {
				return true
			}
		}
	}
	return false
}

func isIdentityHeader(k string) bool {
	return hasFoldPrefix(k, "x-user-") || hasFoldPrefix(k, "x-session-") ||
		(len(k) == len("x-auth-signature") && hasFoldPrefix(k, "x-auth-signature"))
}

// hasFoldPrefix reports whether s starts with the lower-case prefix, ASCII case-insensitively
// and with '_' matching '-'.
func hasFoldPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}
