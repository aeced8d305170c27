package pgsession

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// The election of one holder of the change feed among the replicas that share a relay
// (FeedOptions.Shared): an advisory lock on the feed connection, one standby waiting on it.

// FeedRole is what this replica's change feed is doing.
type FeedRole string

// The roles. Solo and Holder listen; Standby waits, on one connection, to become Holder;
// Idle holds no connection.
const (
	FeedOff          FeedRole = "off"          // Listen is not running
	FeedDisconnected FeedRole = "disconnected" // connecting, or backing off after a failure
	FeedSolo         FeedRole = "solo"         // listening for this replica alone
	FeedHolder       FeedRole = "holder"       // listening and relaying for every replica
	FeedStandby      FeedRole = "standby"      // next in line: takes over when the holder dies
	FeedIdle         FeedRole = "idle"         // another replica holds the feed
)

// Listening reports whether the role receives notifications itself.
func (r FeedRole) Listening() bool { return r == FeedSolo || r == FeedHolder }

// deadPeerSQL makes the server notice a vanished feed connection (its host gone, not just
// its process, which closes the socket) within about two seconds, so the standby's wait for
// the lock ends promptly. Any role may set these; they are SET rather than sent at startup,
// which a pooler in session mode would refuse.
const deadPeerSQL = "SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; " +
	"SET tcp_keepalives_count = 1; SET tcp_user_timeout = 2000"

// leftSessionCheck makes a backend waiting for the feed's lock notice within a second that
// its client has left (PostgreSQL 14 and later). A cancelled wait closes the connection
// without a cancel request, and without this the backend would go on waiting, holding the
// standby slot, until it got the feed's lock and found nobody to tell.
const leftSessionCheck = "SET client_connection_check_interval = 1000"

// relayGrace is how long a starting feed waits for the relay (the cache's pub/sub) to come
// up before it listens alone: a fleet that starts together then elects one holder instead
// of every replica connecting and resyncing first.
const relayGrace = 2 * time.Second

// lockKeys derives the advisory lock keys of the holder and the standby slot.
func lockKeys(channel, group string) (feed, standby int64) {
	h := fnv.New64a()
	_, _ = h.Write([]byte("authsidecar feed\x00" + channel + "\x00" + group))
	feed = int64(h.Sum64())
	_, _ = h.Write([]byte("\x00standby"))
	return feed, int64(h.Sum64())
}

// runElected competes for the feed until ctx ends: it holds it, waits as the standby, or
// stays idle until woken or its periodic try.
func (l *listener) runElected(ctx context.Context) {
	backoff, triedAgain := backoffInitial, false
	for {
		l.setRole(FeedDisconnected)
		connected, err := l.session(ctx, true)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errIdle):
			l.setRole(FeedIdle)
			backoff = backoffInitial
			wait := idleRetry/2 + time.Duration(rand.Int64N(int64(idleRetry/2)))
			if !triedAgain {
				// The slots may be held by the sessions of a fleet that just switched
				// modes, whose backends end a moment later (leftSessionCheck): one early
				// try, so a fleet is not left without a holder until its periodic try.
				wait, triedAgain = idleFirstRetry+time.Duration(rand.Int64N(int64(idleFirstRetry))), true
			}
			if !sleep(ctx, wait, l.o.Wake) {
				return
			}
			// Woken: a slot is free. Spread the fleet's tries over half a second.
			if !sleep(ctx, time.Duration(rand.Int64N(int64(500*time.Millisecond))), nil) {
				return
			}
			continue
		case connected:
			backoff, triedAgain = backoffInitial, false
		}
		l.log.Warn("change feed connection lost; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		if !sleep(ctx, backoff, nil) {
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// sleep waits d, or until wake receives; it reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// errIdle ends an elected session that found both the feed and the standby slot taken.
var errIdle = errors.New("another replica holds the feed and one waits for it")

// takeFeed takes the feed's lock on conn: at once if it is free; otherwise, as the
// standby, by waiting for it if the standby slot is free; otherwise errIdle.
func (l *listener) takeFeed(ctx context.Context, conn *pgx.Conn) error {
	if ok, err := l.tryLock(ctx, conn, l.feedLock); err != nil || ok {
		return err
	}
	ok, err := l.tryLock(ctx, conn, l.standbyLock)
	if err != nil {
		return err
	}
	if !ok {
		return errIdle
	}
	l.setRole(FeedStandby)
	defer l.freeStandby()
	// Blocks until the holder's session ends; cancelling ctx cancels the wait.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", l.feedLock); err != nil {
		return fmt.Errorf("wait for the feed: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.standbyLock); err != nil {
		return fmt.Errorf("leave the standby slot: %w", err)
	}
	l.log.Info("change feed taken over")
	return nil
}

func (l *listener) freeStandby() {
	if l.o.StandbyFreed != nil {
		l.o.StandbyFreed()
	}
}

func (l *listener) tryLock(ctx context.Context, conn *pgx.Conn, key int64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.store.timeout)
	defer cancel()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		return false, fmt.Errorf("try the feed lock: %w", err)
	}
	return ok, nil
}
