package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// A revocation committed while no replica listens sends a notification nobody hears, and
// Redis outlives the process. The first LISTEN connect of a new process must therefore
// resync the revocations of the last SESSION_CACHE_TTL, or the restarted sidecar keeps
// serving the revoked session from Redis until its TTL.
func TestRestartDeniesSessionRevokedWhileStopped(t *testing.T) {
	st := newStack(t)
	up := NewUpstream(t, nil)
	env := st.env(up.URL, map[string]string{"SESSION_CACHE_TTL": "5m"})
	token, hash, _ := st.session(t, testenv.SessionSpec{})
	ctx := context.Background()

	first := StartSidecar(t, env)
	if r := first.Get(t, "/api/me", token); r.Status != http.StatusOK {
		t.Fatalf("before revocation: status %d, want 200", r.Status)
	}
	if st.rdb.Exists(ctx, st.sessionKey(hash)).Val() != 1 {
		t.Fatal("session was not cached in Redis")
	}
	if code := first.Stop(t); code != 0 {
		t.Fatalf("first sidecar exited %d; stderr:\n%s", code, first.Stderr())
	}

	st.db.Revoke(t, hash) // nobody listening: the notification is lost
	if st.rdb.Exists(ctx, st.sessionKey(hash)).Val() != 1 {
		t.Fatal("session left Redis while no sidecar ran; the test proves nothing")
	}

	second := StartSidecar(t, env)
	eventually(t, 5*time.Second, "restarted sidecar denies the session revoked while stopped", func() bool {
		return second.Get(t, "/api/me", token).Status == http.StatusUnauthorized
	})
	if st.rdb.Exists(ctx, st.sessionKey(hash)).Val() != 0 {
		t.Error("revoked session still in Redis after the restart's resync")
	}
}
