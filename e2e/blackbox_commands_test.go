package e2e

// Black-box tests of the README's command table: `healthcheck` exits 0 iff /readyz answers
// 200, and `serve` exits 1 when a listener cannot bind.

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

func TestBlackboxHealthcheckExitsZeroOnlyWhenReady(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	pg := testenv.NewForwarder(t, hostOf(t, st.db.URL))
	sc := StartSidecar(t, st.env(NewUpstream(t, nil).URL, map[string]string{"DATABASE_URL": st.db.URLVia(pg.Addr())}))
	admin := strings.TrimPrefix(sc.AdminURL, "http://")
	_, port, _ := net.SplitHostPort(admin)
	awaitReady(t, sc, http.StatusOK, 5*time.Second)
	if r := sc.Admin(t, "/readyz"); r.Body != `{"status":"ok"}`+"\n" {
		t.Errorf("/readyz 200 body %q", r.Body)
	}

	// A listener that accepts and never answers: healthcheck gives up after 3 s.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()

	for _, tc := range []struct {
		name, addr string
		want       int
	}{
		{"ready", admin, 0},
		{"wildcard host asks 127.0.0.1", "0.0.0.0:" + port, 0},
		{"nothing listens", "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), 1},
		{"invalid ADMIN_ADDR", "no-port", 2},
	} {
		if code, _, stderr := runSidecar(t, map[string]string{"ADMIN_ADDR": tc.addr}, "healthcheck"); code != tc.want {
			t.Errorf("%s: healthcheck exited %d, want %d; stderr %q", tc.name, code, tc.want, stderr)
		}
	}

	start := time.Now()
	code, _, _ := runSidecar(t, map[string]string{"ADMIN_ADDR": silent.Addr().String()}, "healthcheck")
	took := time.Since(start)
	t.Logf("measured: healthcheck against a silent listener gave up after %v", took.Round(time.Millisecond))
	// The lower bound is the product's (it waited its 3 s); the upper one only catches a hang.
	if code != 1 || took < 2900*time.Millisecond || took > 15*time.Second {
		t.Errorf("healthcheck against a silent listener: exit %d after %v, want 1 after 3 s", code, took)
	}

	pg.Cut() // /readyz 503: not ready
	awaitReady(t, sc, http.StatusServiceUnavailable, 5*time.Second)
	// reference.md's internal listener: the bodies and Retry-After of /readyz and /healthz.
	for path, want := range map[string]string{"/readyz": `{"status":"unavailable"}`, "/healthz": `{"status":"ok"}`} {
		r := sc.Admin(t, path)
		if r.Body != want+"\n" || r.Header.Get("Content-Type") != "application/json" ||
			path == "/readyz" && r.Header.Get("Retry-After") != "1" {
			t.Errorf("%s with Postgres down: %d %q %v", path, r.Status, r.Body, r.Header)
		}
	}
	if code, _, stderr := runSidecar(t, map[string]string{"ADMIN_ADDR": admin}, "healthcheck"); code != 1 {
		t.Errorf("healthcheck while /readyz answers 503 exited %d, want 1; stderr %q", code, stderr)
	}
}

func TestBlackboxServeExits1WhenAListenerCannotBind(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	for _, listener := range []string{"LISTEN_ADDR", "ADMIN_ADDR"} {
		env := st.env(NewUpstream(t, nil).URL, map[string]string{
			"LISTEN_ADDR": "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
			"ADMIN_ADDR":  "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		})
		env[listener] = taken.Addr().String()
		if code, _, stderr := runSidecar(t, env); code != 1 {
			t.Errorf("%s already in use: exit %d, want 1; stderr:\n%s", listener, code, stderr)
		}
	}
}
