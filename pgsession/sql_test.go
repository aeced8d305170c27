package pgsession_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

func countTriggers(t *testing.T, db *testenv.DB) int {
	t.Helper()
	var n int
	err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_trigger
		WHERE NOT tgisinternal AND tgname LIKE 'authsidecar\_%'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateIsIdempotent(t *testing.T) {
	db := testenv.NewDB(t) // migrated once already
	user := db.User(t, testenv.UserSpec{})
	_, hash := db.Session(t, user, testenv.SessionSpec{})
	for range 2 {
		if err := pgsession.Migrate(context.Background(), db.Pool, db.Channel); err != nil {
			t.Fatalf("migrate again: %v", err)
		}
	}
	if n := countTriggers(t, db); n != 4 {
		t.Fatalf("%d triggers, want 4", n)
	}
	// Data survives and the trigger still sends on the test's channel.
	r := listen(t, open(t, db.URL, time.Second), db.Channel)
	db.Revoke(t, hash)
	r.wantEvent(t, pgsession.Event{TokenHash: hash}, time.Second)
}

func TestMigrateConcurrentlyFromScratch(t *testing.T) {
	db := testenv.NewDB(t)
	exec(t, db, `DROP SCHEMA platform CASCADE`)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- pgsession.Migrate(context.Background(), db.Pool, db.Channel) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	if n := countTriggers(t, db); n != 4 {
		t.Fatalf("%d triggers, want 4", n)
	}
}

func TestMigrateWithoutChannelInstallsSchemaOnly(t *testing.T) {
	db := testenv.NewDB(t)
	exec(t, db, `DROP SCHEMA platform CASCADE`)
	if err := pgsession.Migrate(context.Background(), db.Pool, ""); err != nil {
		t.Fatal(err)
	}
	if n := countTriggers(t, db); n != 0 {
		t.Fatalf("%d triggers, want none", n)
	}
	db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{}) // tables exist
}

func TestMigrateRejectsUnsafeChannel(t *testing.T) {
	db := testenv.NewDB(t)
	for _, channel := range []string{"Upper", "has space", "x'); DROP TABLE platform.users; --", "1digit", strings.Repeat("a", 64)} {
		if err := pgsession.Migrate(context.Background(), db.Pool, channel); err == nil {
			t.Errorf("Migrate accepted channel %q", channel)
		}
	}
}

func TestShippedSQLUsesDefaults(t *testing.T) {
	for _, c := range []struct{ name, sql, want string }{
		{"schema", pgsession.SchemaSQL(), "CREATE TABLE IF NOT EXISTS platform.user_sessions"},
		{"notify", pgsession.NotifySQL(), "'" + pgsession.DefaultChannel + "'"},
		{"role", pgsession.RoleSQL(), `\set role authsidecar`},
	} {
		if !strings.Contains(c.sql, c.want) {
			t.Errorf("%s SQL lacks %q", c.name, c.want)
		}
	}
}

func TestReaderRoleCanLookupListenAndResync(t *testing.T) {
	db := testenv.NewDB(t)
	readerURL := db.ReaderRole(t)
	user := db.User(t, testenv.UserSpec{})
	_, hash := db.Session(t, user, testenv.SessionSpec{})
	_, revoked := db.Session(t, user, testenv.SessionSpec{})
	store := open(t, readerURL, 2*time.Second)
	ctx := context.Background()

	var rls int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class
		WHERE oid IN ('platform.users'::regclass, 'platform.user_sessions'::regclass) AND relrowsecurity`).Scan(&rls); err != nil || rls != 2 {
		t.Fatalf("row-level security enabled on %d tables (err %v), want 2", rls, err)
	}
	if _, err := store.Lookup(ctx, hash); err != nil {
		t.Fatalf("lookup as reader: %v", err)
	}
	r := listen(t, store, db.Channel)
	db.Revoke(t, revoked)
	r.wantEvent(t, pgsession.Event{TokenHash: revoked}, time.Second)
	hashes, err := store.RevokedSince(ctx, time.Now().Add(-time.Minute))
	if err != nil || len(hashes) != 1 || hashes[0] != revoked {
		t.Fatalf("RevokedSince as reader = %v, %v; want [%s]", hashes, err, revoked)
	}

	conn, err := pgx.Connect(ctx, readerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE platform.user_sessions SET revoked_at = now()`); err == nil {
		t.Fatal("reader role could write")
	}
}

func TestCreateReaderRoleQuotesNameAndPassword(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := context.Background()
	role := "Reader \"x\"\n-- " + strings.Repeat("z", 8)
	if err := pgsession.CreateReaderRole(ctx, db.Pool, role, `p'w\d"`); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		ident := pgx.Identifier{role}.Sanitize()
		if _, err := db.Pool.Exec(context.Background(), "DROP OWNED BY "+ident+"; DROP ROLE "+ident); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	var policies int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_policies WHERE $1 = ANY(roles)`, role).Scan(&policies); err != nil || policies != 2 {
		t.Fatalf("%d policies for the role (err %v), want 2", policies, err)
	}
	if err := pgsession.CreateReaderRole(ctx, db.Pool, role, "again"); err == nil {
		t.Fatal("creating an existing role succeeded")
	}
}
