package main

import (
	"cmp"
	"context"
	"runtime/debug"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/tracing"
)

// startTracing reads the OTEL_* variables of env and, when they turn tracing on, starts the
// exporter and routes the SDK's errors (a collector that is down, spans dropped) into the
// log. It returns the tracer for the packages that trace, nil when tracing is off, and the
// function that flushes the queued spans within its context's deadline and stops the
// exporter; only its first call does anything.
func startTracing(ctx context.Context, env map[string]string, log *zap.Logger) (trace.Tracer, func(context.Context), error) {
	s, err := tracing.FromEnv(env)
	if err != nil {
		return nil, nil, usageError{err: err}
	}
	v := serviceVersion()
	tp, err := tracing.New(ctx, s, v)
	if err != nil {
		return nil, nil, usageError{err: err}
	}
	if tp == nil {
		return nil, func(context.Context) {}, nil
	}
	log = log.Named("tracing")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing error", zap.Error(err))
	}))
	// The endpoint without userinfo or query, which could hold a credential.
	endpoint := s.Endpoint.Host + s.Endpoint.Path
	if s.Endpoint.Scheme != "" {
		endpoint = s.Endpoint.Scheme + "://" + endpoint
	}
	log.Info("tracing on", zap.String("protocol", s.Protocol), zap.String("endpoint", endpoint))
	var once sync.Once
	stop := func(ctx context.Context) {
		once.Do(func() {
			if err := tp.Shutdown(ctx); err != nil {
				log.Warn("spans not flushed at shutdown", zap.Error(err))
			}
		})
	}
	return tp.Tracer(tracing.ScopeName, trace.WithInstrumentationVersion(v)), stop, nil
}

// serviceVersion is the version the spans' resource names: the stamped one, else the
// module's, else dev.
func serviceVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && version == "" && info.Main.Version != "(devel)" {
		return cmp.Or(info.Main.Version, "dev")
	}
	return cmp.Or(version, "dev")
}
