package tracing

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolJSON = "http/json"
	ProtocolGRPC = "grpc"
)

// DefaultServiceName is service.name without OTEL_SERVICE_NAME.
const DefaultServiceName = "authsidecar"

// Settings is the tracing configuration the OTEL_* variables describe.
type Settings struct {
	// Enabled is true when an OTLP endpoint variable is set (or OTEL_TRACES_EXPORTER=otlp)
	// and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says otherwise.
	// Every other field is set only when it is true.
	Enabled  bool
	Protocol string
	// Endpoint is the URL spans are sent to: the whole traces URL for OTLP/HTTP, the
	// collector's host:port (Endpoint.Host) for gRPC.
	Endpoint *url.URL
	// Insecure sends in plain text: an http:// endpoint, or a gRPC host:port with
	// OTEL_EXPORTER_OTLP_INSECURE=true.
	Insecure bool
	// TLS verifies the collector (and may present a client certificate); nil means the
	// system roots.
	TLS      *tls.Config
	Headers  map[string]string
	Timeout  time.Duration
	Gzip     bool
	Resource []attribute.KeyValue // service.name first
	Sampler  sdktrace.Sampler
	Batch    Batch
}

// Batch is the batch span processor's tuning (OTEL_BSP_*).
type Batch struct {
	ScheduleDelay, ExportTimeout     time.Duration
	MaxQueueSize, MaxExportBatchSize int
}

// problems collects one line per wrong variable, so that all are fixed in one go. A message
// never echoes a header, an endpoint or a file's content: they may hold credentials.
type problems []error

func (p *problems) add(name, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
}

// FromEnv reads the OTEL_* variables of env, the process environment main hands down.
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set, or OTEL_TRACES_EXPORTER is otlp; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none
// turns it off. The other variables are read, and checked, only when it is on.
func FromEnv(env map[string]string) (Settings, error) {
	var p problems
	exporter := strings.ToLower(strings.TrimSpace(env["OTEL_TRACES_EXPORTER"]))
	endpointSet := env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != "" || env["OTEL_EXPORTER_OTLP_ENDPOINT"] != ""
	switch {
	case strings.EqualFold(strings.TrimSpace(env["OTEL_SDK_DISABLED"]), "true"), exporter == "none":
		return Settings{}, nil
	case exporter != "" && exporter != "otlp":
		if !endpointSet {
			return Settings{}, nil // meant for another process: nothing here asks for tracing
		}
		p.add("OTEL_TRACES_EXPORTER", "%q is not supported: otlp (the default) or none", exporter)
	case !endpointSet && exporter != "otlp":
		return Settings{}, nil
	}
	s := Settings{Enabled: true}
	s.Protocol = readProtocol(env, &p)
	s.readEndpoint(env, &p)
	s.readTransport(env, &p)
	s.Resource = readResource(env, &p)
	s.Sampler = readSampler(env, &p)
	s.Batch = readBatch(env, &p)
	if len(p) > 0 {
		return Settings{}, errors.Join(p...)
	}
	return s, nil
}

// lookup returns the first of names that is set, the per-signal name before the generic
// one, as the specification orders them.
func lookup(env map[string]string, names ...string) (name, value string) {
	for _, n := range names {
		if v := strings.TrimSpace(env[n]); v != "" {
			return n, v
		}
	}
	return names[len(names)-1], ""
}

// otlp returns the traces and the generic name of an OTEL_EXPORTER_OTLP_ variable.
func otlp(suffix string) []string {
	return []string{"OTEL_EXPORTER_OTLP_TRACES_" + suffix, "OTEL_EXPORTER_OTLP_" + suffix}
}

func readProtocol(env map[string]string, p *problems) string {
	name, v := lookup(env, otlp("PROTOCOL")...)
	switch v {
	case "", ProtocolHTTP:
		return ProtocolHTTP
	case ProtocolJSON, ProtocolGRPC:
		return v
	}
	p.add(name, "%q is not one of http/protobuf, http/json, grpc", v)
	return ProtocolHTTP
}

