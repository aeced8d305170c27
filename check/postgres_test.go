package check_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/check"
	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// openStore opens a store on dsn, closed at cleanup.
func openStore(tb testing.TB, dsn string) *pgsession.Store {
	tb.Helper()
	store, err := pgsession.Open(context.Background(), pgsession.Options{URL: dsn, QueryTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(store.Close)
	return store
}

// roleOf returns the user name in a DSN.
func roleOf(tb testing.TB, dsn string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return u.User.Username()
}

// mistake is a deployment mistake made on a freshly migrated database, and what the check
// must say about it: the scenario that fails, its verdict and its one-line fix.
type mistake struct {
	name string
	// asReader connects as a least-privilege role (testenv's ReaderRole, made with
	// pgsession/sql/role.sql) instead of the superuser.
	asReader bool
	// sql breaks the database, run as the superuser; %[1]s is the reader role, quoted.
	sql string
	// channel overrides DB_NOTIFY_CHANNEL (default: the channel the triggers notify).
	channel                string
	scenario, verdict, fix string
}

var mistakes = []mistake{
	{name: "no schema", sql: `DROP SCHEMA platform CASCADE`, scenario: "postgres.schema",
		verdict: "FAIL no schema platform, no table platform.users, no table platform.user_sessions in this database",
		fix:     "load pgsession/sql/schema.sql as their owner"},
	{name: "no session table", sql: `DROP TABLE platform.user_sessions`, scenario: "postgres.schema",
		verdict: "FAIL no table platform.user_sessions in this database", fix: "pgsession/sql/schema.sql"},
	{name: "no session triggers", scenario: "postgres.trigger",
		sql: `DROP TRIGGER authsidecar_session_updated ON platform.user_sessions;
		      DROP TRIGGER authsidecar_session_deleted ON platform.user_sessions`,
		verdict: `FAIL no enabled trigger notifies "%[2]s" on UPDATE of platform.user_sessions, DELETE from platform.user_sessions`,
		fix:     `as the owner of the platform tables: psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f pgsession/sql/notify.sql`},
	{name: "no user triggers", scenario: "postgres.trigger",
		sql:     `DROP TRIGGER authsidecar_user_updated ON platform.users; DROP TRIGGER authsidecar_user_deleted ON platform.users`,
		verdict: `FAIL no enabled trigger notifies "%[2]s" on UPDATE of platform.users, DELETE from platform.users`,
		fix:     "-f pgsession/sql/notify.sql"},
	{name: "trigger disabled", scenario: "postgres.trigger",
		sql:     `ALTER TABLE platform.users DISABLE TRIGGER authsidecar_user_deleted`,
		verdict: `FAIL no enabled trigger notifies "%[2]s" on DELETE from platform.users, so revocations made in SQL reach cached sessions only when they expire (disabled: authsidecar_user_deleted)`,
		fix:     "-f pgsession/sql/notify.sql"},
	{name: "triggers on another channel", channel: "another_channel", scenario: "postgres.trigger",
		verdict: `FAIL no enabled trigger notifies "another_channel" on`,
		fix:     `set DB_NOTIFY_CHANNEL=%[2]s, or as the owner of the platform tables reinstall notify.sql`},
	{name: "reader without SELECT", asReader: true, scenario: "postgres.grants",
		sql:     `REVOKE SELECT ON platform.users FROM %[1]s`,
		verdict: "FAIL role %[3]s lacks SELECT on platform.users",
		fix:     `as the owner of the platform tables: psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -v role=%[3]s -f pgsession/sql/role.sql`},
	{name: "reader without USAGE", asReader: true, scenario: "postgres.grants",
		sql:     `REVOKE USAGE ON SCHEMA platform FROM %[1]s`,
		verdict: "FAIL role %[3]s lacks USAGE on schema platform", fix: "-v role=%[3]s -f pgsession/sql/role.sql"},
	{name: "row-level security without policy", asReader: true, scenario: "postgres.row-security",
		sql:     `DROP POLICY %[1]s ON platform.user_sessions`,
		verdict: "FAIL row-level security is on for platform.user_sessions and no policy lets role %[3]s read it: every session would be refused",
		fix:     "-v role=%[3]s -f pgsession/sql/role.sql"},
	{name: "no policy on either table", asReader: true, scenario: "postgres.row-security",
		sql:     `DROP POLICY %[1]s ON platform.user_sessions; DROP POLICY %[1]s ON platform.users`,
		verdict: "FAIL row-level security is on for platform.user_sessions and platform.users and no policy lets role %[3]s read it",
		fix:     "-v role=%[3]s -f pgsession/sql/role.sql"},
	// The planner then drops the scan altogether: the check used to print "reads
	// user_sessions with , not through user_sessions_token_hash_key".
	{name: "lookup plan when row-level security hides every row", asReader: true, scenario: "postgres.lookup-plan",
		sql:     `DROP POLICY %[1]s ON platform.user_sessions; DROP POLICY %[1]s ON platform.users`,
		verdict: "FAIL session lookup reads no row of user_sessions: row-level security hides them all from role %[3]s",
		fix:     "-v role=%[3]s -f pgsession/sql/role.sql"},
	{name: "no token index", scenario: "postgres.lookup-plan",
		sql:     `ALTER TABLE platform.user_sessions DROP CONSTRAINT user_sessions_token_hash_key`,
		verdict: "FAIL platform.user_sessions has no unique index on token_hash: every lookup scans the table",
		fix:     "CREATE UNIQUE INDEX CONCURRENTLY user_sessions_token_hash_key ON platform.user_sessions (token_hash)"},
}

// TestCheckCatchesDeploymentMistakes makes each mistake on a real database and expects
// its scenario to fail with the verdict and the fix, and every other scenario that runs
// to pass.
func TestCheckCatchesDeploymentMistakes(t *testing.T) {
	for _, m := range mistakes {
		t.Run(m.name, func(t *testing.T) {
			db := testenv.NewDB(t)
			dsn := db.URL
			if m.asReader {
				dsn = db.ReaderRole(t)
			}
			role := roleOf(t, dsn)
			if m.sql != "" {
				sql := strings.ReplaceAll(m.sql, "%[1]s", pgx.Identifier{role}.Sanitize())
				if _, err := db.Pool.Exec(context.Background(), sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			channel := db.Channel
			if m.channel != "" {
				channel = m.channel
			}
			run := runCheck(t, check.Options{Postgres: openStore(t, dsn), Channel: channel, RedisSkip: "off"})
			expand := strings.NewReplacer("%[2]s", db.Channel, "%[3]s", role)
			if got, want := run.verdicts[m.scenario], expand.Replace(m.verdict); !strings.HasPrefix(got, want) {
				t.Errorf("%s = %q\nwant it to start %q", m.scenario, got, want)
			}
			if got, want := run.fixes[m.scenario], expand.Replace(m.fix); !strings.Contains(got, want) {
				t.Errorf("%s fix = %q\nwant it to contain %q", m.scenario, got, want)
			}
			for _, name := range run.names {
				if v := run.verdicts[name]; name != m.scenario && strings.HasPrefix(v, "FAIL ") && !dependsOn(name, m) {
					t.Errorf("%s also failed: %s", name, v)
				}
			}
		})
	}
}

// dependsOn reports the scenarios a mistake also breaks: with every row hidden the lookup
// plan cannot read the table, and a hidden table fails both RLS scenarios.
func dependsOn(scenario string, m mistake) bool {
	return strings.Contains(m.sql, "DROP POLICY") && (scenario == "postgres.row-security" || scenario == "postgres.lookup-plan")
}

func TestCheckPassesForTheLeastPrivilegeRole(t *testing.T) {
	db := testenv.NewDB(t)
	dsn := db.ReaderRole(t)
	role := roleOf(t, dsn)
	run := runCheck(t, check.Options{Postgres: openStore(t, dsn), Channel: db.Channel, RedisSkip: "off"})
	want := map[string]string{
		"postgres.schema":       "PASS platform.users and platform.user_sessions exist",
		"postgres.grants":       "PASS role " + role + " has USAGE on schema platform and SELECT on both tables",
		"postgres.row-security": "PASS row-level security lets " + role + " read platform.user_sessions (policy " + role + "), platform.users (policy " + role + ")",
		"postgres.trigger":      `PASS authsidecar_session_deleted, authsidecar_session_updated, authsidecar_user_deleted, authsidecar_user_updated notify "` + db.Channel + `"`,
		"postgres.lookup-plan":  "PASS session lookup uses Index Scan on user_sessions_token_hash_key",
	}
	for name, v := range want {
		if got := run.verdicts[name]; got != v {
			t.Errorf("%s = %q\nwant %q", name, got, v)
		}
	}
	if !run.report.OK() || len(run.fixes) != 0 {
		t.Errorf("report %+v, fixes %v", run.report, run.fixes)
	}
}

func TestCheckSaysHowToCreateTheLoginRole(t *testing.T) {
	db := testenv.NewDB(t)
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("authsidecar_missing_"+strings.Repeat("x", 8), "s3cret-password")
	run := runCheck(t, check.Options{Postgres: openStore(t, u.String()), Channel: db.Channel, RedisSkip: "off"})
	if v := run.verdicts["postgres.ping"]; !strings.HasPrefix(v, "FAIL cannot log in to postgres: ") || strings.Contains(v, "s3cret") {
		t.Errorf("postgres.ping = %q", v)
	}
	if fix := run.fixes["postgres.ping"]; !strings.Contains(fix, "-f pgsession/sql/login-role.sql") || !strings.Contains(fix, "CREATEROLE") {
		t.Errorf("fix = %q, want login-role.sql as a CREATEROLE role", fix)
	}
	if v := run.verdicts["postgres.schema"]; v != "SKIP postgres unreachable" {
		t.Errorf("postgres.schema = %q", v)
	}
}

func TestCheckSkipsTheTriggerWithoutNotifyChannel(t *testing.T) {
	db := testenv.NewDB(t)
	run := runCheck(t, check.Options{Postgres: db.OpenStore(t), RedisSkip: "off"})
	if v := run.verdicts["postgres.trigger"]; v != "SKIP DB_NOTIFY_CHANNEL is none" {
		t.Errorf("postgres.trigger = %q", v)
	}
}
