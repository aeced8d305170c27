package check

import (
	"context"
	"errors"
	"fmt"
	"time"
)

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
