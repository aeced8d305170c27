package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// prepareFiles are the files the database Job runs: the shipped SQL and the script.
var prepareFiles = map[string]string{
	"schema.sql":     "pgsession/sql/schema.sql",
	"notify.sql":     "pgsession/sql/notify.sql",
	"login-role.sql": "pgsession/sql/login-role.sql",
	"role.sql":       "pgsession/sql/role.sql",
	"db-prepare.sh":  "scripts/db-prepare.sh",
}

// TestDeployCopiesMatchTheShippedFiles: kustomize and Helm read no file outside their
// directories, so deploy/k8s and the chart carry copies; they must not drift.
func TestDeployCopiesMatchTheShippedFiles(t *testing.T) {
	for _, dir := range []string{"deploy/k8s/base/sql", chartDir + "/files"} {
		for name, original := range prepareFiles {
			want, err := os.ReadFile(repoFile(original))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(repoFile(dir + "/" + name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s/%s differs from %s (err %v): cp %s %s/%s", dir, name, original, err, original, dir, name)
			}
		}
	}
}

// checkPrepareJob checks a rendered database Job and its ConfigMap: it runs the script
// from the ConfigMap, which holds every file, with the variables the script reads.
func checkPrepareJob(t *testing.T, job, files object) {
	t.Helper()
	c := list(job.podSpec()["containers"])
	if len(c) != 1 {
		t.Fatalf("Job %s has %d containers, want 1", job.name(), len(c))
	}
	if cmd, _ := c[0]["command"].([]any); len(cmd) != 2 || cmd[0] != "/bin/sh" || cmd[1] != "/sql/db-prepare.sh" {
		t.Errorf("Job command = %v, want [/bin/sh /sql/db-prepare.sh]", c[0]["command"])
	}
	mounts := list(c[0]["volumeMounts"])
	if len(mounts) != 1 || mounts[0]["mountPath"] != "/sql" {
		t.Errorf("Job mounts %v, want the SQL at /sql", mounts)
	}
	vols := list(job.podSpec()["volumes"])
	if len(vols) != 1 || dig(vols[0], "configMap", "name") != files.name() {
		t.Errorf("Job volumes %v, want ConfigMap %s", vols, files.name())
	}
	for name := range prepareFiles {
		if s, _ := dig(files, "data", name).(string); !strings.Contains(s, "authsidecar") {
			t.Errorf("ConfigMap %s lacks %s", files.name(), name)
		}
	}
	env := containerEnv(c[0])
	for _, name := range []string{"OWNER_DATABASE_URL", "SIDECAR_DB_PASSWORD", "SIDECAR_ROLE", "SQL_DIR", "LOAD_SCHEMA"} {
		if _, ok := env[name]; !ok {
			t.Errorf("Job container lacks %s", name)
		}
	}
	if env["SQL_DIR"] != "/sql" {
		t.Errorf("SQL_DIR = %q, want /sql", env["SQL_DIR"])
	}
}

func TestKustomizeJobRunsTheShippedScript(t *testing.T) {
	objs := parseObjects(t, render(t, "kustomize", "build", repoFile("deploy/k8s")))
	var job, files object
	for _, o := range objs {
		switch {
		case o.kind() == "Job":
			job = o
		case o.kind() == "ConfigMap" && strings.HasPrefix(o.name(), "authsidecar-sql"):
			files = o
		}
	}
	if job == nil || files == nil {
		t.Fatal("deploy/k8s renders no database Job or no authsidecar-sql ConfigMap")
	}
	checkPrepareJob(t, job, files)
	if ttl := dig(job, "spec", "ttlSecondsAfterFinished"); ttl != 600 {
		t.Errorf("Job ttlSecondsAfterFinished %v, deploying.md says it deletes itself 10 minutes after it succeeds", ttl)
	}
}

// runPrepare runs scripts/db-prepare.sh (the file the Job runs) with the shipped SQL.
func runPrepare(t *testing.T, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", repoFile("scripts/db-prepare.sh"))
	cmd.Env = envList(env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("db-prepare.sh: %v\n%s", err, out)
	}
	return string(out)
}

// TestDBPrepareMakesTheCheckPass starts from an empty database, as a new deployment
// would: the check fails and says to load the schema; after the Job's script (twice: it is
// idempotent, and the second run rotates the password) the check passes as the new role.
func TestDBPrepareMakesTheCheckPass(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil && os.Getenv("CI") == "" {
		t.Skip("psql not installed")
	}
	db := testenv.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, "DROP SCHEMA platform CASCADE"); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runSidecar(t, map[string]string{"DATABASE_URL": db.URL}, "check")
	if code != 1 || !strings.Contains(stdout, "FAIL postgres.schema ") || !strings.Contains(stdout, "pgsession/sql/schema.sql") {
		t.Errorf("check on an empty database exited %d:\n%s\nwant postgres.schema to fail naming schema.sql", code, stdout)
	}

	role := "authsidecar_test_" + randomHex(t)
	t.Cleanup(func() {
		ident := pgx.Identifier{role}.Sanitize()
		if _, err := db.Pool.Exec(context.Background(), "DROP OWNED BY "+ident+"; DROP ROLE IF EXISTS "+ident); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	env := map[string]string{
		"OWNER_DATABASE_URL": db.URL, "SIDECAR_ROLE": role, "LOAD_SCHEMA": "true",
		"SQL_DIR": repoFile("pgsession/sql"), "SIDECAR_DB_PASSWORD": "first 'pass'@%",
	}
	runPrepare(t, env)
	env["SIDECAR_DB_PASSWORD"] = randomHex(t)
	out := runPrepare(t, env)
	if strings.Contains(out, env["SIDECAR_DB_PASSWORD"]) {
		t.Errorf("db-prepare.sh printed the password:\n%s", out)
	}

	u, _ := url.Parse(db.URL)
	u.User = url.UserPassword(role, env["SIDECAR_DB_PASSWORD"])
	code, stdout, stderr := runSidecar(t, map[string]string{"DATABASE_URL": u.String()}, "check")
	if code != 0 {
		t.Fatalf("check as %s after db-prepare exited %d:\n%s%s", role, code, stdout, stderr)
	}
	for _, scenario := range []string{"postgres.schema", "postgres.grants", "postgres.row-security", "postgres.trigger", "postgres.lookup-plan"} {
		if !slices.ContainsFunc(strings.Split(stdout, "\n"), func(l string) bool { return strings.HasPrefix(l, "PASS "+scenario+" ") }) {
			t.Errorf("%s did not pass:\n%s", scenario, stdout)
		}
	}
}

func randomHex(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// TestRoleSQLDefaultsToAuthsidecar: docker-compose.yml runs role.sql without -v role, so the
// file must fall back to the role authsidecar. Roles are cluster-wide and other tests may
// share the cluster, so the test accepts either outcome that proves the default: the grants
// and policy for an existing authsidecar role, or psql's complaint that it does not exist.
func TestRoleSQLDefaultsToAuthsidecar(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil && os.Getenv("CI") == "" {
		t.Skip("psql not installed")
	}
	db := testenv.NewDB(t)
	out, err := exec.Command("psql", db.URL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", repoFile("pgsession/sql/role.sql")).CombinedOutput()
	if err != nil {
		if !strings.Contains(string(out), `role "authsidecar" does not exist`) {
			t.Fatalf("psql -f role.sql: %v\n%s", err, out)
		}
		return
	}
	var policies int
	if err := db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_policies WHERE 'authsidecar' = ANY (roles)`).Scan(&policies); err != nil || policies != 2 {
		t.Errorf("%d policies for authsidecar (err %v), want 2", policies, err)
	}
}
