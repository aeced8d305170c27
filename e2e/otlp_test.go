package e2e

// An in-process OpenTelemetry collector for the tracing tests: it receives OTLP trace
// exports over HTTP (protobuf, as a collector's otlphttp receiver does) and over gRPC (the
// TraceService), and keeps every span with its resource and the headers the export came
// with.

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// exportedSpan is one received span, with the attributes of its resource.
type exportedSpan struct {
	*tracepb.Span
	Resource map[string]string
}

func (s exportedSpan) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }
func (s exportedSpan) SpanID() string  { return hex.EncodeToString(s.Span.SpanId) }
func (s exportedSpan) Parent() string  { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr returns the value of one attribute as text, "" if absent.
func (s exportedSpan) Attr(key string) string {
	return attrMap(s.Attributes)[key]
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = anyValueText(kv.Value)
	}
	return m
}

func anyValueText(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	}
	return v.String()
}

// collector keeps what the exports delivered.
type collector struct {
	mu      sync.Mutex
	spans   []exportedSpan
	headers []string // one value of the test's header per export
}

func (c *collector) add(req *coltracepb.ExportTraceServiceRequest, header string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headers = append(c.headers, header)
	for _, rs := range req.ResourceSpans {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, exportedSpan{Span: s, Resource: res})
			}
		}
	}
}

// Spans returns a copy of the spans received so far.
func (c *collector) Spans() []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]exportedSpan(nil), c.spans...)
}

// Headers returns the value of the test's export header on each export received.
func (c *collector) Headers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.headers...)
}

// exportHeader is the header the tests configure with OTEL_EXPORTER_OTLP_HEADERS.
const exportHeader = "x-collector-key"

// startHTTPCollector receives OTLP/HTTP protobuf on /v1/traces and returns its base URL.
func startHTTPCollector(tb testing.TB) (*collector, string) {
	tb.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusNotFound)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		req := &coltracepb.ExportTraceServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(raw, req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(req, r.Header.Get(exportHeader))
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	tb.Cleanup(srv.Close)
	return c, srv.URL
}

// grpcCollector is the TraceService of the gRPC receiver.
type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	c *collector
}

func (g grpcCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.c.add(req, strings.Join(md.Get(exportHeader), ","))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// startGRPCCollector serves the OTLP TraceService in plain text on a loopback port and
// returns its host:port.
func startGRPCCollector(tb testing.TB) (*collector, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcCollector{c: c})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return c, ln.Addr().String()
}
