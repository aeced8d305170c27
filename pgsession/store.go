// Package pgsession reads sessions from Postgres, the source of truth: it looks a session
// up by the hash of its token, lists revocations for cache resynchronisation, listens for
// the change notifications the shipped trigger sends, and ships that schema as SQL.
package pgsession

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/tracelog"
	"go.uber.org/zap"
)

// ErrNotFound reports that no valid session matches the token hash: unknown, revoked,
// expired, or its user deleted.
var ErrNotFound = errors.New("pgsession: session not found")

// Session is a valid session joined with its user. Nullable columns read as their zero
// value.
type Session struct {
	TokenHash string // lowercase hex SHA-256 of the raw token (never the raw token)
	ID        string
	UserID    string

	Email     string
	FirstName string
	LastName  string
	Username  string
	AvatarURL string

	ExpiresAt      time.Time
	CreatedAt      time.Time
	LastActivityAt time.Time // zero when NULL

	IPAddress string
	UserAgent string
}

// Options configures a Store. Zero values take the documented defaults.
type Options struct {
	// URL is where lookups go: the primary, a read replica or a transaction-mode pooler.
	URL string
	// PrimaryURL is the primary: the change feed and every query that decides a
	// revocation. "" means URL.
	PrimaryURL   string
	MaxConns     int32         // size of each pool; default 10
	QueryTimeout time.Duration // deadline of one query; default 2s
	Logger       *zap.Logger   // default zap.NewNop()
}

const (
	defaultMaxConns     = 10
	defaultQueryTimeout = 2 * time.Second
)

// Store reads sessions through a pgxpool, and through a second one on the primary when
// lookups go to a replica.
type Store struct {
	pool    *pgxpool.Pool   // lookups
	primary *pgxpool.Pool   // the primary; pool itself when URL is the primary
	connCfg *pgx.ConnConfig // the primary, for the dedicated feed connection; no tracer
	timeout time.Duration
	log     *zap.Logger
	role    atomic.Value // FeedRole of the running Listen
	// replica is set once a lookup connection reports it is in recovery (a hot standby):
	// only then can a lookup lag behind the primary. A pooler in front of the primary, or
	// the primary under another name, never sets it, and then no query goes to the primary
	// pool.
	replica atomic.Bool
}

// primaryIdleTime closes idle primary connections of a Store that reads a replica: they
// serve only recently revoked tokens, so a replica at rest holds none.
const primaryIdleTime = time.Minute

// Open builds the pools. It does not connect: connections are made on first use, so a
// sidecar starts while Postgres is down. Only an unparsable DSN is an error.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = defaultQueryTimeout
	}
	if o.PrimaryURL == "" {
		o.PrimaryURL = o.URL
	}
	log := o.Logger.Named("pgsession")
	s := &Store{timeout: o.QueryTimeout, log: log}
	s.role.Store(FeedOff)
	var err error
	if s.pool, err = newPool(ctx, o.URL, o.MaxConns, 0, log, s.noteRecovery); err != nil {
		return nil, err
	}
	s.primary = s.pool
	if o.PrimaryURL != o.URL {
		if s.primary, err = newPool(ctx, o.PrimaryURL, o.MaxConns, primaryIdleTime, log, nil); err != nil {
			s.pool.Close()
			return nil, err
		}
	}
	s.connCfg = s.primary.Config().ConnConfig.Copy()
	s.connCfg.Tracer = nil
	if s.connCfg.RuntimeParams["application_name"] == "" {
		s.connCfg.RuntimeParams["application_name"] = ListenApplicationName
	}
	return s, nil
}

// newPool builds a lazy pool; idle, when positive, closes connections idle that long, and
// afterConnect, if set, runs on every new connection.
func newPool(ctx context.Context, url string, maxConns int32, idle time.Duration, log *zap.Logger,
	afterConnect func(context.Context, *pgx.Conn) error) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn redacts the password in its parse errors.
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.MinConns = 0 // lazy: never dial at start
	cfg.MaxConns = maxConns
	if idle > 0 {
		cfg.MaxConnIdleTime = idle
	}
	cfg.ConnConfig.Tracer = &tracelog.TraceLog{
		Logger:   zapTraceLogger(log.Named("pgx")),
		LogLevel: tracelog.LogLevelWarn,
	}
	cfg.AfterConnect = afterConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return pool, nil
}

// noteRecovery records whether a new lookup connection reaches a server in recovery.
func (s *Store) noteRecovery(ctx context.Context, conn *pgx.Conn) error {
	if s.primary == s.pool {
		return nil // one pool: nothing to choose
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("ask whether the server is a replica: %w", err)
	}
	if inRecovery {
		s.replica.Store(true)
	}
	return nil
}

