package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The messages here say what is wrong in a URL or DSN and how to fix it, without quoting
// anything that may hold a password: a user name and password never, and the host, port,
// path or query only once the value's structure shows they cannot be part of a password.

// encodeHint lists what a password must percent-encode inside a URL.
const encodeHint = "percent-encode the password: % as %25, @ as %40, : as %3A, / as %2F, ? as %3F, # as %23, space as %20"

// dsnHint is the shape of a Postgres URL, appended to messages that cannot be more precise.
const dsnHint = "use postgres://user:password@host:5432/database?sslmode=require and " + encodeHint

// sslModes are the sslmode values libpq and pgx accept.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

var (
	schemeToken = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,30}$`)
	plainWord   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,40}$`)
	// badEscape is a % not followed by two hex digits.
	badEscape = regexp.MustCompile(`%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)`)
)

// urlShape names the first mistake in the structure of raw, a URL whose scheme must be
// one of schemes: the scheme itself, reserved characters in the user name or password, a
// % that is not an escape, the host and its port. nil means none of these is wrong.
func urlShape(raw string, schemes ...string) error {
	want := strings.Join(schemes, " or ")
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case !ok && !strings.Contains(raw, "@") && plainHostPort(raw):
		return fmt.Errorf("has no scheme: write %s://%s", schemes[0], raw)
	case !ok:
		return fmt.Errorf("has no scheme: start it with %s://", schemes[0])
	case !schemeToken.MatchString(scheme):
		return fmt.Errorf("does not start with a scheme (%s://)", schemes[0])
	case !slices.Contains(schemes, strings.ToLower(scheme)):
		return fmt.Errorf("scheme %q is not %s", scheme, want)
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hostport := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hostport = authority[:i], authority[i+1:]
	}
	switch {
	case strings.Contains(tail, "@"):
		// The authority ended inside the password, at a / ? or #.
		return errors.New("the user name or password holds a / ? or # (the host cannot be found): " + encodeHint)
	case badEscape.MatchString(userinfo):
		return errors.New(`the user name or password has a "%" that is not a %XX escape: ` + encodeHint)
	case badEscape.MatchString(hostport + tail):
		return errors.New(`has a "%" that is not a %XX escape (write % as %25)`)
	}
	// From here nothing can be part of the password: quoting is safe.
	for host := range strings.SplitSeq(hostport, ",") { // Postgres takes several hosts
		if err := checkURLHost(host); err != nil {
			return err
		}
	}
	return nil
}

// plainHostPort reports whether s looks like host:port, which a scheme would fix.
func plainHostPort(s string) bool {
	host, port, found := strings.Cut(s, ":")
	_, err := strconv.Atoi(strings.SplitN(port, "/", 2)[0])
	return found && host != "" && err == nil && len(s) < 100 && checkVisible(s) == nil
}

// checkURLHost checks one host[:port] of a URL's authority.
func checkURLHost(hostport string) error {
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return errors.New("has an IPv6 host without its closing ]")
		}
		host, port = hostport[:end+1], strings.TrimPrefix(hostport[end+1:], ":")
	} else if i := strings.LastIndex(hostport, ":"); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
	}
	if host == "" && port != "" {
		return errors.New("has a port but no host")
	}
	return checkPort(port)
}

// checkPort accepts an empty port (the default) or a number from 1 to 65535.
func checkPort(port string) error {
	if port == "" {
		return nil
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil && plainWord.MatchString(port):
		return fmt.Errorf("port %q is not a number", port)
	case err != nil:
		return errors.New("the port is not a number")
	case n < 1 || n > 65535:
		return fmt.Errorf("port %d is out of range (1-65535)", n)
	}
	return nil
}

// checkSSLMode names an sslmode libpq does not know; "" is the default.
func checkSSLMode(mode string) error {
	switch {
	case mode == "" || slices.Contains(sslModes, mode):
		return nil
	case plainWord.MatchString(mode):
		return fmt.Errorf("sslmode %q is not one of %s", mode, strings.Join(sslModes, ", "))
	}
	return fmt.Errorf("sslmode is not one of %s", strings.Join(sslModes, ", "))
}

// describeDSN explains why pgx refused dsn, a postgres:// URL or a keyword/value string
// ("host=db port=5432 …"). It never includes pgx's error, which can quote the DSN.
func describeDSN(dsn string) error {
	params := map[string]string{}
	if strings.Contains(dsn, "://") || !strings.Contains(dsn, "=") {
		if err := urlShape(dsn, "postgres", "postgresql"); err != nil {
			return err
		}
		_, query, _ := strings.Cut(dsn, "?")
		values, err := url.ParseQuery(query)
		if err != nil {
			return errors.New("has a malformed query (the part after ?): " + dsnHint)
		}
		for k := range values {
			params[k] = values.Get(k)
		}
	} else {
		params = keywordValues(dsn)
		for port := range strings.SplitSeq(params["port"], ",") {
			if err := checkPort(port); err != nil {
				return err
			}
		}
	}
	if err := checkSSLMode(params["sslmode"]); err != nil {
		return err
	}
	for _, key := range []string{"sslrootcert", "sslcert", "sslkey"} {
		if path := params[key]; path != "" {
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("%s %q cannot be read", key, path)
			}
		}
	}
	if !strings.Contains(dsn, "://") && strings.Contains(dsn, "=") {
		return errors.New("not a valid key=value connection string: single-quote a value that holds spaces or quotes (password='a b'), or " + dsnHint)
	}
	return errors.New("not a valid Postgres connection string: " + dsnHint)
}

// keywordValues reads a keyword/value DSN: key=value pairs separated by spaces, a value
// single-quoted when it holds spaces, with \' and \\ escaped inside quotes.
func keywordValues(dsn string) map[string]string {
	out := map[string]string{}
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			return out
		}
		s = strings.TrimLeft(rest, " \t")
		var value strings.Builder
		if strings.HasPrefix(s, "'") {
			i := 1
			for ; i < len(s) && s[i] != '\''; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				value.WriteByte(s[i])
			}
			s = s[min(i+1, len(s)):]
		} else {
			end := strings.IndexAny(s, " \t\r\n")
			if end < 0 {
				end = len(s)
			}
			value.WriteString(s[:end])
			s = s[end:]
		}
		out[strings.TrimSpace(key)] = value.String()
	}
}

// describeRedisURL explains why go-redis refused raw. It never includes go-redis's error,
// which can quote the URL.
func describeRedisURL(raw string) error {
	if err := urlShape(raw, "redis", "rediss"); err != nil {
		return err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL: use redis://:password@host:6379/0 and " + encodeHint)
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if _, err := strconv.Atoi(db); err != nil {
			return fmt.Errorf("the database number (the path) %q is not a number: use redis://host:6379/0", db)
		}
	}
	return errors.New("not a valid Redis URL: use redis://:password@host:6379/0 (rediss:// for TLS) and " + encodeHint)
}