// readEndpoint applies the specification's rules: a traces endpoint is used as it is; the
// generic one is a base URL to which OTLP/HTTP appends /v1/traces; gRPC takes scheme, host
// and port, or a bare host:port whose security OTEL_EXPORTER_OTLP_INSECURE decides.
func (s *Settings) readEndpoint(env map[string]string, p *problems) {
	name, v := lookup(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	perSignal := v != ""
	if !perSignal {
		name, v = lookup(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if v == "" {
		v = "http://localhost:4318"
		if s.Protocol == ProtocolGRPC {
			v = "http://localhost:4317"
		}
	}
	if s.Protocol == ProtocolGRPC && !strings.Contains(v, "://") {
		if _, _, err := net.SplitHostPort(v); err != nil {
			p.add(name, "is neither a URL (http://host:port) nor host:port")
			return
		}
		s.Endpoint = &url.URL{Host: v}
		s.Insecure = readBool(env, p, otlp("INSECURE")...)
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(name, "is not an http:// or https:// URL with a host")
		return
	}
	if s.Protocol != ProtocolGRPC && !perSignal {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		u.RawPath = ""
	}
	s.Endpoint, s.Insecure = u, u.Scheme == "http"
}

func readBool(env map[string]string, p *problems, names ...string) bool {
	name, v := lookup(env, names...)
	switch strings.ToLower(v) {
	case "", "false":
		return false
	case "true":
		return true
	}
	p.add(name, "%q is not true or false", v)
	return false
}

// readTransport reads the headers, timeout, compression and TLS files of the exporter.
func (s *Settings) readTransport(env map[string]string, p *problems) {
	name, v := lookup(env, otlp("HEADERS")...)
	headers, bad := keyValues(v)
	if bad > 0 {
		p.add(name, "entry %d is not key=value (values percent-encoded)", bad)
	}
	s.Headers = headers
	s.Timeout = readMillis(env, p, 10*time.Second, otlp("TIMEOUT")...)
	name, v = lookup(env, otlp("COMPRESSION")...)
	switch v {
	case "gzip":
		s.Gzip = true
	case "", "none":
	default:
		p.add(name, "%q is not gzip or none", v)
	}
	s.TLS = readTLS(env, p)
}

// keyValues parses the W3C baggage-like list the specification uses for headers and
// resource attributes: key=value pairs separated by commas, values percent-encoded. bad is
// the 1-based index of the first malformed entry, 0 if none.
func keyValues(v string) (map[string]string, int) {
	if v == "" {
		return nil, 0
	}
	out := make(map[string]string)
	for i, entry := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if !ok || k == "" || err != nil {
			return nil, i + 1
		}
		out[k] = dec
	}
	return out, 0
}

// readMillis reads a whole number of milliseconds, the unit of every OTEL_* duration.
func readMillis(env map[string]string, p *problems, def time.Duration, names ...string) time.Duration {
	name, v := lookup(env, names...)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		p.add(name, "%q is not a positive whole number of milliseconds", v)
		return def
	}
	return time.Duration(n) * time.Millisecond
}

func readTLS(env map[string]string, p *problems) *tls.Config {
	caName, ca := lookup(env, otlp("CERTIFICATE")...)
	certName, cert := lookup(env, otlp("CLIENT_CERTIFICATE")...)
	keyName, key := lookup(env, otlp("CLIENT_KEY")...)
	if ca == "" && cert == "" && key == "" {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		cfg.RootCAs = x509.NewCertPool()
		switch {
		case err != nil:
			p.add(caName, "cannot read the file: %v", errors.Unwrap(err))
		case !cfg.RootCAs.AppendCertsFromPEM(pem):
			p.add(caName, "holds no PEM certificate")
		}
	}
	switch {
	case (cert == "") != (key == ""):
		p.add(certName, "and %s go together: set both or neither", keyName)
	case cert != "":
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			p.add(certName, "with %s: not a readable PEM certificate and key", keyName)
			break
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// readResource returns the resource attributes, service.name first: OTEL_SERVICE_NAME, else
// the one in OTEL_RESOURCE_ATTRIBUTES, else authsidecar.
func readResource(env map[string]string, p *problems) []attribute.KeyValue {
	attrs, bad := keyValues(strings.TrimSpace(env["OTEL_RESOURCE_ATTRIBUTES"]))
	if bad > 0 {
		p.add("OTEL_RESOURCE_ATTRIBUTES", "entry %d is not key=value (values percent-encoded)", bad)
	}
	service := DefaultServiceName
	if v := attrs[string(semconv.ServiceNameKey)]; v != "" {
		service = v
	}
	if v := strings.TrimSpace(env["OTEL_SERVICE_NAME"]); v != "" {
		service = v
	}
	out := []attribute.KeyValue{semconv.ServiceName(service)}
	for k, v := range attrs {
		if k != string(semconv.ServiceNameKey) {
			out = append(out, attribute.String(k, v))
		}
	}
	return out
}

// readSampler maps OTEL_TRACES_SAMPLER and its argument to a sampler; the default,
// parentbased_always_on, samples every request and follows a client's sampled flag.
func readSampler(env map[string]string, p *problems) sdktrace.Sampler {
	name := strings.ToLower(strings.TrimSpace(env["OTEL_TRACES_SAMPLER"]))
	ratio := func() float64 {
		v := strings.TrimSpace(env["OTEL_TRACES_SAMPLER_ARG"])
		if v == "" {
			return 1
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			p.add("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio between 0 and 1", v)
			return 1
		}
		return f
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio())
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio()))
	}
	p.add("OTEL_TRACES_SAMPLER", "%q is not one of always_on, always_off, traceidratio, "+
		"parentbased_always_on, parentbased_always_off, parentbased_traceidratio", name)
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

func readBatch(env map[string]string, p *problems) Batch {
	count := func(name string, def int) int {
		v := strings.TrimSpace(env[name])
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			p.add(name, "%q is not a positive whole number", v)
			return def
		}
		return n
	}
	b := Batch{
		ScheduleDelay: readMillis(env, p, sdktrace.DefaultScheduleDelay*time.Millisecond, "OTEL_BSP_SCHEDULE_DELAY"),
		ExportTimeout: readMillis(env, p, sdktrace.DefaultExportTimeout*time.Millisecond, "OTEL_BSP_EXPORT_TIMEOUT"),
		MaxQueueSize:  count("OTEL_BSP_MAX_QUEUE_SIZE", sdktrace.DefaultMaxQueueSize),
	}
	b.MaxExportBatchSize = min(count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", sdktrace.DefaultMaxExportBatchSize), b.MaxQueueSize)
	return b
}
