package tracing

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestNoProviderWhenTracingIsOff(t *testing.T) {
	s, err := FromEnv(map[string]string{"OTEL_SERVICE_NAME": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if tp, err := New(context.Background(), s, "v"); tp != nil || err != nil {
		t.Fatalf("New = %v, %v; want no provider", tp, err)
	}
}

// The provider exports where, how and with what the variables say: here OTLP/HTTP JSON,
// gzip, a header, to the generic endpoint plus /v1/traces, flushed by Shutdown.
func TestProviderExportsAsTheVariablesSay(t *testing.T) {
	type export struct {
		path, contentType, encoding, key string
		body                             map[string]any
	}
	got := make(chan export, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := export{path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
			encoding: r.Header.Get("Content-Encoding"), key: r.Header.Get("X-Api-Key")}
		zr, err := gzip.NewReader(r.Body)
		if err == nil {
			raw, _ := io.ReadAll(zr)
			_ = json.Unmarshal(raw, &e.body)
		}
		got <- e
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(srv.Close)
	s, err := FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    srv.URL + "/otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "http/json",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		"OTEL_EXPORTER_OTLP_HEADERS":     "x-api-key=k1",
		"OTEL_SERVICE_NAME":              "svc",
		"OTEL_BSP_SCHEDULE_DELAY":        "600000",
	})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := New(context.Background(), s, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer(ScopeName).Start(context.Background(), "GET")
	span.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := <-got
	if e.path != "/otlp/v1/traces" || e.contentType != "application/json" || e.encoding != "gzip" || e.key != "k1" {
		t.Errorf("export to %s as %s (%s) with key %q", e.path, e.contentType, e.encoding, e.key)
	}
	rs := e.body["resourceSpans"].([]any)[0].(map[string]any)
	attrs := map[string]any{}
	for _, a := range rs["resource"].(map[string]any)["attributes"].([]any) {
		kv := a.(map[string]any)
		attrs[kv["key"].(string)] = kv["value"].(map[string]any)["stringValue"]
	}
	if attrs["service.name"] != "svc" || attrs["service.version"] != "1.2.3" {
		t.Errorf("resource %v, want service.name svc and service.version 1.2.3", attrs)
	}
}
