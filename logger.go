package main

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the process logger. Info and below (the access log) are written as they
// come; Warn and above are sampled per message (10 a second, then every 100th) so a dead
// store cannot flood the log. Output is buffered and flushed every second, keeping the
// access log off the request's critical path; flush writes out what is left.
func newLogger(level, format string, w io.Writer) (*zap.Logger, func(), error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	var encoder zapcore.Encoder
	switch format {
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, nil, fmt.Errorf("LOG_FORMAT: must be json or console")
	}
	out := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), FlushInterval: time.Second}
	below := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return l >= lvl && l < zapcore.WarnLevel })
	above := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return l >= lvl && l >= zapcore.WarnLevel })
	core := zapcore.NewTee(
		zapcore.NewCore(encoder, out, below),
		zapcore.NewSamplerWithOptions(zapcore.NewCore(encoder.Clone(), out, above), time.Second, 10, 100),
	)
	return zap.New(core), func() { _ = out.Stop() }, nil
}
