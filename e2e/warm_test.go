package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// TestWarmingSurvivesTheStartupResync: the first connect of the change feed evicts recently
// expired sessions while warming runs; the valid sessions must still be warmed (each fill is
// guarded per token, so the resync's evictions stop only their own).
func TestWarmingSurvivesTheStartupResync(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	var hashes []string
	for range 20 {
		_, hash, _ := st.session(t, testenv.SessionSpec{})
		hashes = append(hashes, hash)
	}
	st.session(t, testenv.SessionSpec{ExpiresIn: -3 * time.Minute}) // found by the resync
	up := NewUpstream(t, nil)
	sc := StartSidecar(t, st.env(up.URL, map[string]string{"CACHE_WARM_ON_START": "true"}))
	eventually(t, 5*time.Second, "every active session warmed into Redis", func() bool {
		keys := make([]string, len(hashes))
		for i, h := range hashes {
			keys[i] = st.sessionKey(h)
		}
		n, err := st.rdb.Exists(context.Background(), keys...).Result()
		return err == nil && n == int64(len(hashes))
	})
	st.assertNoRawTokens(t, sc)
}
