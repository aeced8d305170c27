package e2e

// Open WebSockets and event streams close on the eviction itself, whatever its source: for
// each, one of each is opened through a replica, the session is evicted, and both must be
// gone within rvStreamCut (plus this machine's slack). Nothing polls: the bound is far
// below any revalidation period the sidecar ever had.

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

func TestLongLivedConnectionsCloseOnEveryEviction(t *testing.T) {
	env := newRvEnv(t)
	a, b := env.start(t, "a", true), env.start(t, "b", true)
	env.awaitListeners(t, nil, 2)
	env.awaitSubscribers(t, 2)
	cut := env.closeBound(t)

	logout := func(t *testing.T, s *rvReplica, token string) {
		// The app revokes the row without a notification (rvEnv.app): only the sidecar's
		// logout eviction, and its publish, reach the watches.
		if code := s.Get(t, "/api/auth/logout", token).Status; code != http.StatusOK {
			t.Fatalf("logout answered %d, want 200", code)
		}
	}
	admin := func(t *testing.T, s *rvReplica, body map[string]string) {
		raw, _ := json.Marshal(body)
		if code, resp := s.invalidate(t, rvAdminToken, string(raw)); code != http.StatusOK {
			t.Fatalf("POST /admin/invalidate %s = %d %s", raw, code, resp)
		}
	}
	cases := []struct {
		name  string
		on    *rvReplica // where the connections are open
		evict func(t *testing.T, token, hash, user string)
	}{
		// The change feed's holder evicts; the other replica hears it from the holder.
		{"TriggerRevokedAt", a, func(t *testing.T, _, hash, _ string) { env.db.Revoke(t, hash) }},
		{"TriggerRevokedAtOtherReplica", b, func(t *testing.T, _, hash, _ string) { env.db.Revoke(t, hash) }},
		{"TriggerDeleteRow", a, func(t *testing.T, _, hash, _ string) {
			env.exec(t, `DELETE FROM platform.user_sessions WHERE token_hash = $1`, hash)
		}},
		{"TriggerDeleteUser", b, func(t *testing.T, _, _, user string) {
			env.exec(t, `DELETE FROM platform.users WHERE id = $1`, user)
		}},
		{"Logout", a, func(t *testing.T, token, _, _ string) { logout(t, a, token) }},
		{"AdminToken", a, func(t *testing.T, token, hash, _ string) {
			env.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash)
			admin(t, a, map[string]string{"token": token})
		}},
		{"AdminUserID", a, func(t *testing.T, _, _, user string) {
			env.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE user_id = $1`, user)
			admin(t, a, map[string]string{"userId": user})
		}},
		// Only Redis pub/sub carries these to b: the row changes silently, a evicts.
		{"PeerAdminTokenHash", b, func(t *testing.T, _, hash, _ string) {
			env.silently(t, `DELETE FROM platform.user_sessions WHERE token_hash = $1`, hash)
			admin(t, a, map[string]string{"tokenHash": hash})
		}},
		{"PeerAdminUserID", b, func(t *testing.T, _, _, user string) {
			env.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE user_id = $1`, user)
			admin(t, a, map[string]string{"userId": user})
		}},
		{"PeerLogout", b, func(t *testing.T, token, _, _ string) { logout(t, a, token) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token, hash, user := env.session(t, testenv.SessionSpec{})
			ll := env.openLongLived(t, tc.on, token)
			start := time.Now()
			tc.evict(t, token, hash, user)
			awaitClosed(t, tc.name, start, cut, ll)
		})
	}
	// Revoked while no replica listens: no notification carries it, the resync after the
	// reconnect does. Bounded by the reconnect (its first backoff is 100 ms) and the
	// resync query as well as by the close.
	t.Run("ResyncAfterReconnect", func(t *testing.T) {
		token, hash, _ := env.session(t, testenv.SessionSpec{})
		lla, llb := env.openLongLived(t, a, token), env.openLongLived(t, b, token)
		start := time.Now()
		env.revokeAndTerminateListeners(t, hash, env.listenPIDs(t))
		awaitClosed(t, "ResyncAfterReconnect", start, rvBudget+cut, lla, llb)
		env.awaitListeners(t, nil, 2)
	})
	t.Run("Expiry", func(t *testing.T) {
		token, hash, _ := env.session(t, testenv.SessionSpec{ExpiresIn: 1500 * time.Millisecond})
		var expires time.Time
		if err := env.db.Pool.QueryRow(context.Background(),
			`SELECT expires_at FROM platform.user_sessions WHERE token_hash = $1`, hash).Scan(&expires); err != nil {
			t.Fatal(err)
		}
		ll := env.openLongLived(t, a, token)
		// No eviction announces an expiry: the watch's timer at expires_at does.
		awaitClosed(t, "Expiry", expires, cut, ll)
	})
}

// longLived is one WebSocket and one event stream open under a session.
type longLived struct {
	conn    net.Conn
	br      *bufio.Reader
	appSide <-chan struct{} // closed once the app's side of the WebSocket is gone
	events  *bufio.Reader
	replica string
}

func (e *rvEnv) openLongLived(t *testing.T, s *rvReplica, token string) *longLived {
	t.Helper()
	conn, br, _ := dialWebSocket(t, s.Sidecar, token, nil)
	wsEcho(t, conn, br, "ping")
	ll := &longLived{conn: conn, br: br, appSide: e.nextWebSocketClosed(t), replica: s.name}
	ll.events = s.openEventStream(t, token)
	return ll
}

// awaitClosed waits for both connections of each ll to close and fails unless each did
// within cut of start; it logs every time. All are read at once, so each time is its own.
func awaitClosed(t *testing.T, name string, start time.Time, cut time.Duration, lls ...*longLived) {
	t.Helper()
	type closing struct {
		ll      *longLived
		wsC     <-chan time.Duration
		sseC    <-chan time.Duration
		ws, sse time.Duration
	}
	all := make([]*closing, len(lls))
	for i, ll := range lls {
		all[i] = &closing{ll: ll, wsC: wsClosedAfter(start, ll.conn, ll.br, cut),
			sseC: streamEndedAfter(start, ll.events), ws: -1, sse: -1}
	}
	timeout := time.After(time.Until(start.Add(cut + time.Second)))
	for _, c := range all {
		for got := 0; got < 2; got++ {
			select {
			case c.ws = <-c.wsC:
			case c.sse = <-c.sseC:
			case <-timeout:
				t.Fatalf("%s on %s: still open %v later (WebSocket closed after %v, event stream after %v; -1 = open)",
					name, c.ll.replica, time.Since(start), c.ws, c.sse)
			}
		}
	}
	for _, c := range all {
		select {
		case <-c.ll.appSide:
		case <-time.After(time.Until(start.Add(cut + time.Second))):
			t.Fatalf("%s on %s: the app's side of the WebSocket is still open", name, c.ll.replica)
		}
		t.Logf("measured: %s on replica %s: WebSocket closed after %v, event stream ended after %v (bound %v)",
			name, c.ll.replica, c.ws.Round(100*time.Microsecond), c.sse.Round(100*time.Microsecond), cut)
		if c.ws < 0 || c.ws >= cut {
			t.Errorf("%s on %s: WebSocket closed after %v, want < %v", name, c.ll.replica, c.ws, cut)
		}
		if c.sse >= cut {
			t.Errorf("%s on %s: event stream ended after %v, want < %v", name, c.ll.replica, c.sse, cut)
		}
	}
}