// Close closes the pools. A running Listen is stopped by cancelling its context.
func (s *Store) Close() {
	if s.primary != s.pool {
		s.primary.Close()
	}
	s.pool.Close()
}

// Ping checks that Postgres answers within the query timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

const sessionColumns = `s.token_hash, s.id::text, s.user_id::text,
	u.email, coalesce(u.first_name, ''), coalesce(u.last_name, ''),
	coalesce(u.username, ''), coalesce(u.avatar_url, ''),
	s.expires_at, s.created_at, s.last_activity_at,
	coalesce(s.ip_address, ''), coalesce(s.user_agent, '')
FROM platform.user_sessions s JOIN platform.users u ON u.id = s.user_id`

// validSession is the SPEC's validity rule; every query that returns sessions uses it.
const validSession = `s.revoked_at IS NULL AND s.expires_at > now()`

const lookupSQL = `SELECT ` + sessionColumns + `
WHERE s.token_hash = $1 AND ` + validSession

const activeSQL = `SELECT ` + sessionColumns + `
WHERE ` + validSession + ` AND coalesce(s.last_activity_at, s.created_at) >= $1
ORDER BY coalesce(s.last_activity_at, s.created_at) DESC
LIMIT $2`

// Lookup returns the valid session whose token hashes to tokenHash, or ErrNotFound.
// Any other error means the store could not decide. It reads URL; when that is a hot
// standby, ErrNotFound is confirmed on the primary first, so a session created moments ago
// on the primary, not yet replayed, is never refused.
func (s *Store) Lookup(ctx context.Context, tokenHash string) (Session, error) {
	sess, err := s.lookup(ctx, s.pool, tokenHash)
	if errors.Is(err, ErrNotFound) && s.replica.Load() {
		return s.lookup(ctx, s.primary, tokenHash)
	}
	return sess, err
}

// LookupPrimary is Lookup on the primary, for a token or user that changed moments ago:
// a replica may not have replayed the change yet. When lookups do not read a replica, it is
// Lookup.
func (s *Store) LookupPrimary(ctx context.Context, tokenHash string) (Session, error) {
	if !s.replica.Load() {
		return s.lookup(ctx, s.pool, tokenHash)
	}
	return s.lookup(ctx, s.primary, tokenHash)
}

func (s *Store) lookup(ctx context.Context, pool *pgxpool.Pool, tokenHash string) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, err := scanSession(pool.QueryRow(ctx, lookupSQL, tokenHash))
	if err != nil && pgconn.SafeToRetry(err) && ctx.Err() == nil {
		// The query never left: a pooled connection that died while Postgres was away.
		// Another connection may well answer; a 503 now would be for nothing.
		sess, err = scanSession(pool.QueryRow(ctx, lookupSQL, tokenHash))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("lookup session: %w", err)
	}
	return sess, nil
}

// Active returns up to limit valid sessions active at or after since, most recently
// active first. It feeds cache warming.
func (s *Store) Active(ctx context.Context, since time.Time, limit int) ([]Session, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, activeSQL, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list active sessions: %w", err)
	}
	sessions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
		return scanSession(r)
	})
	if err != nil {
		return nil, fmt.Errorf("list active sessions: %w", err)
	}
	return sessions, nil
}

// RevokedSince returns the hashes of sessions revoked at or after since, and of those
// whose expiry fell in [since, now], as the primary knows them. Deleted sessions cannot be
// listed: they left no row.
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]string, error) {
	return revokedSince(ctx, s.primary, since)
}

const revokedSinceSQL = `SELECT token_hash FROM platform.user_sessions WHERE revoked_at >= $1
UNION
SELECT token_hash FROM platform.user_sessions WHERE expires_at >= $1 AND expires_at <= now()`

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func revokedSince(ctx context.Context, q querier, since time.Time) ([]string, error) {
	rows, err := q.Query(ctx, revokedSinceSQL, since)
	if err != nil {
		return nil, fmt.Errorf("list revoked sessions: %w", err)
	}
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list revoked sessions: %w", err)
	}
	return hashes, nil
}

func scanSession(row pgx.Row) (Session, error) {
	var (
		s            Session
		lastActivity *time.Time
	)
	err := row.Scan(&s.TokenHash, &s.ID, &s.UserID,
		&s.Email, &s.FirstName, &s.LastName, &s.Username, &s.AvatarURL,
		&s.ExpiresAt, &s.CreatedAt, &lastActivity,
		&s.IPAddress, &s.UserAgent)
	if err != nil {
		return Session{}, err
	}
	s.ExpiresAt = s.ExpiresAt.UTC()
	s.CreatedAt = s.CreatedAt.UTC()
	if lastActivity != nil {
		s.LastActivityAt = lastActivity.UTC()
	}
	return s, nil
}
