package e2e

// The revocation test's admin API cases: POST /admin/invalidate on one replica reaches both,
// and answers each malformed or unauthorised call with its status code.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// adminCases revokes sessions silently, so that only POST /admin/invalidate on a (by token,
// by user) or b (by token hash) can stop the cached copies.
func (e *rvEnv) adminCases(t *testing.T, a, b *rvReplica) {
	t.Run("AdminToken", func(t *testing.T) {
		token, hash, _ := e.session(t, testenv.SessionSpec{})
		e.adminCase(t, "AdminToken", a, []string{token}, func() {
			e.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE token_hash = $1`, hash)
		}, map[string]string{"token": token}, 1)
	})
	t.Run("AdminTokenHash", func(t *testing.T) {
		token, hash, _ := e.session(t, testenv.SessionSpec{})
		e.adminCase(t, "AdminTokenHash", b, []string{token}, func() {
			e.silently(t, `DELETE FROM platform.user_sessions WHERE token_hash = $1`, hash)
		}, map[string]string{"tokenHash": hash}, 1)
	})
	t.Run("AdminUserID", func(t *testing.T) {
		user := e.db.User(t, testenv.UserSpec{})
		t1, _ := e.db.Session(t, user, testenv.SessionSpec{})
		t2, _ := e.db.Session(t, user, testenv.SessionSpec{})
		e.adminCase(t, "AdminUserID", a, []string{t1, t2}, func() {
			e.silently(t, `UPDATE platform.user_sessions SET revoked_at = now() WHERE user_id = $1`, user)
		}, map[string]string{"userId": user}, 2)
	})
}

// adminCase warms the tokens on both replicas, revokes them silently, checks that the cached
// copies still answer (so what follows is the admin call's doing), invalidates through s's
// admin API, and measures until both replicas deny every token.
func (e *rvEnv) adminCase(t *testing.T, name string, s *rvReplica, tokens []string, revoke func(), body map[string]string, wantN int) {
	t.Helper()
	for _, tok := range tokens {
		e.warm(t, tok)
	}
	revoke()
	for _, tok := range tokens {
		for _, r := range e.replicas {
			if code := r.Get(t, "/", tok).Status; code != http.StatusOK {
				t.Fatalf("%s: silently revoked session answered %d before the admin call, want the cached 200", r.name, code)
			}
		}
	}
	raw, _ := json.Marshal(body)
	start := time.Now()
	code, resp := s.invalidate(t, rvAdminToken, string(raw))
	if code != http.StatusOK || resp != fmt.Sprintf(`{"invalidated":%d}`, wantN) {
		t.Fatalf("POST /admin/invalidate %s = %d %s, want 200 {\"invalidated\":%d}", raw, code, resp, wantN)
	}
	var worst time.Duration
	for _, tok := range tokens {
		worst = max(worst, e.untilDenied(t, start, tok))
	}
	rvReport(t, name, worst)
}

func (e *rvEnv) adminStatusCodes(t *testing.T, s *rvReplica) {
	token, hash, _ := e.session(t, testenv.SessionSpec{})
	e.warm(t, token, s)
	cases := []struct {
		name, auth, body string
		want             int
		wantBody         string // exact body when set
	}{
		{"TokenHashNotCached", rvAdminToken, `{"tokenHash":"` + testenv.Hash("never-cached") + `"}`, 200, `{"invalidated":0}`},
		{"TokenCached", rvAdminToken, `{"tokenHash":"` + hash + `"}`, 200, `{"invalidated":1}`},
		{"UnknownUser", rvAdminToken, `{"userId":"00000000-0000-0000-0000-000000000000"}`, 200, `{"invalidated":0}`},
		{"WrongToken", "wrong-" + rvAdminToken, `{"token":"x"}`, 401, ""},
		{"NoAuthorization", "", `{"token":"x"}`, 401, ""},
		{"EmptyBody", rvAdminToken, ``, 400, ""},
		{"EmptyObject", rvAdminToken, `{}`, 400, ""},
		{"TwoFields", rvAdminToken, `{"token":"x","userId":"u"}`, 400, ""},
		{"MalformedHash", rvAdminToken, `{"tokenHash":"abc"}`, 400, ""},
		{"UpperCaseHash", rvAdminToken, `{"tokenHash":"` + strings.ToUpper(hash) + `"}`, 400, ""},
		{"UnknownField", rvAdminToken, `{"session":"x"}`, 400, ""},
		{"NotJSON", rvAdminToken, `token=x`, 400, ""},
		{"WrongType", rvAdminToken, `{"token":42}`, 400, ""},
		{"TrailingData", rvAdminToken, `{"token":"x"}{"userId":"u"}`, 400, ""},
		// reference.md's limits: a user id of at most 128 bytes, a body of at most 64 KiB.
		{"UserID128Bytes", rvAdminToken, `{"userId":"` + strings.Repeat("u", 128) + `"}`, 200, `{"invalidated":0}`},
		{"UserID129Bytes", rvAdminToken, `{"userId":"` + strings.Repeat("u", 129) + `"}`, 400, ""},
		{"BodyOver64KiB", rvAdminToken, `{"token":"` + strings.Repeat("t", 64<<10) + `"}`, 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.invalidate(t, tc.auth, tc.body)
			if code != tc.want || (tc.wantBody != "" && body != tc.wantBody) {
				t.Fatalf("POST /admin/invalidate %s = %d %s, want %d %s", tc.body, code, body, tc.want, tc.wantBody)
			}
		})
	}
	t.Run("DisabledWithoutAdminToken", func(t *testing.T) {
		plain := e.start(t, "no-admin", false)
		if code, body := plain.invalidate(t, rvAdminToken, `{"token":"x"}`); code != http.StatusNotFound {
			t.Fatalf("POST /admin/invalidate without ADMIN_TOKEN = %d %s, want 404", code, body)
		}
	})
}

// invalidate posts body to /admin/invalidate and returns the status and the trimmed body.
func (s *rvReplica) invalidate(t *testing.T, auth, body string) (int, string) {
	t.Helper()
	r := s.Invalidate(t, auth, body)
	return r.Status, strings.TrimSpace(r.Body)
}
