package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/breaker"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// redisScenarios lists the Redis scenarios after ping, in the seed suite's order. Each
// writes only keys made by c.key, so cleanup finds them all.
func (c *checker) redisScenarios() []scenario {
	return []scenario{
		{"redis.set-get", c.setGet},
		{"redis.set-ttl", c.setTTL},
		{"redis.exists", c.exists},
		{"redis.incr-decr", c.incrDecr},
		{"redis.mset-mget", c.msetMget},
		{"redis.hash", c.hash},
		{"redis.list", c.list},
		{"redis.set", c.set},
		{"redis.sorted-set", c.sortedSet},
		{"redis.scan", c.scanOwn},
		{"redis.info", c.info},
		{"redis.dbsize", c.dbsize},
		{"redis.pool", c.pool},
		{"redis.bench-set", c.benchSet},
		{"redis.bench-get", c.benchGet},
		{"redis.breaker", c.breaker},
	}
}

// key names a key in the check's namespace and remembers it for cleanup.
func (c *checker) key(name string) string {
	k := c.ns + name
	c.keys[k] = true
	return k
}

// absent names a key in the check's namespace that is never written.
func (c *checker) absent(name string) string { return c.ns + name }

// mismatch is the error of a command that answered something else than expected.
func mismatch(what string, got, want any) error {
	return fmt.Errorf("%s: got %v, want %v", what, got, want)
}

func (c *checker) setGet(ctx context.Context) (string, error) {
	k, v := c.key("string"), "value-"+randomHex(4)
	if err := c.o.Redis.Set(ctx, k, v, time.Minute).Err(); err != nil {
		return "", err
	}
	got, err := c.o.Redis.Get(ctx, k).Result()
	if err != nil || got != v {
		return "", errOr(err, mismatch("GET", got, v))
	}
	return "wrote and read back " + strconv.Quote(v), nil
}

func (c *checker) setTTL(ctx context.Context) (string, error) {
	k := c.key("ttl")
	if err := c.o.Redis.Set(ctx, k, "expiring", 30*time.Second).Err(); err != nil {
		return "", err
	}
	ttl, err := c.o.Redis.TTL(ctx, k).Result()
	if err != nil || ttl <= 0 || ttl > 30*time.Second {
		return "", errOr(err, mismatch("TTL", ttl, "0s < ttl ≤ 30s"))
	}
	return "TTL " + ttl.String() + " after SET EX 30", nil
}

func (c *checker) exists(ctx context.Context) (string, error) {
	n, err := c.o.Redis.Exists(ctx, c.key("string"), c.absent("missing")).Result()
	if err != nil || n != 1 {
		return "", errOr(err, mismatch("EXISTS of one present and one missing key", n, 1))
	}
	return "1 of 2 keys exists, as written", nil
}

func (c *checker) incrDecr(ctx context.Context) (string, error) {
	k := c.key("counter")
	for range 3 {
		if err := c.o.Redis.Incr(ctx, k).Err(); err != nil {
			return "", err
		}
	}
	n, err := c.o.Redis.Decr(ctx, k).Result()
	if err != nil || n != 2 {
		return "", errOr(err, mismatch("3 INCR then DECR", n, 2))
	}
	return "3 INCR then DECR = 2", nil
}

func (c *checker) msetMget(ctx context.Context) (string, error) {
	k1, k2, missing := c.key("m1"), c.key("m2"), c.absent("missing")
	if err := c.o.Redis.MSet(ctx, k1, "one", k2, "two").Err(); err != nil {
		return "", err
	}
	vals, err := c.o.Redis.MGet(ctx, k1, k2, missing).Result()
	if err != nil || !slices.Equal(vals, []any{"one", "two", nil}) {
		return "", errOr(err, mismatch("MGET", vals, "[one two <nil>]"))
	}
	return "MSET 2 keys, MGET 3 (one missing) = [one two nil]", nil
}

func (c *checker) hash(ctx context.Context) (string, error) {
	k := c.key("hash")
	want := map[string]string{"id": "s1", "userId": "u1", "email": "check@example.test"}
	if err := c.o.Redis.HSet(ctx, k, want).Err(); err != nil {
		return "", err
	}
	got, err := c.o.Redis.HGetAll(ctx, k).Result()
	if err != nil || !maps.Equal(got, want) {
		return "", errOr(err, mismatch("HGETALL", got, want))
	}
	if n, err := c.o.Redis.HDel(ctx, k, "email").Result(); err != nil || n != 1 {
		return "", errOr(err, mismatch("HDEL", n, 1))
	}
	return "HSET 3 fields, HGETALL matched, HDEL 1", nil
}

