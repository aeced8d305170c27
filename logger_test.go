package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// lockedBuffer is what the logger writes to, read while its flusher may write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWarningsAreSampledAndInfoIsNot holds docs/reference.md's "Logs": lines at warn and above
// are sampled per message, 10 a second, then every 100th; the access log (info) never is.
func TestWarningsAreSampledAndInfoIsNot(t *testing.T) {
	var out lockedBuffer
	log, flush, err := newLogger("info", "json", &out)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		log.Warn("redis read failed; falling back to postgres")
		log.Error("another message")
		log.Info("request")
	}
	elapsed := time.Since(start)
	flush()
	lines := out.String()
	if got := strings.Count(lines, `"msg":"request"`); got != 1000 {
		t.Errorf("%d info lines of 1000: the access log must not be sampled", got)
	}
	// Within one second: the first 10, then the 110th, 210th, … 910th. (The loop takes a few
	// milliseconds; should it straddle the sampler's second, each new second allows as many.)
	seconds := 1 + int(elapsed/time.Second)
	for _, msg := range []string{`"msg":"redis read failed; falling back to postgres"`, `"msg":"another message"`} {
		if got := strings.Count(lines, msg); got < 19 || got > 19*seconds || seconds == 1 && got != 19 {
			t.Errorf("%s: %d lines of 1000 in %v, want 19 a second (10, then every 100th)", msg, got, elapsed)
		}
	}
}

// TestLogIsBufferedAndFlushedEverySecond: a line is not written when it is logged (the access
// log stays off the request's path) but by the flusher, within a second, and at exit.
func TestLogIsBufferedAndFlushedEverySecond(t *testing.T) {
	var out lockedBuffer
	log, flush, err := newLogger("info", "json", &out)
	if err != nil {
		t.Fatal(err)
	}
	defer flush()
	log.Info("buffered")
	if s := out.String(); s != "" {
		t.Fatalf("written at once: %q", s)
	}
	start := time.Now()
	for !strings.Contains(out.String(), `"msg":"buffered"`) {
		// The flusher ticks every second; 2 s more is room for a loaded machine.
		if time.Since(start) > 3*time.Second {
			t.Fatal("the line was not flushed within a second (and 2 s of margin)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("measured: flushed %v after it was logged", time.Since(start).Round(time.Millisecond))

	log.Info("at exit")
	flush()
	if !strings.Contains(out.String(), `"msg":"at exit"`) {
		t.Error("flush at exit left a line behind")
	}
}

// BenchmarkAccessLine is the encoder's share of the access log: one line as proxy.logAccess
// writes it, through the process logger (JSON, ISO 8601 time, buffered), to io.Discard.
func BenchmarkAccessLine(b *testing.B) {
	log, flush, err := newLogger("info", "json", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer flush()
	log = log.Named("proxy")
	b.ReportAllocs()
	for b.Loop() {
		if ce := log.Check(zap.InfoLevel, "request"); ce != nil {
			ce.Write(zap.String("method", "GET"), zap.String("path", "/dashboard"), zap.Int("status", 200),
				zap.Duration("duration", 1234567*time.Nanosecond), zap.String("userId", "7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01"),
				zap.String("source", "local"), zap.String("requestId", "93a94a3faace5603"), zap.String("userAgent", "wrk"))
		}
	}
}
