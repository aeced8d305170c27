// Package e2e holds the black-box tests of the built authsidecar binary and the checks of
// the repository's deploy files. It has no code of its own, only tests.
//
// The binary is built from the module root once per go test run, by the first test that
// needs it (with -race when the tests run with it, so the race detector watches the process
// too); TestMain removes it at the end. Only the check command's throughput test and the
// Dockerfile test build their own copies, uninstrumented and static. The tests start the
// binary as a real process on free loopback ports, in front of a recording upstream and
// against real Redis and Postgres, and cover the public listener's rules, the Redis keys,
// the CLI and the check command, store faults, load, revocation across two replicas and
// log hygiene; others read the alert rules, the Grafana dashboard, the compose file and the
// Dockerfiles from the module root, run the release script, render the Kubernetes manifests
// and the Helm chart (with kustomize and helm, which scripts/tools.sh builds from their Go
// modules and caches; without them the tests skip, and fail under CI) and run the database
// Job's script against a real Postgres.
//
// The stores come from AUTHSIDECAR_TEST_REDIS_URL and AUTHSIDECAR_TEST_DATABASE_URL, which
// scripts/test.sh sets to the local servers; each test creates its own database and Redis
// key prefix and removes them. When a variable is unset the tests use the local server the
// README names if it answers, and fail otherwise (internal/testenv): nothing skips. The
// fault tests also start their own redis-server, found on PATH.
//
//	AUTHSIDECAR_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \
//	AUTHSIDECAR_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	go test -race ./e2e/
package e2e
