// Package check is the operator's connection suite, `authsidecar check`: it exercises the
// configured Redis (the data types, SCAN, INFO, pool, timed SET/GET, the breaker) and
// Postgres (reachability, and how the database was prepared: schema, the role's grants and
// row-level-security policy, the change-notification triggers, the lookup's index plan),
// one line per scenario, with a one-line fix under each failure it knows how to fix, and
// removes every key it wrote.
package check

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

	"github.com/authsidecar/authsidecar/pgsession"
)

// Options configures Check.
type Options struct {
	// Redis is the client to check; nil skips every Redis scenario with RedisSkip as the
	// reason.
	Redis     redis.UniversalClient
	RedisSkip string
	// RedisName says which Redis this is in messages: its mode and address, no password.
	RedisName string
	// PoolSize is REDIS_POOL_SIZE, the most connections the pool may hold per node.
	PoolSize int
	// Prefix is SESSION_KEY_PREFIX. The check writes only under Prefix+"check:{<random>}:"
	// (one hash tag: one cluster slot, so multi-key commands work in Cluster mode) and
	// deletes all of it before it returns.
	Prefix string
	// BreakerFailures is the production breaker's threshold, exercised on a private breaker.
	BreakerFailures uint32
	// Postgres is the session store to check; nil skips the Postgres scenarios.
	Postgres Postgres
	// Channel is DB_NOTIFY_CHANNEL, the channel the change-notification triggers must
	// notify; empty (none) skips that scenario.
	Channel string
	// Timeout bounds each scenario; zero means 5s.
	Timeout time.Duration
}

// Postgres is the Postgres side of the check; *pgsession.Store is one.
type Postgres interface {
	Ping(ctx context.Context) error
	// Inspect reports how the database was prepared: schema, grants, RLS, triggers.
	Inspect(ctx context.Context) (pgsession.Deployment, error)
	ExplainLookup(ctx context.Context) (pgsession.LookupPlan, error)
}

// Report summarises a Check run.
type Report struct {
	Passed, Failed, Skipped int
	// Failures holds "name: reason" for each failed scenario.
	Failures []string
	// SetOpsPerSec and GetOpsPerSec are the timed loops' throughput; zero if not measured.
	SetOpsPerSec, GetOpsPerSec float64
}

// OK reports whether every scenario that ran passed.
func (r Report) OK() bool { return r.Failed == 0 }

// Throughput targets of the timed loops, from the seed design's benchmark.
const (
	TargetSetOpsPerSec = 2000
	TargetGetOpsPerSec = 3000
)

// BenchOps is the length of each timed loop.
const BenchOps = 100

// Run runs the connection suite against Redis and Postgres and writes one line per
// scenario to w ("PASS name detail", "FAIL name reason" or "SKIP name reason"), then a
// summary. An unreachable store fails its ping scenario and skips the rest of its
// scenarios, so the run ends within a few timeouts.
func Run(ctx context.Context, o Options, w io.Writer) Report {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	c := &checker{o: o, w: w, ns: o.Prefix + "check:{" + randomHex(6) + "}:", keys: map[string]bool{}}
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
	o      Options
	w      io.Writer
	ns     string          // every key the check writes starts with it
	keys   map[string]bool // keys written, deleted by cleanup
	pg     deployment      // read by postgres.schema for the Postgres scenarios after it
	report Report
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

// run runs s under its own deadline, prints its line and reports whether it passed. A
// failure with a fix (withFix) prints it on the next line, indented: "  fix: …".
func (c *checker) run(ctx context.Context, s scenario) bool {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	detail, err := s.run(ctx)
	if err != nil {
		c.report.Failed++
		c.report.Failures = append(c.report.Failures, s.name+": "+oneLine(err))
		fmt.Fprintf(c.w, "FAIL %s %s\n", s.name, oneLine(err))
		var f fixError
		if errors.As(err, &f) {
			fmt.Fprintf(c.w, "  fix: %s\n", f.fix)
		}
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

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
}

// fixError is a failure and the one-line fix the check prints under it.
type fixError struct {
	err error
	fix string
}

func (e fixError) Error() string { return e.err.Error() }
func (e fixError) Unwrap() error { return e.err }

// withFix attaches the fix a failing scenario prints: what to run, as whom.
func withFix(err error, fix string) error { return fixError{err: err, fix: fix} }

// oneLine keeps a report line one line whatever an error says.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
