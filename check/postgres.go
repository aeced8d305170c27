package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authsidecar/authsidecar/pgsession"
)

// The Postgres scenarios, in order. After ping, each reads the Deployment that
// postgres.schema inspected; a missing schema skips the rest.
var pgScenarioNames = []string{"postgres.ping", "postgres.schema", "postgres.grants",
	"postgres.row-security", "postgres.trigger", "postgres.lookup-plan"}

// The fixes the check prints, one line each: which file to run, as whom. The files are
// idempotent, so running one again is always safe.
const (
	fixSchema = `the app's migrations create platform.users and platform.user_sessions; for a new database load pgsession/sql/schema.sql as their owner (psql "$OWNER_DATABASE_URL" -f pgsession/sql/schema.sql), or run scripts/db-prepare.sh with LOAD_SCHEMA=true`
	fixRole   = `as the owner of the platform tables: psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -v role=%s -f pgsession/sql/role.sql`
	fixNotify = `as the owner of the platform tables: psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f pgsession/sql/notify.sql`
	fixLogin  = `as a superuser or a role with CREATEROLE: psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 -v role=<the user in DATABASE_URL> -v password=<its password> -f pgsession/sql/login-role.sql`
	fixIndex  = `as the owner of the platform tables: CREATE UNIQUE INDEX CONCURRENTLY user_sessions_token_hash_key ON platform.user_sessions (token_hash)`
	// An index a failed CREATE INDEX CONCURRENTLY left invalid exists but is never used.
	fixReindex = `as the owner of the platform tables: REINDEX INDEX CONCURRENTLY platform.%s (psql's \d platform.user_sessions shows INVALID after a failed build), then ANALYZE platform.user_sessions`
)

func (c *checker) checkPostgres(ctx context.Context) {
	if c.o.Postgres == nil {
		c.skipNames(pgScenarioNames, "postgres not configured")
		return
	}
	if !c.run(ctx, scenario{"postgres.ping", c.pgPing}) {
		c.skipNames(pgScenarioNames[1:], "postgres unreachable")
		return
	}
	if !c.run(ctx, scenario{"postgres.schema", c.pgSchema}) {
		c.skipNames(pgScenarioNames[2:], "no session schema")
		return
	}
	granted := c.run(ctx, scenario{"postgres.grants", c.pgGrants})
	c.run(ctx, scenario{"postgres.row-security", c.pgRowSecurity})
	if c.o.Channel == "" {
		c.skipNames([]string{"postgres.trigger"}, "DB_NOTIFY_CHANNEL is none")
	} else {
		c.run(ctx, scenario{"postgres.trigger", c.pgTrigger})
	}
	if !granted {
		// EXPLAIN needs the same privileges as the lookup.
		c.skipNames([]string{"postgres.lookup-plan"}, "the role cannot read the tables (postgres.grants)")
		return
	}
	c.run(ctx, scenario{"postgres.lookup-plan", c.lookupPlan})
}

func (c *checker) skipNames(names []string, reason string) {
	steps := make([]scenario, len(names))
	for i, n := range names {
		steps[i] = scenario{name: n}
	}
	c.skipAll(steps, reason)
}

func (c *checker) pgPing(ctx context.Context) (string, error) {
	start := time.Now()
	err := c.o.Postgres.Ping(ctx)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000"):
		// Postgres answers a missing role as it answers a wrong password.
		return "", withFix(fmt.Errorf("cannot log in to postgres: %w", err), fixLogin)
	case err != nil:
		return "", fmt.Errorf("cannot reach postgres: %w", err)
	}
	return "answered in " + ms(time.Since(start)), nil
}

// pgSchema inspects the database once for the scenarios after it.
func (c *checker) pgSchema(ctx context.Context) (string, error) {
	d, err := c.o.Postgres.Inspect(ctx)
	if err != nil {
		return "", err
	}
	c.pg = deployment{d}
	var missing []string
	if !d.Schema {
		missing = append(missing, "schema platform")
	}
	for _, name := range []string{"users", "user_sessions"} {
		if c.pg.table(name) == nil {
			missing = append(missing, "table platform."+name)
		}
	}
	if len(missing) > 0 {
		return "", withFix(fmt.Errorf("no %s in this database", strings.Join(missing, ", no ")), fixSchema)
	}
	return "platform.users and platform.user_sessions exist", nil
}

func (c *checker) pgGrants(context.Context) (string, error) {
	d := c.pg
	if d.Superuser {
		return "connected as superuser " + d.Role + ", which may read everything; run the sidecar as a least-privilege role (pgsession/sql/role.sql)", nil
	}
	var missing []string
	if !d.SchemaUsage {
		missing = append(missing, "USAGE on schema platform")
	}
	for _, t := range d.Tables {
		if !t.Select {
			missing = append(missing, "SELECT on platform."+t.Name)
		}
	}
	if len(missing) > 0 {
		return "", withFix(fmt.Errorf("role %s lacks %s", d.Role, strings.Join(missing, ", ")), fmt.Sprintf(fixRole, d.Role))
	}
	return "role " + d.Role + " has USAGE on schema platform and SELECT on both tables", nil
}

