package pgsession_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// recorder runs Listen until cleanup and records what it reports.
type recorder struct {
	events  chan pgsession.Event
	resyncs chan []string
	states  chan bool
}

func listen(t *testing.T, store *pgsession.Store, channel string) *recorder {
	t.Helper()
	return listenWithFirstSync(t, store, channel, 0)
}

// listenWithFirstSync is listen with FeedOptions.FirstSyncWindow set to window.
func listenWithFirstSync(t *testing.T, store *pgsession.Store, channel string, window time.Duration) *recorder {
	t.Helper()
	r := &recorder{
		events:  make(chan pgsession.Event, 100),
		resyncs: make(chan []string, 100),
		states:  make(chan bool, 100),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- store.Listen(ctx, pgsession.FeedOptions{
			Channel:         channel,
			FirstSyncWindow: window,
			OnState:         r.onRole(),
		}, r)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen returned %v after cancel, want nil", err)
		}
	})
	r.wantState(t, true, 5*time.Second)
	return r
}

// onRole turns roles into the connection states the tests wait for: true when listening,
// false when a connection that listened is lost.
func (r *recorder) onRole() func(pgsession.FeedRole) {
	listening := false
	return func(role pgsession.FeedRole) {
		switch {
		case role.Listening():
			listening = true
			r.states <- true
		case listening && role == pgsession.FeedDisconnected:
			listening = false
			r.states <- false
		}
	}
}

func (r *recorder) Changed(e pgsession.Event) { r.events <- e }
func (r *recorder) Resynced(hashes []string)  { r.resyncs <- hashes }

func (r *recorder) wantState(t *testing.T, want bool, within time.Duration) {
	t.Helper()
	select {
	case got := <-r.states:
		if got != want {
			t.Fatalf("state = %v, want %v", got, want)
		}
	case <-time.After(within):
		t.Fatalf("no state change to %v within %v", want, within)
	}
}

// wantEvent waits for want, skipping other events (a cascade sends several).
func (r *recorder) wantEvent(t *testing.T, want pgsession.Event, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-r.events:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("no event %+v within %v", want, within)
		}
	}
}

// nextEvent returns the next event, failing after within.
func (r *recorder) nextEvent(t *testing.T, within time.Duration) pgsession.Event {
	t.Helper()
	select {
	case got := <-r.events:
		return got
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return pgsession.Event{}
	}
}

func (r *recorder) wantResync(t *testing.T, within time.Duration) []string {
	t.Helper()
	select {
	case got := <-r.resyncs:
		return got
	case <-time.After(within):
		t.Fatalf("no resync within %v", within)
		return nil
	}
}

func TestTriggersNotifyListenerWithinOneSecond(t *testing.T) {
	db := testenv.NewDB(t)
	r := listen(t, open(t, db.URL, time.Second), db.Channel)

	for _, tc := range []struct {
		name   string
		change string // $1 = token hash, $2 = user id
		want   func(hash, user string) pgsession.Event
	}{
		{"RevokeSession", `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1 AND user_id = $2`, byHash},
		{"ChangeExpiry", `UPDATE platform.user_sessions SET expires_at = now() WHERE token_hash = $1 AND user_id = $2`, byHash},
		{"DeleteSession", `DELETE FROM platform.user_sessions WHERE token_hash = $1 AND user_id = $2`, byHash},
		{"UpdateUserEmail", `UPDATE platform.users SET email = $1 || '@example.test' WHERE id = $2`, byUser},
		{"UpdateUserFirstName", `UPDATE platform.users SET first_name = 'x' || $1 WHERE id = $2`, byUser},
		{"UpdateUserLastName", `UPDATE platform.users SET last_name = 'x' || $1 WHERE id = $2`, byUser},
		{"UpdateUserUsername", `UPDATE platform.users SET username = 'x' || $1 WHERE id = $2`, byUser},
		{"UpdateUserAvatarURL", `UPDATE platform.users SET avatar_url = 'https://a.example/' || $1 WHERE id = $2`, byUser},
		{"ClearUserName", `UPDATE platform.users SET first_name = NULL WHERE id = $2 AND $1 <> ''`, byUser},
		{"DeleteUser", `DELETE FROM platform.users WHERE id = $2 AND $1 <> ''`, byUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := db.User(t, testenv.UserSpec{FirstName: "Ada", LastName: "Lovelace", Username: "ada", AvatarURL: "https://a.example/ada"})
			_, hash := db.Session(t, user, testenv.SessionSpec{})
			exec(t, db, tc.change, hash, user)
			r.wantEvent(t, tc.want(hash, user), time.Second)
		})
	}
}

func byHash(hash, _ string) pgsession.Event { return pgsession.Event{TokenHash: hash} }
func byUser(_, user string) pgsession.Event { return pgsession.Event{UserID: user} }

