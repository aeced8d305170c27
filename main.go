// Command authsidecar is a session-auth reverse proxy deployed beside an app: it validates
// each request's session (in-process cache, Redis, Postgres) and forwards it with the user's
// identity in X-User-* headers. main only wires the packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/authsidecar/authsidecar/config"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// usageError is a bad command line or configuration: exit code 2, the message on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func main() {
	// The signal handler stays registered until the process exits: a second SIGTERM while
	// shutting down must not kill it with the default action before it exits cleanly.
	ctx, _ := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	os.Exit(exitCode(run(ctx, os.Args[1:], environ(), os.Stdout, os.Stderr), os.Stderr))
}

// exitCode reports err once and maps it to the process's exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// run dispatches the subcommand. Each loads only what it needs of the configuration.
func run(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "-help", "--help", "help":
		config.Usage(stdout)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "authsidecar", version)
		return nil
	}
	// The variables each subcommand needs; the others may stay unset.
	required, known := map[string][]string{
		"serve": {"UPSTREAM_URL", "DATABASE_URL"}, "check": {"DATABASE_URL"}, "healthcheck": nil,
	}[cmd]
	if !known {
		config.Usage(stderr)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
	cfg, err := config.Load(env, required...)
	if err != nil {
		return usageError{err}
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, stderr)
	case "check":
		return check(ctx, cfg, stdout)
	default:
		return healthcheck(ctx, cfg.AdminAddr)
	}
}
