package proxy

import (
	"errors"
	"net/http"
	"testing"

	"github.com/authsidecar/authsidecar/authcache"
)

func TestLogoutEviction(t *testing.T) {
	cases := []struct {
		name      string
		path      string
		status    int
		public    bool
		evictErr  error
		wantEvict bool
	}{
		{"After2xx", "/api/auth/logout", http.StatusNoContent, false, nil, true},
		{"TrailingSlash", "/api/auth/logout/", http.StatusOK, false, nil, true},
		{"OnAPublicPath", "/api/auth/logout", http.StatusOK, true, nil, true},
		{"AppRefused", "/api/auth/logout", http.StatusForbidden, false, nil, false},
		{"Redirect", "/api/auth/logout", http.StatusFound, false, nil, false},
		{"OtherPath", "/api/auth/logout2", http.StatusOK, false, nil, false},
		{"EvictionFailedStillAnswers", "/api/auth/logout", http.StatusOK, false, errors.New("redis down"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			auth := &wtAuth{evictErr: tc.evictErr}
			srv := wtProxy(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
			}), auth, func(o *Options) {
				if tc.public {
					o.PublicPaths = []string{"/api/auth"}
				}
			})
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, nil)
			req.Header.Set("Authorization", "Bearer tok")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("client got %d, want the app's %d", resp.StatusCode, tc.status)
			}
			auth.mu.Lock()
			defer auth.mu.Unlock()
			evicted := len(auth.invalidated) == 1 && auth.invalidated[0] == authcache.Target{TokenHash: authcache.HashToken("tok")}
			if evicted != tc.wantEvict || len(auth.invalidated) > 1 {
				t.Fatalf("evictions %v, want evicted=%v", auth.invalidated, tc.wantEvict)
			}
		})
	}
}