func TestTriggersIgnoreChangesThatCannotInvalidate(t *testing.T) {
	db := testenv.NewDB(t)
	// A column the app added: the trigger must not treat unknown columns as identity.
	exec(t, db, `ALTER TABLE platform.users ADD COLUMN plan text`)
	r := listen(t, open(t, db.URL, time.Second), db.Channel)
	user := db.User(t, testenv.UserSpec{FirstName: "Ada"}) // last_name etc. stay NULL
	_, quiet := db.Session(t, user, testenv.SessionSpec{})
	_, marker := db.Session(t, user, testenv.SessionSpec{})

	exec(t, db, `UPDATE platform.user_sessions SET last_activity_at = now() WHERE token_hash = $1`, quiet)
	exec(t, db, `UPDATE platform.user_sessions SET revoked_at = revoked_at, expires_at = expires_at WHERE token_hash = $1`, quiet)
	exec(t, db, `UPDATE platform.users SET email = email, first_name = first_name, last_name = last_name,
		username = username, avatar_url = avatar_url WHERE id = $1`, user)
	exec(t, db, `UPDATE platform.users SET created_at = created_at - interval '1 day' WHERE id = $1`, user)
	exec(t, db, `UPDATE platform.users SET plan = 'pro' WHERE id = $1`, user)
	db.Revoke(t, marker)

	if got := r.nextEvent(t, time.Second); got != (pgsession.Event{TokenHash: marker}) {
		t.Fatalf("first event = %+v, want the marker revocation only", got)
	}
}

func TestRevocationByAnotherTriggerIsAnnounced(t *testing.T) {
	db := testenv.NewDB(t)
	exec(t, db, `CREATE FUNCTION platform.revoke_on_flag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.user_agent = 'revoke' THEN NEW.revoked_at := now(); END IF;
  RETURN NEW;
END $$`)
	exec(t, db, `CREATE TRIGGER revoke_on_flag BEFORE UPDATE ON platform.user_sessions
		FOR EACH ROW EXECUTE FUNCTION platform.revoke_on_flag()`)
	r := listen(t, open(t, db.URL, time.Second), db.Channel)
	_, hash := db.Session(t, db.User(t, testenv.UserSpec{}), testenv.SessionSpec{})
	exec(t, db, `UPDATE platform.user_sessions SET user_agent = 'revoke' WHERE token_hash = $1`, hash)
	r.wantEvent(t, pgsession.Event{TokenHash: hash}, time.Second)
}

func TestListenSkipsMalformedPayloads(t *testing.T) {
	db := testenv.NewDB(t)
	core, logs := observer.New(zap.WarnLevel)
	store, err := pgsession.Open(context.Background(), pgsession.Options{URL: db.URL, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	r := listen(t, store, db.Channel)

	const secret = "deadbeefcafe"
	for _, payload := range []string{"not json " + secret, `{}`, `{"tokenHash": 42}`, `{"userId": "u1"}`} {
		exec(t, db, `SELECT pg_notify($1, $2)`, db.Channel, payload)
	}
	if got := r.nextEvent(t, time.Second); got != (pgsession.Event{UserID: "u1"}) {
		t.Fatalf("first event = %+v, want the only well-formed one", got)
	}
	warnings := logs.FilterMessage("skipping malformed notification").All()
	if len(warnings) != 3 {
		t.Fatalf("got %d malformed-payload warnings, want 3", len(warnings))
	}
	for _, w := range warnings {
		for k, v := range w.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, secret) {
				t.Fatalf("warning field %s leaks the payload", k)
			}
		}
	}
}

func TestListenerResyncsAfterBackendTerminated(t *testing.T) {
	db := testenv.NewDB(t)
	r := listen(t, open(t, db.URL, time.Second), db.Channel)
	user := db.User(t, testenv.UserSpec{})
	_, away := db.Session(t, user, testenv.SessionSpec{})
	_, after := db.Session(t, user, testenv.SessionSpec{})

	// Revoke in the same transaction that kills the listener's backend: the revocation
	// commits after the listener is gone, so only the resync can report it.
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, away); err != nil {
			return err
		}
		var killed bool
		err := tx.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, pgsession.ListenApplicationName).Scan(&killed)
		if err == nil && !killed {
			t.Error("pg_terminate_backend returned false")
		}
		return err
	})
	if err != nil {
		t.Fatalf("revoke and terminate: %v", err)
	}

	r.wantState(t, false, 3*time.Second)
	if hashes := r.wantResync(t, 5*time.Second); !slices.Contains(hashes, away) {
		t.Fatalf("resync = %v, want it to contain the hash revoked while away", hashes)
	}
	r.wantState(t, true, time.Second)
	db.Revoke(t, after)
	r.wantEvent(t, pgsession.Event{TokenHash: after}, time.Second)
}

