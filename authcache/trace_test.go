package authcache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/testenv"
)

// spanRig records every span a Cache makes under a request span the test opens.
type spanRig struct {
	rec    *tracetest.SpanRecorder
	tracer trace.Tracer
}

func newSpanRig(tb testing.TB) *spanRig {
	tb.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &spanRig{rec: rec, tracer: tp.Tracer("test")}
}

// cache is fixture.cache, traced.
func (r *spanRig) cache(f *fixture, redisOn bool, localTTL time.Duration) *authcache.Cache {
	o := authcache.Options{
		Prefix: f.prefix, SessionTTL: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		LocalTTL: localTTL, LocalSize: 1000, OpTimeout: 500 * time.Millisecond,
		LookupTimeout: 2 * time.Second, BreakerFailures: 5, BreakerOpenFor: time.Second,
		Tracer: r.tracer,
	}
	if redisOn {
		o.Redis = f.rdb
	}
	return authcache.New(f.src, o)
}

// validate runs one validation under a fresh request span and returns the layer spans it
// made, as "name=result", checking that each is a child of the request span.
func (r *spanRig) validate(tb testing.TB, c *authcache.Cache, token string) []string {
	tb.Helper()
	before := len(r.rec.Ended())
	ctx, req := r.tracer.Start(context.Background(), "request")
	_, _ = c.Validate(ctx, token)
	req.End()
	var got []string
	for _, s := range r.rec.Ended()[before:] {
		if s.Name() == "request" {
			continue
		}
		if s.Parent().SpanID() != req.SpanContext().SpanID() || s.SpanContext().TraceID() != req.SpanContext().TraceID() {
			tb.Errorf("span %s is not a child of the request span", s.Name())
		}
		got = append(got, s.Name()+"="+attr(s, string(authcache.AttrResult)))
	}
	return got
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func TestSpansNameTheLayersAskedAndOnlyThose(t *testing.T) {
	f := newFixture(t)
	rig := newSpanRig(t)
	user := f.db.User(t, testenv.UserSpec{FirstName: "Ada", Username: "ada"})
	valid, _ := f.db.Session(t, user, testenv.SessionSpec{})
	full := rig.cache(f, true, 10*time.Second)
	noLocal := rig.cache(f, true, 0)
	pgOnly := rig.cache(f, false, 0)
	steps := []struct {
		name  string
		cache *authcache.Cache
		token string
		want  []string
	}{
		{"cold", full, valid, []string{"authcache.local=miss", "authcache.redis=miss", "authcache.postgres=found"}},
		{"warm", full, valid, []string{"authcache.local=hit"}},
		{"redis only", noLocal, valid, []string{"authcache.redis=hit"}},
		{"postgres only", pgOnly, valid, []string{"authcache.postgres=found"}},
		{"unknown, cold", full, "no-such-token", []string{"authcache.local=miss", "authcache.redis=miss", "authcache.postgres=not_found"}},
		{"unknown, negative entry", noLocal, "no-such-token", []string{"authcache.redis=hit"}},
	}
	for _, s := range steps {
		if got := rig.validate(t, s.cache, s.token); !slices.Equal(got, s.want) {
			t.Errorf("%s: spans %v, want %v", s.name, got, s.want)
		}
	}
}

func TestRedisFailureIsAnErrorSpanWithoutItsText(t *testing.T) {
	f := newFixture(t)
	rig := newSpanRig(t)
	user := f.db.User(t, testenv.UserSpec{})
	valid, _ := f.db.Session(t, user, testenv.SessionSpec{})
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	c := authcache.New(f.src, authcache.Options{
		Redis: down, Prefix: f.prefix, SessionTTL: time.Minute, OpTimeout: 200 * time.Millisecond,
		LookupTimeout: 2 * time.Second, BreakerFailures: 5, BreakerOpenFor: time.Second, Tracer: rig.tracer,
	})
	got := rig.validate(t, c, valid)
	if want := []string{"authcache.redis=error", "authcache.postgres=found"}; !slices.Equal(got, want) {
		t.Fatalf("spans %v, want %v", got, want)
	}
	s := rig.rec.Ended()[0]
	if s.Status().Code != codes.Error || s.Status().Description != "lookup failed" {
		t.Errorf("redis span status %v, want Error with a fixed description", s.Status())
	}
	// go-redis may retry the dial until the operation's deadline: either kind is right.
	if typ := attr(s, "error.type"); typ != "network" && typ != "timeout" {
		t.Errorf("error.type = %q, want network or timeout (a kind of error, not its text)", typ)
	}
	if len(s.Events()) != 0 {
		t.Errorf("the error was recorded as an event (with its text): %v", s.Events())
	}
}

func TestErrorTypeNamesTheKindNeverTheText(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("lookup session: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{fmt.Errorf("read: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), "network"},
		{fmt.Errorf("secret-token-in-text: %w", errors.New("boom")), "*errors.errorString"},
	}
	for _, tc := range cases {
		if got := authcache.ErrorType(tc.err); got != tc.want {
			t.Errorf("ErrorType(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestSpansHoldNoTokenHashOrSessionValue(t *testing.T) {
	f := newFixture(t)
	rig := newSpanRig(t)
	user := f.db.User(t, testenv.UserSpec{FirstName: "Grace", LastName: "Hopper", Username: "grace"})
	valid, hash := f.db.Session(t, user, testenv.SessionSpec{IPAddress: "203.0.113.9", UserAgent: "curl/8"})
	c := rig.cache(f, true, 10*time.Second)
	for range 2 {
		rig.validate(t, c, valid)
		rig.validate(t, c, "unknown-token-0123456789")
	}
	res, err := c.Validate(context.Background(), valid)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{valid, hash, hash[:8], "unknown-token-0123456789", user, res.Session.ID,
		res.Session.Email, "Grace", "Hopper", "grace", "203.0.113.9", "curl/8", f.prefix}
	for _, s := range rig.rec.Ended() {
		texts := []string{s.Name(), s.Status().Description}
		for _, kv := range s.Attributes() {
			texts = append(texts, string(kv.Key), kv.Value.String())
		}
		for _, text := range texts {
			for _, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Errorf("span %s holds %q", s.Name(), secret)
				}
			}
		}
	}
}
