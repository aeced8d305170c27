package authcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/authsidecar/authsidecar/pgsession"
)

// CheckOptions configures Check.
type CheckOptions struct {
	// Redis is the client to check; nil skips every Redis scenario with RedisSkip as the
	// reason.
	Redis     *redis.Client
	RedisSkip string
	// Prefix is SESSION_KEY_PREFIX. The check writes only under Prefix+"check:<random>:"
	// and deletes all of it before it returns.
	Prefix string
	// BreakerFailures is the production breaker's threshold, exercised on a private breaker.
	BreakerFailures uint32
	// Postgres is the session store to check; nil skips the Postgres scenarios.
	Postgres CheckSource
	// Timeout bounds each scenario; zero means 5s.
	Timeout time.Duration
}

// CheckSource is the Postgres side of the check; *pgsession.Store is one.
type CheckSource interface {
	Ping(ctx context.Context) error
	ExplainLookup(ctx context.Context) (pgsession.LookupPlan, error)
}

// CheckReport summarises a Check run.
type CheckReport struct {
	Passed, Failed, Skipped int
	// Failures holds "name: reason" for each failed scenario.
	Failures []string
	// SetOpsPerSec and GetOpsPerSec are the timed loops' throughput; zero if not measured.
	SetOpsPerSec, GetOpsPerSec float64
}

// OK reports whether every scenario that ran passed.
func (r CheckReport) OK() bool { return r.Failed == 0 }

// Throughput targets of the timed loops, from the seed design's benchmark.
const (
	TargetSetOpsPerSec = 2000
	TargetGetOpsPerSec = 3000
)

// benchOps is the length of each timed loop.
const benchOps = 100

// Check runs the connection suite against Redis and Postgres and writes one line per
// scenario to w ("PASS name detail", "FAIL name reason" or "SKIP name reason"), then a
// summary. An unreachable store fails its ping scenario and skips the rest of its
// scenarios, so the run ends within a few timeouts.
func Check(ctx context.Context, o CheckOptions, w io.Writer) CheckReport {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	c := &checker{o: o, w: w, ns: o.Prefix + "check:" + randomHex(6) + ":", keys: map[string]bool{}}
	c.checkRedis(ctx)
	c.checkPostgres(ctx)
	r := c.report
	fmt.Fprintf(w, "check: %d passed, %d failed, %d skipped; SET %s, GET %s\n", r.Passed, r.Failed, r.Skipped,
		opsPerSec(r.SetOpsPerSec, TargetSetOpsPerSec), opsPerSec(r.GetOpsPerSec, TargetGetOpsPerSec))
	return r
}

func opsPerSec(rate float64, target int) string {
	if rate == 0 {
		return "not measured"
	}
	return fmt.Sprintf("%.0f ops/s (target > %d)", rate, target)
}

// scenario is one named step; it returns the detail printed after PASS.
type scenario struct {
	name string
	run  func(ctx context.Context) (string, error)
}

type checker struct {
	o      CheckOptions
	w      io.Writer
	ns     string          // every key the check writes starts with it
	keys   map[string]bool // keys written, deleted by cleanup
	report CheckReport
}

func (c *checker) checkRedis(ctx context.Context) {
	ping, steps, cleanup := scenario{"redis.ping", c.ping}, c.redisScenarios(), scenario{"redis.cleanup", c.cleanup}
	if c.o.Redis == nil {
		c.skipAll(append(append([]scenario{ping}, steps...), cleanup), c.o.RedisSkip)
		return
	}
	if !c.run(ctx, ping) {
		c.skipAll(append(steps, cleanup), "redis unreachable")
		return
	}
	defer c.run(context.WithoutCancel(ctx), cleanup)
	for _, s := range steps {
		c.run(ctx, s)
	}
}

func (c *checker) checkPostgres(ctx context.Context) {
	if c.o.Postgres == nil {
		c.skipAll([]scenario{{name: "postgres.ping"}, {name: "postgres.lookup-plan"}}, "postgres not configured")
		return
	}
	if !c.run(ctx, scenario{"postgres.ping", c.pgPing}) {
		c.skipAll([]scenario{{name: "postgres.lookup-plan"}}, "postgres unreachable")
		return
	}
	c.run(ctx, scenario{"postgres.lookup-plan", c.lookupPlan})
}

// run runs s under its own deadline, prints its line and reports whether it passed.
func (c *checker) run(ctx context.Context, s scenario) bool {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	detail, err := s.run(ctx)
	if err != nil {
		c.report.Failed++
		c.report.Failures = append(c.report.Failures, s.name+": "+oneLine(err))
		fmt.Fprintf(c.w, "FAIL %s %s\n", s.name, oneLine(err))
		return false
	}
	c.report.Passed++
	fmt.Fprintf(c.w, "PASS %s %s\n", s.name, detail)
	return true
}

func (c *checker) skipAll(steps []scenario, reason string) {
	for _, s := range steps {
		c.report.Skipped++
		fmt.Fprintf(c.w, "SKIP %s %s\n", s.name, reason)
	}
}

func (c *checker) ping(ctx context.Context) (string, error) {
	start := time.Now()
	if err := c.o.Redis.Ping(ctx).Err(); err != nil {
		return "", fmt.Errorf("cannot reach redis at %s: %w", c.o.Redis.Options().Addr, err)
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
	cb := newBreaker(failures, openFor, func(from, to gobreaker.State) {
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

// scan returns every key under the check's namespace.
func (c *checker) scan(ctx context.Context) (map[string]bool, error) {
	found := map[string]bool{}
	iter := c.o.Redis.Scan(ctx, 0, c.ns+"*", 1000).Iterator()
	for iter.Next(ctx) {
		found[iter.Val()] = true
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan %s*: %w", c.ns, err)
	}
	return found, nil
}

func (c *checker) pgPing(ctx context.Context) (string, error) {
	start := time.Now()
	if err := c.o.Postgres.Ping(ctx); err != nil {
		return "", fmt.Errorf("cannot reach postgres: %w", err)
	}
	return "answered in " + ms(time.Since(start)), nil
}

func (c *checker) lookupPlan(ctx context.Context) (string, error) {
	p, err := c.o.Postgres.ExplainLookup(ctx)
	switch {
	case err != nil:
		return "", err
	case p.TokenIndex == "":
		return "", errors.New("platform.user_sessions has no unique index on token_hash")
	case !p.UsesTokenIndex():
		return "", fmt.Errorf("session lookup reads user_sessions with %s, not through %s", p.Scan, p.TokenIndex)
	}
	return fmt.Sprintf("session lookup uses %s on %s", p.Scan, p.TokenIndex), nil
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
}

// oneLine keeps a report line one line whatever an error says.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
