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
	// cluster runs two); a Redis hit costs the MGET alone. Round trips are held exactly
	// (the first script call may load it, NOSCRIPT then EVAL: the 0.1), bytes within 10 % of
	// docs/scaling.md's table, which this test produced.
	for _, tc := range []struct {
		what           string
		tokens         []string
		status         int
		trips, in, out float64 // docs/scaling.md
	}{
		{"miss (MGET, index+fill script)", fresh, http.StatusOK, 2, 965, 54},
		{"redis hit (MGET)", known, http.StatusOK, 1, 266, 280},
		{"unknown token (MGET, negative fill)", invalid, http.StatusUnauthorized, 2, 543, 67},
		{"known-invalid token (MGET)", invalid, http.StatusUnauthorized, 1, 266, 66},
	} {
		c, in, out := measure(tc.what, tc.tokens, tc.status)
		if math.Abs(c-tc.trips) > 0.1 || math.Abs(in-tc.in) > tc.in/10 || math.Abs(out-tc.out) > tc.out/10 {
			t.Errorf("%s: %.2f round trips, %.0f bytes to Redis, %.0f from it; scaling.md says %.0f, %.0f, %.0f",
				tc.what, c, in, out, tc.trips, tc.in, tc.out)
		}
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
	negative := float64(rdb.MemoryUsage(ctx, "session:neg:{"+testenv.Hash(invalid[0])+"}").Val())
	perSession := (float64(total) - n*negative) / n
	value := float64(rdb.MemoryUsage(ctx, "session:{"+testenv.Hash(fresh[0])+"}").Val())
	t.Logf("measured: %d keys for %d sessions and %d unknown tokens, %d bytes by MEMORY USAGE (%.0f per session with its index, of which %.0f the session's key; %.0f per negative entry)",
		len(keys), n, n, total, perSession, value, negative)
	// docs/scaling.md's memory figures, within 10 %.
	if math.Abs(perSession-640) > 64 || math.Abs(negative-136) > 14 {
		t.Errorf("%.0f bytes per session with its index, %.0f per negative entry; scaling.md says 640 and 136", perSession, negative)
	}
	if len(keys) != 3*n {
		t.Errorf("%d keys, want %d: a session, its user's index, a negative entry each", len(keys), 3*n)
	}
}
