package testenv_test

import (
	"context"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// plant writes key in database db of the shared Redis with write and deletes it at cleanup.
func plant(t *testing.T, rdb *redis.Client, db int, key string, write func(ctx context.Context, c *redis.Client) error) {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.DB = db
	c := redis.NewClient(opts)
	t.Cleanup(func() {
		c.Del(context.Background(), key)
		c.Close()
	})
	if err := write(context.Background(), c); err != nil {
		t.Fatalf("plant %s: %v", key, err)
	}
}

// secret returns a token shaped like the ones the fixtures issue, unique to the test.
func secret(t *testing.T) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString([]byte(testenv.Hash(t.Name())))[:43]
}

func TestTokenScanFindsATokenWhereverItIsPlanted(t *testing.T) {
	rdb := testenv.NewRedisClient(t)
	prefix := testenv.Prefix(t, rdb)
	outside := "elsewhere:" + testenv.Hash(t.Name())[:12] + ":"
	for _, tc := range []struct {
		name  string
		db    int
		plant func(ctx context.Context, c *redis.Client, key, tok string) error
		where string // a fragment the finding's location must hold
		form  string
	}{
		{"string value outside the test prefix", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.Set(ctx, key, "v1|"+tok, 0).Err()
		}, "value of", "raw"},
		{"hash field name", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.HSet(ctx, key, "token:"+tok, "1").Err()
		}, "hash part", "raw"},
		{"hash field value, base64 at an odd offset", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.HSet(ctx, key, "cookie", base64.StdEncoding.EncodeToString([]byte("sid="+tok+"; x=1"))).Err()
		}, "hash part", "base64"},
		{"set member, URL-escaped", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.SAdd(ctx, key, url.QueryEscape("a b/"+tok+"?")).Err()
		}, "set part", "raw"},
		{"zset member", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.ZAdd(ctx, key, redis.Z{Score: 1, Member: tok}).Err()
		}, "zset part", "raw"},
		{"list element, base64url", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.RPush(ctx, key, "a", base64.RawURLEncoding.EncodeToString([]byte("xy"+tok))).Err()
		}, "list part 1", "base64"}, // both alphabets agree on this one
		{"stream entry", 0, func(ctx context.Context, c *redis.Client, key, tok string) error {
			return c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: map[string]any{"event": tok}}).Err()
		}, "stream part", "raw"},
		{"key name in another database", 5, func(context.Context, *redis.Client, string, string) error {
			return nil // planted by the key name below
		}, "db 5 key", "raw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := secret(t)
			key := outside + strings.ReplaceAll(tc.name, " ", "-")
			if tc.db != 0 {
				key = outside + tok
				plant(t, rdb, tc.db, key, func(ctx context.Context, c *redis.Client) error { return c.Set(ctx, key, "1", 0).Err() })
			} else {
				plant(t, rdb, tc.db, key, func(ctx context.Context, c *redis.Client) error { return tc.plant(ctx, c, key, tok) })
			}
			found, err := testenv.TokenScan{Redis: rdb, Secrets: []string{"some-other-secret-value", tok}}.Find(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(found) == 0 {
				t.Fatalf("the planted token was not found")
			}
			for _, f := range found {
				if f.Secret != 1 || !strings.Contains(f.Where, tc.where) || !strings.HasPrefix(f.Form, tc.form) {
					t.Errorf("finding %s; want secret #1 (%s) in %q", f, tc.form, tc.where)
				}
				if strings.Contains(f.String(), tok) {
					t.Errorf("the finding prints the secret: %s", f)
				}
			}
		})
	}
	// A clean server under a prefix the sidecar would use: the hash of a token is no leak.
	tok := secret(t)
	rdb.Set(context.Background(), prefix+testenv.Hash(tok), "session", 0)
	testenv.AssertNoRawTokens(t, testenv.TokenScan{Redis: rdb, Secrets: []string{tok}})
}

func TestTokenScanFindsTokensInLogs(t *testing.T) {
	tok := secret(t)
	logs := map[string]string{
		"clean":  `{"msg":"request","tokenHash":"` + testenv.Hash(tok)[:8] + `"}`,
		"leaky":  "first line\n" + `{"msg":"request","cookie":"sid=` + url.QueryEscape(tok+"=") + `"}`,
		"base64": "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+tok)),
	}
	found, err := testenv.TokenScan{Texts: logs, Secrets: []string{tok}}.Find(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range found {
		got[f.Where] = true
	}
	if len(got) != 2 || !got["leaky line 2"] || !got["base64 line 1"] {
		t.Fatalf("findings %v; want leaky line 2 and base64 line 1", found)
	}
}
