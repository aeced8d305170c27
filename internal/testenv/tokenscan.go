package testenv

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TokenScan says where to look for raw tokens: every key and every value of a Redis server
// (all prefixes; every database in DBs, or every database INFO keyspace lists when DBs is
// nil), and texts such as a sidecar's log output. Secrets are the raw tokens and cookie
// values a test handed to the sidecar; each is looked for raw and in the forms it could be
// re-encoded into (see secretForms).
type TokenScan struct {
	Redis   *redis.Client     // nil: no Redis to scan
	DBs     []int             // database indexes to scan; nil: every non-empty one
	Texts   map[string]string // name (e.g. "replica a log") → text
	Secrets []string
}

// Finding is one place a secret was found. It never holds the secret itself.
type Finding struct {
	Where  string // "db 0 key …", "db 0 value of … (hash field …)", "replica a log line 12"
	Secret int    // index into TokenScan.Secrets
	Form   string // "raw", "base64", "url-escaped", …
}

func (f Finding) String() string {
	return fmt.Sprintf("secret #%d (%s) in %s", f.Secret, f.Form, f.Where)
}

// AssertNoRawTokens fails tb with every place a secret was found.
func AssertNoRawTokens(tb testing.TB, s TokenScan) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	found, err := s.Find(ctx)
	if err != nil {
		tb.Fatalf("scan for raw tokens: %v", err)
	}
	for _, f := range found {
		tb.Errorf("raw token leaked: %s", f)
	}
	if len(s.Secrets) == 0 {
		tb.Fatalf("scan for raw tokens: no secrets given: the scan would prove nothing")
	}
}

// Find returns every place a secret was found.
func (s TokenScan) Find(ctx context.Context) ([]Finding, error) {
	m := newMatcher(s.Secrets)
	names := make([]string, 0, len(s.Texts))
	for name := range s.Texts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for i, line := range strings.Split(s.Texts[name], "\n") {
			m.check(fmt.Sprintf("%s line %d", name, i+1), line)
		}
	}
	if s.Redis == nil {
		return m.found, nil
	}
	dbs := s.DBs
	if dbs == nil {
		var err error
		if dbs, err = nonEmptyDBs(ctx, s.Redis); err != nil {
			return m.found, err
		}
	}
	for _, db := range dbs {
		if err := scanDB(ctx, s.Redis, db, m); err != nil {
			return m.found, fmt.Errorf("db %d: %w", db, err)
		}
	}
	return m.found, nil
}

// form is one encoding of one secret.
type form struct {
	secret int
	name   string
	text   string
}

type matcher struct {
	forms []form
	found []Finding
}

func newMatcher(secrets []string) *matcher {
	m := &matcher{}
	for i, s := range secrets {
		for _, f := range secretForms(s) {
			f.secret = i
			m.forms = append(m.forms, f)
		}
	}
	return m
}

func (m *matcher) check(where, text string) {
	for _, f := range m.forms {
		if strings.Contains(text, f.text) {
			m.found = append(m.found, Finding{Where: m.redact(where), Secret: f.secret, Form: f.name})
		}
	}
}

// redact keeps the secrets out of the test's own output: a key name may be one.
func (m *matcher) redact(s string) string {
	for _, f := range m.forms {
		s = strings.ReplaceAll(s, f.text, "<secret>")
	}
	return s
}

// minForm is the shortest encoded fragment looked for: shorter ones match by chance.
const minForm = 8

// secretForms lists a secret raw and as every encoding a careless write could give it:
// URL query and path escaping, JSON string escaping, hex, and base64 (standard and URL
// alphabets). Base64 is looked for at all three alignments, so the secret is found even
// inside a longer encoded value (a cookie header, a JSON body): the encoding of the secret
// at byte offset k mod 3, minus the characters it shares with its neighbours.
func secretForms(secret string) []form {
	var forms []form
	add := func(name, text string) {
		if len(text) < minForm {
			return
		}
		for _, f := range forms {
			if f.text == text {
				return
			}
		}
		forms = append(forms, form{name: name, text: text})
	}
	add("raw", secret)
	add("url-escaped", url.QueryEscape(secret))
	add("path-escaped", url.PathEscape(secret))
	if b, err := json.Marshal(secret); err == nil {
		add("json-escaped", string(b[1:len(b)-1]))
	}
	add("hex", hex.EncodeToString([]byte(secret)))
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for k := range 3 {
			padded := append(make([]byte, k), secret...)
			s := enc.e.EncodeToString(padded)
			skip := [3]int{0, 2, 3}[k] // characters that also carry the k padding bytes
			end := len(s)
			if len(padded)%3 != 0 {
				end -= 4 // the last group also carries what follows the secret
			}
			if end > skip {
				add(enc.name+"@"+strconv.Itoa(k), s[skip:end])
			}
		}
	}
	return forms
}

