package proxy

import "unicode/utf8"

// Bounds, in bytes of their JSON encoding, of the client-controlled values a log line
// carries. With the fixed fields and the request id (at most 128 visible characters) an
// access line stays well under 4 KB, whatever the request: a 250 KB path cannot turn into a
// 250 KB line. The query string is never logged: it may carry one-time secrets (reset
// links, OAuth codes).
const (
	maxLogMethod    = 32
	maxLogPath      = 1024
	maxLogUserAgent = 512
	maxLogError     = 1024 // a transport error quotes the outbound URL, path included
)

// ellipsis marks a value that was cut.
const ellipsis = "…"

// clip returns s if its JSON encoding, as zap writes it, takes at most max bytes; otherwise
// the longest prefix of whole characters that fits in max with the ellipsis after it, and
// true. zap writes a control byte as \u00XX and an invalid UTF-8 byte as \ufffd (6 bytes
// each), '"' and '\' escaped (2 bytes), anything else as it is.
func clip(s string, max int) (string, bool) {
	if 6*len(s) <= max {
		return s, false // fits even if every byte were escaped
	}
	budget := max - len(ellipsis)
	cost, cut := 0, -1
	for i := 0; i < len(s); {
		w, size := jsonCost(s[i:])
		if cut < 0 && cost+w > budget {
			cut = i
		}
		if cost += w; cost > max {
			return s[:cut] + ellipsis, true
		}
		i += size
	}
	return s, false
}

func clipped(s string, max int) string {
	s, _ = clip(s, max)
	return s
}

// jsonCost is the encoded size and the byte length of the character s starts with.
func jsonCost(s string) (cost, size int) {
	c := s[0]
	if c < utf8.RuneSelf {
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			return 2, 1
		case c < 0x20:
			return 6, 1
		}
		return 1, 1
	}
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size == 1 {
		return 6, 1
	}
	return size, size
}
