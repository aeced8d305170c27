package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

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

// setIdentity sets the identity headers of a validated session, omitting empty fields. The
// client's own identity headers were stripped before, so nothing of theirs survives.
// The values share one backing array (each header a one-element, full-capacity slice of
// it, so an append by a later handler copies): one allocation instead of seven per request.
func setIdentity(h http.Header, s pgsession.Session) {
	vals := make([]string, 0, 7)
	set := func(k, v string) {
		if v != "" {
			vals = append(vals, encodeHeaderValue(v))
			n := len(vals)
			h[k] = vals[n-1 : n : n]
		}
	}
	set("X-User-Id", s.UserID)
	set("X-User-Email", s.Email)
	set("X-User-Username", s.Username)
	set("X-User-First-Name", s.FirstName)
	set("X-User-Last-Name", s.LastName)
	set("X-Session-Id", s.ID)
	set("X-Session-Expires-At", formatTime(s.ExpiresAt))
}

// formatTime renders a timestamp as RFC 3339, UTC, whole seconds; the zero time (NULL) as "".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// encodeHeaderValue returns v unchanged when every byte is printable ASCII and none is '%';
// otherwise it percent-encodes every byte outside printable ASCII, and '%', so the app's
// decodeURIComponent returns the original in both cases and no value can break a header.
func encodeHeaderValue(v string) string {
	if !needsEncoding(v) {
		return v
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(v)*3)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func needsEncoding(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '%' {
			return true
		}
	}
	return false
}

// isProxyHeader reports headers that only a proxy in front should set: the app may read
// them as the client's address or as the path to serve (X-Original-URL), so they are kept
// only from TRUSTED_PROXIES. Rewrite has already replaced the standard X-Forwarded-* trio.
// Names are compared like identity headers: any case, '_' read as '-'.
func isProxyHeader(k string) bool {
	switch k {
	case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
		return false // exactly what SetXForwarded wrote; a client's X_Forwarded_For is not
	}
	for _, name := range [...]string{"x-real-ip", "x-client-ip", "x-cluster-client-ip", "true-client-ip",
		"cf-connecting-ip", "fastly-client-ip", "x-original-url", "x-original-uri", "x-rewrite-url"} {
		if foldEqual(k, name) {
			return true
		}
	}
	return hasFoldPrefix(k, "x-forwarded-")
}

func foldEqual(k, lower string) bool { return len(k) == len(lower) && hasFoldPrefix(k, lower) }