func (c *checker) list(ctx context.Context) (string, error) {
	k := c.key("list")
	if err := c.o.Redis.RPush(ctx, k, "a", "b", "c").Err(); err != nil {
		return "", err
	}
	got, err := c.o.Redis.LRange(ctx, k, 0, -1).Result()
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		return "", errOr(err, mismatch("LRANGE", got, "[a b c]"))
	}
	if v, err := c.o.Redis.LPop(ctx, k).Result(); err != nil || v != "a" {
		return "", errOr(err, mismatch("LPOP", v, "a"))
	}
	return "RPUSH a b c, LRANGE in order, LPOP a", nil
}

func (c *checker) set(ctx context.Context) (string, error) {
	k := c.key("set")
	if n, err := c.o.Redis.SAdd(ctx, k, "x", "y", "z", "x").Result(); err != nil || n != 3 {
		return "", errOr(err, mismatch("SADD x y z x", n, 3))
	}
	if ok, err := c.o.Redis.SIsMember(ctx, k, "y").Result(); err != nil || !ok {
		return "", errOr(err, mismatch("SISMEMBER y", ok, true))
	}
	if n, err := c.o.Redis.SCard(ctx, k).Result(); err != nil || n != 3 {
		return "", errOr(err, mismatch("SCARD", n, 3))
	}
	return "SADD deduplicated, SISMEMBER and SCARD = 3", nil
}

func (c *checker) sortedSet(ctx context.Context) (string, error) {
	k := c.key("zset")
	err := c.o.Redis.ZAdd(ctx, k, redis.Z{Score: 3, Member: "c"}, redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2, Member: "b"}).Err()
	if err != nil {
		return "", err
	}
	got, err := c.o.Redis.ZRange(ctx, k, 0, -1).Result()
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		return "", errOr(err, mismatch("ZRANGE", got, "[a b c]"))
	}
	if s, err := c.o.Redis.ZScore(ctx, k, "b").Result(); err != nil || s != 2 {
		return "", errOr(err, mismatch("ZSCORE b", s, 2))
	}
	return "ZADD 3, ZRANGE ordered by score, ZSCORE b = 2", nil
}

// scanOwn checks that SCAN finds exactly the keys the previous scenarios left.
func (c *checker) scanOwn(ctx context.Context) (string, error) {
	found, err := c.scan(ctx)
	if err != nil {
		return "", err
	}
	for k := range c.keys {
		if !found[k] {
			return "", fmt.Errorf("SCAN %s* did not return %s", c.ns, k)
		}
	}
	return fmt.Sprintf("found all %d keys under %s*", len(c.keys), c.ns), nil
}

func (c *checker) info(ctx context.Context) (string, error) {
	info := c.o.Redis.InfoMap(ctx, "server", "memory")
	if err := info.Err(); err != nil {
		return "", err
	}
	if info.Item("Server", "redis_version") == "" {
		return "", fmt.Errorf("INFO has no redis_version")
	}
	return fmt.Sprintf("redis %s, mode %s, up %ss, memory %s", info.Item("Server", "redis_version"),
		info.Item("Server", "redis_mode"), info.Item("Server", "uptime_in_seconds"), info.Item("Memory", "used_memory_human")), nil
}

func (c *checker) dbsize(ctx context.Context) (string, error) {
	n, err := c.o.Redis.DBSize(ctx).Result()
	if err != nil {
		return "", err
	}
	if n < 1 {
		return "", mismatch("DBSIZE while the check's keys exist", n, "≥ 1")
	}
	return strconv.FormatInt(n, 10) + " keys in the database", nil
}

func (c *checker) pool(context.Context) (string, error) {
	s, size := c.o.Redis.PoolStats(), c.o.PoolSize
	if _, ok := c.o.Redis.(*redis.ClusterClient); ok {
		size = 0 // a pool per node: the total has no fixed bound
	}
	detail := fmt.Sprintf("size %d per node, total %d, idle %d, hits %d, misses %d, timeouts %d",
		c.o.PoolSize, s.TotalConns, s.IdleConns, s.Hits, s.Misses, s.Timeouts)
	if s.TotalConns < 1 || (size > 0 && int(s.TotalConns) > size) {
		return "", fmt.Errorf("pool holds %d connections, want 1..%d (%s)", s.TotalConns, size, detail)
	}
	return detail, nil
}

func (c *checker) benchSet(ctx context.Context) (string, error) {
	keys := make([]string, BenchOps)
	for i := range keys {
		keys[i] = c.key("bench:" + strconv.Itoa(i))
	}
	rate, runs, err := bench(TargetSetOpsPerSec, func(i int) error { return c.o.Redis.Set(ctx, keys[i], "v", time.Minute).Err() })
	c.report.SetOpsPerSec = rate
	return throughput("SET", rate, runs, TargetSetOpsPerSec, err)
}

func (c *checker) benchGet(ctx context.Context) (string, error) {
	k := c.key("bench:0")
	rate, runs, err := bench(TargetGetOpsPerSec, func(int) error { return c.o.Redis.Get(ctx, k).Err() })
	c.report.GetOpsPerSec = rate
	return throughput("GET", rate, runs, TargetGetOpsPerSec, err)
}