func (c *checker) pgRowSecurity(context.Context) (string, error) {
	d := c.pg
	var hidden, covered []string
	for _, t := range d.Tables {
		switch {
		case !t.RowSecurity:
		case d.Superuser || d.BypassRLS:
			covered = append(covered, "platform."+t.Name+" (role bypasses RLS)")
		case t.Owner && !t.ForceRowSecurity:
			covered = append(covered, "platform."+t.Name+" (role owns it)")
		case len(t.Policies) == 0:
			hidden = append(hidden, "platform."+t.Name)
		default:
			covered = append(covered, "platform."+t.Name+" (policy "+strings.Join(t.Policies, ", ")+")")
		}
	}
	switch {
	case len(hidden) > 0:
		return "", withFix(fmt.Errorf("row-level security is on for %s and no policy lets role %s read it: every session would be refused",
			strings.Join(hidden, " and "), d.Role), fmt.Sprintf(fixRole, d.Role))
	case len(covered) == 0:
		return "row-level security is off on both tables", nil
	}
	return "row-level security lets " + d.Role + " read " + strings.Join(covered, ", "), nil
}

// pgTrigger checks that an enabled row trigger notifies DB_NOTIFY_CHANNEL on UPDATE and
// on DELETE of each table, as notify.sql installs them; without them a revocation made in
// SQL reaches the caches only when the cached copies expire.
func (c *checker) pgTrigger(context.Context) (string, error) {
	var missing, found, disabled, elsewhere []string
	for _, table := range []string{"user_sessions", "users"} {
		update, del := false, false
		for _, t := range c.pg.Triggers {
			ours := strings.Contains(t.Name, "authsidecar") || strings.Contains(t.Function, "authsidecar")
			switch {
			case t.Table != table:
			case !t.Enabled:
				if ours {
					disabled = append(disabled, t.Name)
				}
			case !slices.Contains(t.Channels, c.o.Channel):
				if ours {
					elsewhere = append(elsewhere, t.Channels...)
				}
			default:
				update, del = update || t.OnUpdate, del || t.OnDelete
				found = append(found, t.Name)
			}
		}
		if !update {
			missing = append(missing, "UPDATE of platform."+table)
		}
		if !del {
			missing = append(missing, "DELETE from platform."+table)
		}
	}
	if len(missing) == 0 {
		return fmt.Sprintf("%s notify %q", strings.Join(found, ", "), c.o.Channel), nil
	}
	msg := fmt.Sprintf("no enabled trigger notifies %q on %s, so revocations made in SQL reach cached sessions only when they expire",
		c.o.Channel, strings.Join(missing, ", "))
	if len(disabled) > 0 {
		msg += " (disabled: " + strings.Join(disabled, ", ") + ")"
	}
	if slices.Sort(elsewhere); len(elsewhere) > 0 {
		other := slices.Compact(elsewhere)
		return "", withFix(fmt.Errorf("%s (the shipped triggers notify %q)", msg, other),
			fmt.Sprintf("set DB_NOTIFY_CHANNEL=%s, or as the owner of the platform tables reinstall notify.sql with %q in place of %q (docs/deploying.md#installing-the-trigger)",
				other[0], c.o.Channel, other[0]))
	}
	return "", withFix(errors.New(msg), fixNotify)
}

func (c *checker) lookupPlan(ctx context.Context) (string, error) {
	p, err := c.o.Postgres.ExplainLookup(ctx)
	switch {
	case err != nil:
		return "", err
	case p.TokenIndex == "":
		return "", withFix(errors.New("platform.user_sessions has no unique index on token_hash: every lookup scans the table"), fixIndex)
	case p.Scan == "":
		// The planner dropped the scan: row-level security hides every row from this role.
		return "", withFix(fmt.Errorf("session lookup reads no row of user_sessions: row-level security hides them all from role %s", c.pg.Role),
			fmt.Sprintf(fixRole, c.pg.Role))
	case !p.UsesTokenIndex():
		return "", withFix(fmt.Errorf("session lookup reads user_sessions with %s, not through %s", p.Scan, p.TokenIndex),
			fmt.Sprintf(fixReindex, p.TokenIndex))
	}
	return fmt.Sprintf("session lookup uses %s on %s", p.Scan, p.TokenIndex), nil
}

// table returns the named session table, nil when it does not exist.
func (d *deployment) table(name string) *pgsession.Table {
	for i := range d.Tables {
		if d.Tables[i].Name == name {
			return &d.Tables[i]
		}
	}
	return nil
}

// deployment adds lookups to pgsession.Deployment.
type deployment struct{ pgsession.Deployment }
