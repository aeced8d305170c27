// Command authsidecar is a session-auth reverse proxy deployed beside an app: it validates
// each request's session (in-process cache, Redis, Postgres) and forwards it with the user's
// identity in X-User-* headers. main only wires the packages together; it alone reads the
// process environment and sets process-wide state (GC tuning, library loggers).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/authsidecar/authsidecar/config"
)

// version is stamped by release builds (-ldflags "-X main.version=1.2.3"); when it is empty
// the module version from the build info is shown.
var version string

// usageError is a bad command line or configuration: exit code 2, the message on stderr,
// then the hint if there is one.
type usageError struct {
	err  error
	hint string
}

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
	var usage usageError
	if !errors.As(err, &usage) {
		return 1
	}
	if usage.hint != "" {
		fmt.Fprintln(stderr, usage.hint)
	}
	return 2
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
		fmt.Fprintln(stdout, versionLine())
		return nil
	}
	// The variables each subcommand needs; the others may stay unset.
	required, known := map[string][]string{
		"serve": {"UPSTREAM_URL", "DATABASE_URL"}, "check": {"DATABASE_URL"}, "healthcheck": nil,
	}[cmd]
	if !known {
		return usageError{err: fmt.Errorf("authsidecar: unknown command %q", cmd),
			hint: "Run 'authsidecar -h' for the commands and variables."}
	}
	cfg, err := config.Load(env, required...)
	if err != nil {
		return usageError{err: err}
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, env, stderr)
	case "check":
		return runCheck(ctx, cfg, stdout)
	default:
		return healthcheck(ctx, cfg.AdminAddr)
	}
}

// versionLine is what `authsidecar version` prints: the version, then the VCS revision and
// the Go version the binary was built from, as the build info records them.
func versionLine() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "authsidecar " + cmp.Or(v, "dev")
	}
	if v == "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	details := []string{}
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			details = append(details, "revision "+s.Value[:12])
		case s.Key == "vcs.time":
			details = append(details, s.Value)
		case s.Key == "vcs.modified" && s.Value == "true":
			details = append(details, "modified")
		}
	}
	details = append(details, info.GoVersion)
	return fmt.Sprintf("authsidecar %s (%s)", cmp.Or(v, "dev"), strings.Join(details, ", "))
}