// benchRuns is how many times a timed loop may run before it is judged too slow: one
// scheduler or GC pause of the checking process costs a 100-op loop its target, and that
// says nothing about Redis. The best run counts, as in any benchmark.
const benchRuns = 3

// bench runs op BenchOps times, one after the other, and returns the best rate in operations
// per second of up to benchRuns runs, stopping at the first that beats target.
func bench(target int, op func(i int) error) (best float64, runs int, err error) {
	for runs < benchRuns && best <= float64(target) {
		runs++
		start := time.Now()
		for i := range BenchOps {
			if err := op(i); err != nil {
				return 0, runs, err
			}
		}
		best = max(best, BenchOps/time.Since(start).Seconds())
	}
	return best, runs, nil
}

func throughput(cmd string, rate float64, runs, target int, err error) (string, error) {
	if err != nil {
		return "", err
	}
	detail := fmt.Sprintf("%d %ss: %.0f ops/s (target > %d)", BenchOps, cmd, rate, target)
	if runs > 1 {
		detail += fmt.Sprintf(", best of %d runs", runs)
	}
	if rate <= float64(target) {
		return "", fmt.Errorf("too slow: %s", detail)
	}
	return detail, nil
}

// errOr returns err if there is one, else the mismatch.
func errOr(err, mismatch error) error {
	if err != nil {
		return err
	}
	return mismatch
}

func (c *checker) ping(ctx context.Context) (string, error) {
	start := time.Now()
	if err := c.o.Redis.Ping(ctx).Err(); err != nil {
		return "", fmt.Errorf("cannot reach redis at %s: %w", c.o.RedisName, err)
	}
	return "PONG in " + ms(time.Since(start)), nil
}

// breaker trips a private breaker built like the production one, with the configured
// threshold but a short open time, around a call that always fails; then one successful
// probe (a Redis PING) must close it.
func (c *checker) breaker(ctx context.Context) (string, error) {
	const openFor = 100 * time.Millisecond
	failures := max(c.o.BreakerFailures, 1)
	var transitions []string
	cb := breaker.New(failures, openFor, func(from, to gobreaker.State) {
		transitions = append(transitions, from.String()+"→"+to.String())
	})
	errFailing := errors.New("always fails")
	failing := func() (any, error) { return nil, errFailing }
	for i := range failures {
		if st := cb.State(); st != gobreaker.StateClosed {
			return "", fmt.Errorf("breaker %s after %d of %d failures", st, i, failures)
		}
		_, _ = cb.Execute(failing)
	}
	if _, err := cb.Execute(failing); !errors.Is(err, gobreaker.ErrOpenState) {
		return "", fmt.Errorf("breaker did not refuse a call after %d failures (state %s)", failures, cb.State())
	}
	select {
	case <-time.After(openFor + 20*time.Millisecond):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if _, err := cb.Execute(func() (any, error) { return nil, c.o.Redis.Ping(ctx).Err() }); err != nil {
		return "", fmt.Errorf("probe after the open time: %w", err)
	}
	want := []string{"closed→open", "open→half-open", "half-open→closed"}
	if got := strings.Join(transitions, " "); got != strings.Join(want, " ") {
		return "", fmt.Errorf("breaker went %s, want %s", got, strings.Join(want, " "))
	}
	return fmt.Sprintf("opened after %d failures, refused calls while open, closed by one probe after %v", failures, openFor), nil
}

// cleanup deletes every key the check wrote, and anything else under its namespace, then
// verifies that none remain.
func (c *checker) cleanup(ctx context.Context) (string, error) {
	found, err := c.scan(ctx)
	if err != nil {
		return "", err
	}
	for k := range c.keys {
		found[k] = true
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		if err := c.o.Redis.Del(ctx, keys...).Err(); err != nil {
			return "", fmt.Errorf("delete %d keys: %w", len(keys), err)
		}
	}
	left, err := c.scan(ctx)
	if err != nil {
		return "", err
	}
	if len(left) > 0 {
		return "", fmt.Errorf("%d keys remain under %s*", len(left), c.ns)
	}
	return fmt.Sprintf("deleted %d keys under %s*, none remain", len(keys), c.ns), nil
}

// scan returns every key under the check's namespace, from every master of a cluster.
func (c *checker) scan(ctx context.Context) (map[string]bool, error) {
	found := map[string]bool{}
	var mu sync.Mutex
	scanNode := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, c.ns+"*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			found[iter.Val()] = true
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cl, ok := c.o.Redis.(*redis.ClusterClient); ok {
		err = cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scanNode(ctx, m) })
	} else {
		err = scanNode(ctx, c.o.Redis)
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s*: %w", c.ns, err)
	}
	return found, nil
}