// nonEmptyDBs lists the databases INFO keyspace reports ("db3:keys=…").
func nonEmptyDBs(ctx context.Context, rdb *redis.Client) ([]int, error) {
	info, err := rdb.Info(ctx, "keyspace").Result()
	if err != nil {
		return nil, err
	}
	var dbs []int
	for line := range strings.SplitSeq(info, "\n") {
		name, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "db")); ok && strings.HasPrefix(name, "db") && err == nil {
			dbs = append(dbs, n)
		}
	}
	return dbs, nil
}

// scanDB reads every key of one database with SCAN, TYPE and the type's own read command
// (never DUMP, whose compressed form could hide a value), and checks names and contents.
func scanDB(ctx context.Context, rdb *redis.Client, db int, m *matcher) error {
	conn := rdb.Conn()
	defer conn.Close()
	if err := conn.Select(ctx, db).Err(); err != nil {
		return err
	}
	var cursor uint64
	for {
		keys, next, err := conn.Scan(ctx, cursor, "", 500).Result()
		if err != nil {
			return err
		}
		if err := scanKeys(ctx, conn, db, keys, m); err != nil {
			return err
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func scanKeys(ctx context.Context, conn *redis.Conn, db int, keys []string, m *matcher) error {
	types := make([]*redis.StatusCmd, len(keys))
	if _, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			types[i] = p.Type(ctx, k)
		}
		return nil
	}); err != nil {
		return err
	}
	reads := make([]func() ([]string, error), len(keys))
	if _, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			reads[i] = readValue(ctx, p, k, types[i].Val())
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, k := range keys {
		label := fmt.Sprintf("db %d key %q", db, k)
		m.check(label, k)
		parts, err := reads[i]()
		if err != nil {
			return fmt.Errorf("%s (%s): %w", label, types[i].Val(), err)
		}
		for j, v := range parts {
			m.check(fmt.Sprintf("db %d value of %q (%s part %d)", db, k, types[i].Val(), j), v)
		}
	}
	return nil
}

// readValue queues the read of one key's whole value and returns a function that yields it
// as strings (members, fields and values, scores) once the pipeline ran.
func readValue(ctx context.Context, p redis.Pipeliner, key, typ string) func() ([]string, error) {
	switch typ {
	case "none": // expired or deleted between SCAN and TYPE
		return func() ([]string, error) { return nil, nil }
	case "string":
		c := p.Get(ctx, key)
		return func() ([]string, error) { return nilIsEmpty([]string{c.Val()}, c.Err()) }
	case "hash":
		c := p.HGetAll(ctx, key)
		return func() ([]string, error) {
			var out []string
			for f, v := range c.Val() {
				out = append(out, f, v)
			}
			return nilIsEmpty(out, c.Err())
		}
	case "set":
		c := p.SMembers(ctx, key)
		return func() ([]string, error) { return nilIsEmpty(c.Val(), c.Err()) }
	case "list":
		c := p.LRange(ctx, key, 0, -1)
		return func() ([]string, error) { return nilIsEmpty(c.Val(), c.Err()) }
	case "zset":
		c := p.ZRangeWithScores(ctx, key, 0, -1)
		return func() ([]string, error) {
			var out []string
			for _, z := range c.Val() {
				out = append(out, fmt.Sprint(z.Member), strconv.FormatFloat(z.Score, 'g', -1, 64))
			}
			return nilIsEmpty(out, c.Err())
		}
	case "stream":
		c := p.XRange(ctx, key, "-", "+")
		return func() ([]string, error) {
			var out []string
			for _, msg := range c.Val() {
				for f, v := range msg.Values {
					out = append(out, f, fmt.Sprint(v))
				}
			}
			return nilIsEmpty(out, c.Err())
		}
	default:
		return func() ([]string, error) { return nil, fmt.Errorf("cannot read a value of type %q", typ) }
	}
}

// nilIsEmpty treats a key that vanished between TYPE and the read as empty.
func nilIsEmpty(v []string, err error) ([]string, error) {
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, err
}
