package tracing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWhichVariablesTurnTracingOn(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"only the service name", map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, false},
		{"generic endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{"exporter otlp, default endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"disabled is only true", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "1"}, true},
		{"another exporter, no endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, false},
	}
	for _, tc := range cases {
		s, err := FromEnv(tc.env)
		if err != nil || s.Enabled != tc.want {
			t.Errorf("%s: enabled %v, err %v; want %v", tc.name, s.Enabled, err, tc.want)
		}
	}
}

func TestEndpointsFollowTheSpecification(t *testing.T) {
	cases := []struct {
		name     string
		env      map[string]string
		url      string
		insecure bool
	}{
		{"http base gets /v1/traces", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces", true},
		{"http base with a path", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"}, "https://c/otlp/v1/traces", false},
		{"traces endpoint as is", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/custom",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:1"}, "https://c/custom", false},
		{"http default", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "http://localhost:4318/v1/traces", true},
		{"grpc default", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http://localhost:4317", true},
		{"grpc url, no path added", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "https://c:4317", false},
		{"grpc host:port is TLS", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "//c:4317", false},
		{"grpc host:port insecure", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_INSECURE": "true"}, "//c:4317", true},
	}
	for _, tc := range cases {
		s, err := FromEnv(tc.env)
		if err != nil || s.Endpoint.String() != tc.url || s.Insecure != tc.insecure {
			t.Errorf("%s: %v insecure %v (err %v), want %s insecure %v", tc.name, s.Endpoint, s.Insecure, err, tc.url, tc.insecure)
		}
	}
}

func TestSettingsFromTheVariables(t *testing.T) {
	s, err := FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://c:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":         "api-key=a%20b,x-tenant = t1",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS":  "authorization=Bearer%20k",
		"OTEL_EXPORTER_OTLP_TIMEOUT":         "2500",
		"OTEL_EXPORTER_OTLP_COMPRESSION":     "gzip",
		"OTEL_RESOURCE_ATTRIBUTES":           "service.name=from-attrs,deployment.environment.name=prod",
		"OTEL_TRACES_SAMPLER":                "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":            "0.25",
		"OTEL_BSP_SCHEDULE_DELAY":            "100",
		"OTEL_BSP_MAX_QUEUE_SIZE":            "100",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE":     "512",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(s.Headers, map[string]string{"authorization": "Bearer k"}) {
		t.Errorf("headers %v: the traces variable replaces the generic one, percent-decoded", s.Headers)
	}
	if s.Timeout != 2500*time.Millisecond || !s.Gzip || s.Protocol != ProtocolJSON {
		t.Errorf("timeout %v gzip %v protocol %s", s.Timeout, s.Gzip, s.Protocol)
	}
	if s.Resource[0].Value.AsString() != "from-attrs" || len(s.Resource) != 2 {
		t.Errorf("resource %v: service.name from OTEL_RESOURCE_ATTRIBUTES without OTEL_SERVICE_NAME", s.Resource)
	}
	if got := s.Sampler.Description(); !strings.Contains(got, "TraceIDRatioBased{0.25}") || !strings.HasPrefix(got, "ParentBased") {
		t.Errorf("sampler %s", got)
	}
	if want := (Batch{100 * time.Millisecond, 30 * time.Second, 100, 100}); s.Batch != want {
		t.Errorf("batch %+v, want %+v (the batch no larger than the queue)", s.Batch, want)
	}
	s, _ = FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SERVICE_NAME": "svc",
		"OTEL_RESOURCE_ATTRIBUTES": "service.name=other"})
	if s.Resource[0].Value.AsString() != "svc" || s.Sampler.Description() != "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}" {
		t.Errorf("service %v sampler %s: OTEL_SERVICE_NAME wins; parentbased_always_on by default", s.Resource[0], s.Sampler.Description())
	}
	s, _ = FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
	if s.Resource[0].Value.AsString() != DefaultServiceName {
		t.Errorf("service %v, want %s by default", s.Resource[0], DefaultServiceName)
	}
}

func TestEachWrongVariableIsOneLineThatEchoesNoSecret(t *testing.T) {
	_, err := FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    "https://user:hunter2@c:4318?token=abc",
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "grpc",
		"OTEL_EXPORTER_OTLP_HEADERS":     "authorization=Bearer sekrit,broken",
		"OTEL_EXPORTER_OTLP_TIMEOUT":     "10s",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd",
		"OTEL_EXPORTER_OTLP_CERTIFICATE": filepath.Join(t.TempDir(), "missing.pem"),
		"OTEL_TRACES_SAMPLER":            "jaeger_remote",
		"OTEL_BSP_EXPORT_TIMEOUT":        "0",
		"OTEL_RESOURCE_ATTRIBUTES":       "=nokey",
	})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	wantNames := []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_COMPRESSION",
		"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_BSP_EXPORT_TIMEOUT"}
	if len(lines) != len(wantNames) {
		t.Errorf("%d lines, want %d:\n%v", len(lines), len(wantNames), err)
	}
	for i, name := range wantNames {
		if i < len(lines) && !strings.HasPrefix(lines[i], name+": ") {
			t.Errorf("line %d %q does not start with %s", i, lines[i], name)
		}
	}
	for _, secret := range []string{"hunter2", "sekrit", "token=abc"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error echoes %q:\n%v", secret, err)
		}
	}
	_, err = FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"})
	if err == nil || !strings.HasPrefix(err.Error(), "OTEL_EXPORTER_OTLP_ENDPOINT: ") {
		t.Errorf("an OTLP/HTTP endpoint without a scheme: %v", err)
	}
}

func TestCertificateFilesMakeTheTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318", "OTEL_EXPORTER_OTLP_CERTIFICATE": ca})
	if err != nil || s.TLS == nil || s.TLS.RootCAs == nil || s.Insecure {
		t.Fatalf("TLS %v insecure %v err %v, want the CA as the only root", s.TLS, s.Insecure, err)
	}
	_, err = FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318", "OTEL_EXPORTER_OTLP_CLIENT_KEY": ca})
	if err == nil || !strings.Contains(err.Error(), "set both or neither") {
		t.Errorf("a client key without a certificate: %v", err)
	}
}

// selfSigned returns the PEM of a throwaway self-signed certificate.
func selfSigned(tb testing.TB) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
