package e2e

// The app down: docs/deploying.md's failure table row, with the app reached through a
// forwarder that refuses every connection while cut.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

func TestFaultAppDownIs502AndCounted(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	up := NewUpstream(t, echoUser)
	app := testenv.NewForwarder(t, strings.TrimPrefix(up.URL, "http://"))
	sc := StartSidecar(t, st.env("http://"+app.Addr(), nil))
	token, _, userID := st.session(t, testenv.SessionSpec{})
	assertDecision(t, uncached, sc.Get(t, "/api/me", token), http.StatusOK, userID)
	before := value(t, sc, series502)

	app.Cut()
	const requests = 3
	for range requests {
		assertJSONError(t, sc.Get(t, "/api/me", token), http.StatusBadGateway, "bad gateway")
		// Sessions are validated first: a bad token is still refused, not a 502.
		assertUnauthorized(t, sc.Get(t, "/api/me", "not-a-session"))
	}
	// Counted once the access line is written, just after the answer: waited for, then
	// exact.
	eventually(t, 5*time.Second, series502+" rises by each 502", func() bool {
		return value(t, sc, series502)-before >= requests
	})
	if rose := value(t, sc, series502) - before; rose != requests {
		t.Errorf("%s rose by %v, want %d", series502, rose, requests)
	}
	assertReady(t, sc, http.StatusOK, "with the app down (readiness follows Postgres only)")

	app.Restore() // recovers by itself
	assertDecision(t, uncached, sc.Get(t, "/api/me", token), http.StatusOK, userID)
}
