package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// stripClientHeaders deletes every header no client may send, whoever the peer: the ones a
// client could use to pose as someone (isIdentityHeader) and the app framework's internals
// (isInternalHeader). Names are compared lower-cased with '_' read as '-'; Go keeps names
// with '_' un-canonicalised, so the check runs on each name as sent.
//
// A client could also name such headers in Connection, which makes ReverseProxy drop them as
// hop-by-hop after the sidecar set its own (identity, X-Auth-Assertion): those names are
// taken out of Connection.
func stripClientHeaders(h http.Header) {
	for k := range h {
		if isClientForbidden(k) {
			delete(h, k)
		}
	}
	if c, ok := h["Connection"]; ok && connectionNamesForbidden(c) {
		var keep []string
		for _, v := range c {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" && !isClientForbidden(tok) {
					keep = append(keep, tok)
				}
			}
		}
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
}

func connectionNamesForbidden(values []string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if isClientForbidden(strings.TrimSpace(tok)) {
				return true
			}
		}
	}
	return false
}

func isClientForbidden(k string) bool { return isIdentityHeader(k) || isInternalHeader(k) }

// isIdentityHeader reports the names only the sidecar sets: x-user-*, x-session-*,
// x-auth-signature and x-auth-assertion.
func isIdentityHeader(k string) bool {
	return hasFoldPrefix(k, "x-user-") || hasFoldPrefix(k, "x-session-") ||
		foldEqual(k, "x-auth-signature") || foldEqual(k, "x-auth-assertion")
}

// isInternalHeader reports the headers Next.js uses between its own components, which a
// client must never set: x-middleware-subrequest (CVE-2025-29927: it makes Next.js skip the
// app's middleware; -id and any other suffix included), x-invoke-* (the router server's
// instructions to a render worker: path, query, status) and x-now-route-matches.
func isInternalHeader(k string) bool {
	return hasFoldPrefix(k, "x-middleware-subrequest") || hasFoldPrefix(k, "x-invoke-") ||
		foldEqual(k, "x-now-route-matches")
}

// stripH2C drops an offer to switch to cleartext HTTP/2 (`Upgrade: h2c`, and the
// HTTP2-Settings that goes with it), keeping any other protocol the Upgrade header offers.
// An h2c connection would reach the app as one long-lived tunnel of requests the sidecar
// never sees. Stripping rather than refusing is what RFC 9113 §3.1 lets a server do (it
// answers "as though the Upgrade header field were absent"), what curl --http2 and other
// clients that offer h2c opportunistically expect, and what Envoy does with an h2c upgrade
// it does not serve: the request itself is answered over HTTP/1.1.
func stripH2C(h http.Header) {
	delete(h, "Http2-Settings")
	up, ok := h["Upgrade"]
	if !ok || !offersHTTP2(up) {
		return
	}
	var keep []string
	for _, v := range up {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !isHTTP2Protocol(tok) {
				keep = append(keep, tok)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Upgrade")
		return
	}
	h["Upgrade"] = []string{strings.Join(keep, ", ")}
}

func offersHTTP2(values []string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if isHTTP2Protocol(strings.TrimSpace(tok)) {
				return true
			}
		}
	}
	return false
}

// isHTTP2Protocol reports an Upgrade token naming HTTP/2: h2c, h2 (meaningless in
// cleartext), or HTTP/2 with any version.
func isHTTP2Protocol(tok string) bool {
	return strings.EqualFold(tok, "h2c") || strings.EqualFold(tok, "h2") || hasFoldPrefix(tok, "http/2")
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

// setIdentity sets the identity headers of a validated session, omitting empty fields, and
// X-Auth-Assertion unless assertion is "". The client's own identity headers were stripped
// before, so nothing of theirs survives.
// The values share one backing array (each header a one-element, full-capacity slice of
// it, so an append by a later handler copies): one allocation instead of eight per request.
func setIdentity(h http.Header, s pgsession.Session, assertion string) {
	vals := make([]string, 0, 8)
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
	if assertion != "" {
		vals = append(vals, assertion) // base64url and dots: nothing to encode
		n := len(vals)
		h["X-Auth-Assertion"] = vals[n-1 : n : n]
	}
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

// proxyHeaders are the names, lower-case, that only a proxy in front may set (besides
// Forwarded, which ReverseProxy's Rewrite already removes, and X-Forwarded-*): the app may
// read them as the client's address, host or scheme, or as the path to serve.
var proxyHeaders = [...]string{"forwarded", "x-forwarded", "forwarded-for", "x-real-ip", "client-ip",
	"x-client-ip", "x-cluster-client-ip", "true-client-ip", "cf-connecting-ip", "fastly-client-ip",
	"x-proxyuser-ip", "x-host", "x-original-host", "x-original-url", "x-original-uri", "x-rewrite-url"}

// isProxyHeader reports headers that only a proxy in front should set: they are kept only
// from TRUSTED_PROXIES. Rewrite has already replaced the standard X-Forwarded-* trio, so
// exactly those three canonical names are the sidecar's own; every other X-Forwarded-*
// (-Prefix, -Port, -Server, or X_Forwarded_For spelled with '_') is the client's. Names
// are compared like identity headers: any case, '_' read as '-'.
func isProxyHeader(k string) bool {
	switch k {
	case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
		return false // exactly what SetXForwarded wrote
	}
	for _, name := range proxyHeaders {
		if foldEqual(k, name) {
			return true
		}
	}
	return hasFoldPrefix(k, "x-forwarded-")
}

func foldEqual(k, lower string) bool { return len(k) == len(lower) && hasFoldPrefix(k, lower) }
