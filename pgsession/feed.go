package pgsession

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// ListenApplicationName is the application_name of the LISTEN connection unless the DSN
// sets one, so operators (and tests) can find it in pg_stat_activity.
const ListenApplicationName = "authsidecar-listen"

// Event is the payload the shipped trigger sends: exactly one field is set.
type Event struct {
	TokenHash string `json:"tokenHash,omitempty"`
	UserID    string `json:"userId,omitempty"`
}

// Sink is what the change feed delivers to: the cache that must forget what changed.
// pgsession declares it and authcache implements it, so the revocation path reads from the
// trigger (sql/notify.sql) through Listen to the cache. Its methods run on Listen's
// goroutine, one at a time, in the order the database sent them.
type Sink interface {
	// Changed receives each well-formed notification: a session or a user changed.
	Changed(Event)
	// Resynced receives the hashes of sessions revoked or expired while notifications may
	// have been missed: after every reconnect, and after the first connect when
	// FeedOptions.FirstSyncWindow is positive. The sink drops its in-process copies and
	// evicts these hashes.
	Resynced(hashes []string)
}

// FeedOptions configures Listen.
type FeedOptions struct {
	// Channel is the channel the shipped trigger notifies (DB_NOTIFY_CHANNEL).
	Channel string
	// FirstSyncWindow is the longest a cached session can outlive its revocation: the TTL
	// of the shared (Redis) cache. Nobody may have been listening before this process
	// started, so when it is positive the first connect resyncs the sessions revoked or
	// expired within that window (plus a minute of slack). Zero skips the first resync.
	FirstSyncWindow time.Duration
	// OnState, if set, reports the connection state as it changes.
	OnState func(connected bool)
}

const (
	waitTimeout    = time.Second
	resyncMargin   = time.Minute // clock and commit-order slack for the resync window
	backoffInitial = 100 * time.Millisecond
	backoffMax     = 5 * time.Second
	connectTimeout = 5 * time.Second
)

// Listen LISTENs on o.Channel over a dedicated connection and delivers notifications to
// sink until ctx is cancelled, when it returns nil. Connection failures are logged and
// retried with capped exponential backoff; they are never returned.
func (s *Store) Listen(ctx context.Context, o FeedOptions, sink Sink) error {
	if o.Channel == "" {
		return errors.New("listen: empty channel")
	}
	l := &listener{store: s, channel: o.Channel, o: o, sink: sink, log: s.log.With(zap.String("channel", o.Channel))}
	backoff := backoffInitial
	for {
		connected, err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = backoffInitial
		}
		l.log.Warn("notification listener disconnected; retrying",
			zap.Error(err), zap.Duration("backoff", backoff))
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// listener holds the state that survives reconnects.
type listener struct {
	store   *Store
	channel string
	o       FeedOptions
	sink    Sink
	log     *zap.Logger

	everConnected bool      // whether lastGood is set; until then only FirstSyncWindow applies
	lastGood      time.Time // database time up to which no notification can have been missed
}

// session runs one connection's lifetime. It reports whether the connection got as far
// as listening, and why it ended.
func (l *listener) session(ctx context.Context) (connected bool, err error) {
	conn, err := l.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // the connection is being discarded either way
		if connected {
			l.setState(false)
		}
	}()

	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	// Read the clock only once LISTEN is active: from here on nothing is missed.
	now, err := l.dbNow(ctx, conn)
	if err != nil {
		return false, err
	}
	if since, ok := l.resyncSince(now); ok {
		hashes, err := l.resync(ctx, conn, since)
		if err != nil {
			return false, err // lastGood unchanged: the next connect retries the resync
		}
		l.sink.Resynced(hashes)
		msg := "notification listener reconnected"
		if !l.everConnected {
			msg = "notification listener connected"
		}
		l.log.Info(msg, zap.Int("resynced", len(hashes)))
	}
	l.everConnected = true
	l.lastGood = now
	l.setState(true)
	return true, l.wait(ctx, conn)
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, max(connectTimeout, l.store.timeout))
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.store.connCfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// resyncSince returns the database time from which notifications may have been missed,
// given the database time now, and false when no resync is needed.
func (l *listener) resyncSince(now time.Time) (time.Time, bool) {
	switch {
	case l.everConnected:
		return l.lastGood.Add(-resyncMargin), true
	case l.o.FirstSyncWindow > 0:
		// Revocations from before this process may never have been heard. A copy cached
		// before a revocation lives at most the window, so older ones need no eviction.
		return now.Add(-l.o.FirstSyncWindow - resyncMargin), true
	default:
		return time.Time{}, false
	}
}

func (l *listener) resync(ctx context.Context, conn *pgx.Conn, since time.Time) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.store.timeout)
	defer cancel()
	return revokedSince(ctx, conn, since)
}

// wait delivers notifications until the connection fails or ctx is done. A wait that
// times out cleanly is followed by a round trip, so a silently dead connection is noticed
// within about a second, and lastGood only advances over a connection proven alive.
func (l *listener) wait(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, waitTimeout)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if n != nil {
				l.deliver(n.Payload)
			}
		case errors.Is(err, context.DeadlineExceeded):
			now, err := l.dbNow(ctx, conn)
			if err != nil {
				return err
			}
			l.lastGood = now
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

func (l *listener) dbNow(ctx context.Context, conn *pgx.Conn) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, l.store.timeout)
	defer cancel()
	var now time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("probe connection: %w", err)
	}
	return now, nil
}

func (l *listener) deliver(payload string) {
	ev, err := ParseEvent(payload)
	if err != nil {
		// The payload may hold a token hash: log its size, never its content.
		l.log.Warn("skipping malformed notification", zap.Error(err), zap.Int("bytes", len(payload)))
		return
	}
	l.sink.Changed(ev)
}

func (l *listener) setState(connected bool) {
	if l.o.OnState != nil {
		l.o.OnState(connected)
	}
}
