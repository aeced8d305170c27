#!/bin/sh
# Prepares an app's database for authsidecar with the shipped SQL, in order:
#   1. schema.sql      as the schema owner, only with LOAD_SCHEMA=true (a database the app
#                      has not migrated yet: the app owns platform.users/user_sessions)
#   2. notify.sql      as the schema owner: the change-notification triggers
#   3. login-role.sql  as a role with CREATEROLE (or a superuser): the sidecar's login role,
#                      created, or its password set to SIDECAR_DB_PASSWORD
#   4. role.sql        as the schema owner: USAGE, SELECT on both tables and the
#                      row-level-security policy for SIDECAR_ROLE
# Every file is idempotent, so this may run on every deploy. The Kubernetes Job
# (deploy/k8s/base/db-prepare-job.yaml) and the Helm chart's hook run a copy of this file;
# outside Kubernetes:
#   SQL_DIR=pgsession/sql OWNER_DATABASE_URL=postgres://owner:…@db/app \
#     SIDECAR_DB_PASSWORD=… sh scripts/db-prepare.sh
# Environment:
#   OWNER_DATABASE_URL       required: the owner of the platform tables (the app's migration role)
#   ROLE_ADMIN_DATABASE_URL  a role with CREATEROLE; default OWNER_DATABASE_URL
#   SIDECAR_DB_PASSWORD      required: the password in the sidecar's DATABASE_URL
#   SIDECAR_ROLE             the sidecar's login role (default authsidecar)
#   LOAD_SCHEMA              true to load schema.sql first (default false)
#   SQL_DIR                  where the .sql files are (default /sql)
# Needs psql >= 10. Passwords are passed to psql as variables, never printed.
set -eu
: "${OWNER_DATABASE_URL:?set OWNER_DATABASE_URL to the schema owner's connection URL}"
: "${SIDECAR_DB_PASSWORD:?set SIDECAR_DB_PASSWORD to the password in the sidecar's DATABASE_URL}"
SIDECAR_ROLE=${SIDECAR_ROLE:-authsidecar}

run() { # run WHAT URL [psql args...]: one psql, stopping at the first error
  what=$1 url=$2
  shift 2
  echo "db-prepare: $what"
  psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"
}

cd "${SQL_DIR:-/sql}"
if [ "${LOAD_SCHEMA:-false}" = true ]; then
  run "schema.sql as the schema owner" "$OWNER_DATABASE_URL" -f schema.sql
fi
run "notify.sql as the schema owner" "$OWNER_DATABASE_URL" -f notify.sql
run "login-role.sql ($SIDECAR_ROLE) as a role with CREATEROLE" \
  "${ROLE_ADMIN_DATABASE_URL:-$OWNER_DATABASE_URL}" \
  -v role="$SIDECAR_ROLE" -v password="$SIDECAR_DB_PASSWORD" -f login-role.sql
run "role.sql ($SIDECAR_ROLE) as the schema owner" "$OWNER_DATABASE_URL" \
  -v role="$SIDECAR_ROLE" -f role.sql
echo "db-prepare: done; check it with: DATABASE_URL=<the sidecar's> authsidecar check"
