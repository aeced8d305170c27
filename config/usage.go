package config

import (
	"fmt"
	"io"
	"text/tabwriter"
)

const usageHead = `Usage: authsidecar [command]

authsidecar validates the session of every request (in-process cache, Redis,
then Postgres) and forwards it to the app with the user's identity in headers.

Commands:
  serve        validate sessions and proxy to UPSTREAM_URL (the default)
  check        run the connection suite against Redis and Postgres, one line
               per scenario; exit 0 only if all pass
  healthcheck  exit 0 iff /readyz on ADMIN_ADDR answers 200 (Docker HEALTHCHECK)
  version      print the version

Tracing (OpenTelemetry) is on when OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (or OTEL_TRACES_EXPORTER=otlp), unless
OTEL_SDK_DISABLED=true. It reads the standard variables: OTEL_EXPORTER_OTLP_PROTOCOL
(http/protobuf, http/json or grpc), OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
_COMPRESSION, _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY, _INSECURE (each
also as OTEL_EXPORTER_OTLP_TRACES_*), OTEL_SERVICE_NAME (authsidecar),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER (parentbased_always_on),
OTEL_TRACES_SAMPLER_ARG and OTEL_BSP_*. Unset, nothing is traced and trace
headers reach the app unchanged. Details: docs/reference.md, "Tracing".

Environment (durations in Go syntax: 100ms, 10s, 5m; an empty value means the
default; invalid configuration exits with status 2):
`

// Usage writes the help of `authsidecar -h`: the subcommands, then one
// aligned row per environment variable with its default and meaning, read
// from Config's tags so that it always lists exactly what Load reads.
func Usage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, v := range variables() {
		def := v.def
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.name, def, v.help)
	}
	tw.Flush()
}
