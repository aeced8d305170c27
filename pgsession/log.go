package pgsession

import (
	"context"
	"sort"

	"github.com/jackc/pgx/v5/tracelog"
	"go.uber.org/zap"
)

// zapTraceLogger adapts pgx's trace logging to zap, at Warn whatever pgx's level: every
// failure pgx traces is also returned to a caller, who owns its severity; the trace only
// adds pid and timing. Query arguments are dropped: they carry token hashes, and a full
// hash must never reach a log.
func zapTraceLogger(log *zap.Logger) tracelog.Logger {
	return tracelog.LoggerFunc(func(_ context.Context, level tracelog.LogLevel, msg string, data map[string]any) {
		keys := make([]string, 0, len(data))
		for k := range data {
			if k != "args" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		fields := make([]zap.Field, 0, len(keys))
		for _, k := range keys {
			if err, ok := data[k].(error); ok {
				fields = append(fields, zap.NamedError(k, err))
				continue
			}
			fields = append(fields, zap.Any(k, data[k]))
		}
		if level <= tracelog.LogLevelWarn {
			log.Warn(msg, fields...)
		}
	})
}
