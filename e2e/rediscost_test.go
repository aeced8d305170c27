package e2e

// What each kind of request costs Redis, counted on a private server: the commands and bytes
// behind docs/scaling.md, held so that a change that adds a round trip turns a test red.

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// redisStats reads INFO: the commands clients sent (MGET, scripts; the commands a script runs
// are not counted) and the bytes in and out.
func redisStats(t *testing.T, rdb *redis.Client) (sent, in, out int) {
	t.Helper()
	info := rdb.InfoMap(context.Background(), "stats", "commandstats")
	if err := info.Err(); err != nil {
		t.Fatal(err)
	}
	n := func(section, k string) int { v, _ := strconv.Atoi(info.Item(section, k)); return v }
	calls := func(cmd string) int {
		_, rest, _ := strings.Cut(info.Item("Commandstats", "cmdstat_"+cmd), "calls=")
		v, _ := strconv.Atoi(strings.Split(rest, ",")[0])
		return v
	}
	return calls("mget") + calls("evalsha") + calls("eval"),
		n("Stats", "total_net_input_bytes"), n("Stats", "total_net_output_bytes")
}

func TestRedisCostPerRequest(t *testing.T) {
	st := newStack(t)
	srv := testenv.StartRedis(t)
	rdb := privateClient(t, srv)
	up := NewUpstream(t, echoUser)
	// No change feed: its resync and the health probe would add commands of their own.
	env := st.env(up.URL, map[string]string{"REDIS_URL": srv.URL(), "DB_NOTIFY_CHANNEL": "none",
		"LOCAL_CACHE_TTL": "0", "SESSION_KEY_PREFIX": "session:", "INVALID_TOKEN_RATE": "0"})
	sc := StartSidecar(t, env)
	const n = 50
	var fresh, known []string
	for range n {
		token, _, _ := st.session(t, testenv.SessionSpec{UserAgent: strings.Repeat("u", 111)})
		fresh = append(fresh, token)
	}
	known = fresh
	measure := func(what string, tokens []string, status int) (cmds, in, out float64) {
		t.Helper()
		c0, i0, o0 := redisStats(t, rdb)
		for _, tok := range tokens {
			if r := sc.Get(t, "/api/load", tok); r.Status != status {
				t.Fatalf("%s: %d, want %d", what, r.Status, status)
			}
		}
		c1, i1, o1 := redisStats(t, rdb)
		k := float64(len(tokens))
		cmds, in, out = float64(c1-c0)/k, float64(i1-i0)/k, float64(o1-o0)/k
		t.Logf("measured: %s: %.1f round trips, %.0f bytes in, %.0f bytes out per request", what, cmds, in, out)
		return cmds, in, out
	}
	var invalid []string
	for i := range n {
		invalid = append(invalid, "unknown-token-"+strconv.Itoa(i))
	}
	// A miss costs the MGET, then one script that indexes and writes the session (a
	// cluster runs two); a Redis hit costs the MGET alone.
	if c, _, _ := measure("miss (MGET, index+fill script)", fresh, http.StatusOK); math.Abs(c-2) > 0.1 { // the first script call may load it (NOSCRIPT, EVAL)
		t.Errorf("a miss costs %.2f Redis round trips, want 2", c)
	}
	if c, _, _ := measure("redis hit (MGET)", known, http.StatusOK); math.Abs(c-1) > 0.1 { // the first script call may load it (NOSCRIPT, EVAL)
		t.Errorf("a Redis hit costs %.2f Redis round trips, want 1", c)
	}
	if c, _, _ := measure("unknown token (MGET, negative fill)", invalid, http.StatusUnauthorized); math.Abs(c-2) > 0.1 { // the first script call may load it (NOSCRIPT, EVAL)
		t.Errorf("an unknown token costs %.2f Redis round trips, want 2", c)
	}
	if c, _, _ := measure("known-invalid token (MGET)", invalid, http.StatusUnauthorized); math.Abs(c-1) > 0.1 { // the first script call may load it (NOSCRIPT, EVAL)
		t.Errorf("a known-invalid token costs %.2f Redis round trips, want 1", c)
	}

	// Memory: a session, its share of its user's index, and nothing else per session.
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "session:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, k := range keys {
		total += rdb.MemoryUsage(ctx, k).Val()
	}
	t.Logf("measured: %d keys for %d sessions and %d unknown tokens, %d bytes by MEMORY USAGE (%.0f per session with its index, %d per negative entry)",
		len(keys), n, n, total, float64(total-int64(n)*rdb.MemoryUsage(ctx, "session:neg:{"+testenv.Hash(invalid[0])+"}").Val())/n,
		rdb.MemoryUsage(ctx, "session:neg:{"+testenv.Hash(invalid[0])+"}").Val())
	if len(keys) != 3*n {
		t.Errorf("%d keys, want %d: a session, its user's index, a negative entry each", len(keys), 3*n)
	}
}
