package pgsession

import (
	"context"
	_ "embed" // SQL files
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The shipped SQL, embedded so tests and Migrate run exactly what operators run with psql.
// Unexported: the files under sql/ are the one copy.
var (
	// schemaSQL is the session schema (platform.users, platform.user_sessions), idempotent.
	//
	//go:embed sql/schema.sql
	schemaSQL string

	// notifySQL installs the change-notification triggers on DefaultChannel, idempotent.
	//
	//go:embed sql/notify.sql
	notifySQL string

	// roleSQL grants the least-privilege reader role (psql variable role, default
	// "authsidecar") SELECT on the two tables and enables row-level security with a policy
	// for it. The role must exist.
	//
	//go:embed sql/role.sql
	roleSQL string
)

// DefaultChannel is the notification channel written in sql/notify.sql.
const DefaultChannel = "authsidecar_session_changed"

// roleVariable is how sql/role.sql names the role: psql's quoted-identifier interpolation
// of the variable "role".
const roleVariable = `:"role"`

// migrateLock serialises concurrent migrations (several replicas starting at once), which
// would otherwise race on CREATE ... IF NOT EXISTS. Arbitrary, fixed key.
const migrateLock = "SELECT pg_advisory_xact_lock(7306384153017218926);\n"

var channelPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Execer runs SQL; *pgx.Conn and *pgxpool.Pool satisfy it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Migrate creates the schema and, unless channel is empty, installs the notification
// triggers on channel, all in one transaction. It may be run any number of times.
func Migrate(ctx context.Context, db Execer, channel string) error {
	script := migrateLock + schemaSQL
	if channel != "" {
		if !channelPattern.MatchString(channel) {
			return fmt.Errorf("migrate: channel %q is not a lower-case identifier", channel)
		}
		// The pattern leaves nothing to escape inside a string literal.
		script += "\n" + strings.ReplaceAll(notifySQL, "'"+DefaultChannel+"'", "'"+channel+"'")
	}
	// Without arguments pgx uses the simple protocol: one implicit transaction.
	if _, err := db.Exec(ctx, script); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// CreateReaderRole creates the login role with password (none when empty) and applies
// sql/role.sql to it, in one transaction. It fails if the role exists.
func CreateReaderRole(ctx context.Context, db Execer, role, password string) error {
	if role == "" {
		return fmt.Errorf("create reader role: empty role name")
	}
	if strings.ContainsRune(password, 0) {
		return fmt.Errorf("create reader role: password contains NUL")
	}
	ident := pgx.Identifier{role}.Sanitize()
	create := "CREATE ROLE " + ident + " LOGIN"
	if password != "" {
		create += " PASSWORD " + quoteLiteral(password)
	}
	script := create + ";\n" + strings.ReplaceAll(stripComments(roleSQL), roleVariable, ident)
	if _, err := db.Exec(ctx, script); err != nil {
		return fmt.Errorf("create reader role: %w", err)
	}
	return nil
}

// stripComments drops whole-line "--" comments, so a substituted name containing a line
// break cannot escape a comment into executable SQL, and psql's meta-commands (lines that
// start with a backslash), which only psql understands.
func stripComments(sql string) string {
	lines := strings.Split(sql, "\n")
	kept := lines[:0]
	for _, line := range lines {
		if line := strings.TrimSpace(line); !strings.HasPrefix(line, "--") && !strings.HasPrefix(line, `\`) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// quoteLiteral quotes s as an SQL string literal whatever standard_conforming_strings is,
// as Postgres's quote_literal does.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}
