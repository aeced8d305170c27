package pgsession

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// ListenApplicationName is the application_name of the change feed's connection unless the
// DSN sets one, so operators (and tests) can find it in pg_stat_activity.
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
	// of the shared (Redis) cache. Nobody may have been listening before this feed started,
	// or while the previous holder was dying, so the first connect, and every takeover of
	// the feed, resyncs the sessions revoked or expired within that window (plus a minute
	// of slack). Zero skips those resyncs.
	FirstSyncWindow time.Duration
	// Shared, if set, reports whether what this replica's sink evicts reaches every other
	// replica (the cache's pub/sub is up), and a channel closed when that changes. While
	// it does, the replicas elect one holder of the feed with a Postgres advisory lock: the
	// holder listens and its sink relays each event once; one standby waits on the lock;
	// the others hold no connection. While it does not (or Shared is nil), this replica
	// listens itself.
	Shared func() (up bool, changed <-chan struct{})
	// Group names the replicas that share one relay (the same Redis and key prefix); the
	// lock is per Group and Channel, so two fleets on one database never share a holder.
	Group string
	// Wake, when it receives, sends an idle replica to try for the standby slot now rather
	// than at its next periodic try.
	Wake <-chan struct{}
	// StandbyFreed, if set, is called when this replica leaves the standby slot (it took
	// over, or stopped), so that the idle ones can be woken to take the slot.
	StandbyFreed func()
	// OnState, if set, reports the role as it changes.
	OnState func(FeedRole)
}

const (
	waitTimeout    = time.Second
	resyncMargin   = time.Minute // clock and commit-order slack for the resync window
	backoffInitial = 100 * time.Millisecond
	backoffMax     = 5 * time.Second
	connectTimeout = 5 * time.Second
	// idleRetry is how often an idle replica tries for the standby slot without being
	// woken (a lost wake-up), jittered by up to half, so a fleet does not knock at once:
	// with 1,000 replicas, 8 to 16 short connections a second to the primary.
	idleRetry = 2 * time.Minute
	// idleFirstRetry, jittered by up to itself, is when a replica first found idle tries
	// again (runElected).
	idleFirstRetry = 2 * time.Second
)

// FeedRole reports what the running Listen is doing.
func (s *Store) FeedRole() FeedRole { return s.role.Load().(FeedRole) }

// Listen runs the change feed until ctx is cancelled, when it returns nil: it LISTENs on
// o.Channel over a dedicated connection to the primary and delivers notifications to sink,
// alone or as the elected holder (see FeedOptions.Shared). Connection failures are logged
// and retried with capped exponential backoff; they are never returned.
func (s *Store) Listen(ctx context.Context, o FeedOptions, sink Sink) error {
	if o.Channel == "" {
		return errors.New("listen: empty channel")
	}
	l := &listener{store: s, o: o, sink: sink, log: s.log.With(zap.String("channel", o.Channel))}
	l.feedLock, l.standbyLock = lockKeys(o.Channel, o.Group)
	defer l.setRole(FeedOff)
	if o.Shared != nil {
		if up, changed := o.Shared(); !up {
			_ = sleep(ctx, relayGrace, changed)
		}
	}
	for ctx.Err() == nil {
		shared, changed := false, (<-chan struct{})(nil)
		if o.Shared != nil {
			shared, changed = o.Shared()
		}
		mode, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-mode.Done():
			}
		}()
		if shared {
			l.runElected(mode)
			// The relay failed: events relayed since may be lost to this replica. Resync
			// from now when listening alone (see resyncSince).
			l.lastGood, l.everConnected = time.Now(), true
		} else {
			l.runSolo(mode)
		}
		cancel()
	}
	return nil
}

// listener holds the state that survives reconnects.
type listener struct {
	store       *Store
	o           FeedOptions
	sink        Sink
	log         *zap.Logger
	feedLock    int64
	standbyLock int64

	everConnected bool      // whether lastGood is set; until then only FirstSyncWindow applies
	lastGood      time.Time // time up to which this replica missed no notification
}

// runSolo listens for this replica until ctx ends, reconnecting with backoff.
func (l *listener) runSolo(ctx context.Context) {
	backoff := backoffInitial
	for {
		l.setRole(FeedDisconnected)
		connected, err := l.session(ctx, false)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = backoffInitial
		}
		l.log.Warn("notification listener disconnected; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		if !sleep(ctx, backoff, nil) {
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// session runs one connection's lifetime. Elected, it first takes the feed's lock, waiting
// for it as the standby if that slot is free, and gives up (errIdle) if neither is. It
// reports whether the connection got as far as listening, and why it ended.
func (l *listener) session(ctx context.Context, elected bool) (listening bool, err error) {
	conn, err := l.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // the connection, and the locks it holds, are discarded
	}()
	resyncFrom := l.resyncSince
	role := FeedSolo
	if elected {
		if err := l.takeFeed(ctx, conn); err != nil {
			return false, err
		}
		// Whoever held the feed before may have died with events unsent: resync the
		// whole window, as a fresh process does.
		resyncFrom = l.firstSync
		role = FeedHolder
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.o.Channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	// Read the clock only once LISTEN is active: from here on nothing is missed.
	now, err := l.dbNow(ctx, conn)
	if err != nil {
		return false, err
	}
	if since, ok := resyncFrom(now); ok {
		hashes, err := l.resync(ctx, conn, since)
		if err != nil {
			return false, err // lastGood unchanged: the next connect retries the resync
		}
		l.sink.Resynced(hashes)
		l.log.Info("change feed listening", zap.String("role", string(role)), zap.Int("resynced", len(hashes)))
	}
	l.everConnected = true
	l.lastGood = now
	l.setRole(role)
	return true, l.wait(ctx, conn)
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, max(connectTimeout, l.store.timeout))
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.store.connCfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := conn.Exec(ctx, deadPeerSQL); err != nil {
		// Only the takeover after a vanished host is slower without them.
		l.log.Debug("cannot shorten the feed connection's TCP timeouts", zap.Error(err))
	}
	if _, err := conn.Exec(ctx, leftSessionCheck); err != nil {
		l.log.Debug("cannot make the server check for a feed connection that left", zap.Error(err))
	}
	return conn, nil
}

// resyncSince returns the time from which notifications may have been missed, given the
// database time now, and false when no resync is needed.
func (l *listener) resyncSince(now time.Time) (time.Time, bool) {
	if l.everConnected {
		return l.lastGood.Add(-resyncMargin), true
	}
	return l.firstSync(now)
}

// firstSync is the resync of a feed that cannot know what it missed. A copy cached before
// a revocation lives at most the window, so older revocations need no eviction.
func (l *listener) firstSync(now time.Time) (time.Time, bool) {
	if l.o.FirstSyncWindow <= 0 {
		return time.Time{}, false
	}
	return now.Add(-l.o.FirstSyncWindow - resyncMargin), true
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

func (l *listener) setRole(r FeedRole) {
	if l.store.role.Swap(r) == r {
		return
	}
	if l.o.OnState != nil {
		l.o.OnState(r)
	}
}
