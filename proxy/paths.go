package proxy

import (
	"path"
	"strings"
)

// ambiguousPath reports a path that other servers may resolve differently from path.Clean:
// a dot-segment carrying ";" parameters (Tomcat and Spring read "/public/..;/api" as "/api")
// or a backslash (read as "/" by some). It is refused rather than guessed.
func ambiguousPath(p string) bool {
	return strings.ContainsRune(p, '\\') || strings.Contains(p, "/..;") || strings.Contains(p, "/.;")
}

// cleanPath resolves dot-segments and repeated slashes, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, "/.") && !strings.Contains(p, "//") && p[0] == '/' {
		return p // the common case, without allocating
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// matchesAny reports whether p is one of prefixes or lies in its subtree: "/login" matches
// "/login" and "/login/x", never "/login2".
func matchesAny(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if pre == "/" || p == pre || (strings.HasPrefix(p, pre) && p[len(pre)] == '/') {
			return true
		}
	}
	return false
}

func matchesExact(p string, paths []string) bool {
	p = trimSlash(p)
	for _, q := range paths {
		if trimSlash(q) == p {
			return true
		}
	}
	return false
}

func trimSlash(p string) string {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}