func TestListenerResyncsOnFirstConnectWithinWindow(t *testing.T) {
	db := testenv.NewDB(t)
	user := db.User(t, testenv.UserSpec{})
	at := func(change, ago string) string { // a session with change set to now() - ago
		_, hash := db.Session(t, user, testenv.SessionSpec{})
		exec(t, db, `UPDATE platform.user_sessions SET `+change+` = now() - $2::interval WHERE token_hash = $1`, hash, ago)
		return hash
	}
	_, valid := db.Session(t, user, testenv.SessionSpec{})
	recent := at("revoked_at", "1 second")
	atWindowEdge := at("revoked_at", "5 minutes")
	inSlack := at("revoked_at", "5 minutes 30 seconds") // the extra minute of slack
	tooOld := at("revoked_at", "7 minutes")             // any copy cached before has expired
	expired := at("expires_at", "2 minutes")
	expiredLongAgo := at("expires_at", "7 minutes")

	r := listenWithFirstSync(t, open(t, db.URL, time.Second), db.Channel, 5*time.Minute)

	got := r.wantResync(t, time.Second) // Resynced runs before the role becomes listening
	slices.Sort(got)
	want := []string{recent, atWindowEdge, inSlack, expired}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("first-connect resync = %v, want %v (not valid %s, tooOld %s, expiredLongAgo %s)",
			got, want, valid, tooOld, expiredLongAgo)
	}
	db.Revoke(t, valid)
	r.wantEvent(t, pgsession.Event{TokenHash: valid}, time.Second)
}

func TestListenerSkipsFirstConnectResyncWithoutWindow(t *testing.T) {
	db := testenv.NewDB(t)
	user := db.User(t, testenv.UserSpec{})
	db.Session(t, user, testenv.SessionSpec{Revoked: true})
	r := listen(t, open(t, db.URL, time.Second), db.Channel)
	// listen returned after the connected state, which the listener reports only after a
	// resync it runs: by order, any resync is already in the channel.
	select {
	case got := <-r.resyncs:
		t.Fatalf("first connect resynced %v with FirstSyncWindow 0", got)
	default:
	}
}

// The reconnect resync starts where the connection was last alive, not at the first-sync
// window: a session revoked before the process started is reported once, at first connect.
func TestListenerResyncsAfterNetworkCut(t *testing.T) {
	db := testenv.NewDB(t)
	user := db.User(t, testenv.UserSpec{})
	_, longAgo := db.Session(t, user, testenv.SessionSpec{})
	exec(t, db, `UPDATE platform.user_sessions SET revoked_at = now() - interval '10 minutes' WHERE token_hash = $1`, longAgo)
	_, beforeStart := db.Session(t, user, testenv.SessionSpec{})
	exec(t, db, `UPDATE platform.user_sessions SET revoked_at = now() - interval '3 minutes' WHERE token_hash = $1`, beforeStart)
	_, revoked := db.Session(t, user, testenv.SessionSpec{})
	_, expired := db.Session(t, user, testenv.SessionSpec{})
	fwd := testenv.NewForwarder(t, hostPort(t, db.URL))
	r := listenWithFirstSync(t, open(t, db.URLVia(fwd.Addr()), time.Second), db.Channel, 5*time.Minute)
	if got := r.wantResync(t, time.Second); !slices.Equal(got, []string{beforeStart}) {
		t.Fatalf("first-connect resync = %v, want [%s]", got, beforeStart)
	}

	fwd.Cut()
	r.wantState(t, false, 3*time.Second)
	db.Revoke(t, revoked)
	exec(t, db, `UPDATE platform.user_sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, expired)
	time.Sleep(300 * time.Millisecond) // let a few reconnects be refused
	fwd.Restore()

	got := r.wantResync(t, 10*time.Second)
	slices.Sort(got)
	want := []string{revoked, expired}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("resync = %v, want %v (not the sessions revoked 3 and 10 minutes ago)", got, want)
	}
	r.wantState(t, true, time.Second)
}

func TestListenReturnsNilWhenCancelledWhileDisconnected(t *testing.T) {
	const cancelAfter = 500 * time.Millisecond
	store := open(t, "postgres://postgres@127.0.0.1:"+strconv.Itoa(testenv.FreePort(t))+"/test?sslmode=disable", time.Second)
	slack := testenv.Slack(t, func() { _ = store.Ping(context.Background()) }) // refused at once
	ctx, cancel := context.WithTimeout(context.Background(), cancelAfter)
	defer cancel()
	start := time.Now()
	if err := store.Listen(ctx, pgsession.FeedOptions{Channel: "authsidecar_session_changed"}, &recorder{}); err != nil {
		t.Fatalf("Listen = %v, want nil", err)
	}
	if d := time.Since(start); d > cancelAfter+slack {
		t.Fatalf("Listen took %v to notice a cancellation after %v (slack %v)", d, cancelAfter, slack)
	}
}
