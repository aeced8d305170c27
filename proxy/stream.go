package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/authcache"
)

// watch gives a forwarded request a context that is cancelled once its session stops being
// valid, so a WebSocket or a stream opened under a session does not outlive its revocation
// or expiry by more than Revalidate (plus the eviction's own delay). Cancelling the outbound
// request makes ReverseProxy close both the upstream and the client connection. A request
// that ends within Revalidate costs one timer and never revalidates. A store that cannot
// answer keeps the connection open: an outage must not log anyone out.
func (h *Handler) watch(r *http.Request, token string) (*http.Request, func()) {
	ctx, cancel := context.WithCancel(r.Context())
	w := &watcher{h: h, token: token, cancel: cancel}
	w.mu.Lock()
	w.timer = time.AfterFunc(h.opts.Revalidate, w.check)
	w.mu.Unlock()
	return r.WithContext(ctx), w.stop
}

type watcher struct {
	h      *Handler
	token  string
	cancel context.CancelFunc

	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

func (w *watcher) check() {
	ctx, cancel := context.WithTimeout(context.Background(), w.h.opts.Revalidate)
	_, err := w.h.opts.Auth.Validate(ctx, w.token)
	cancel()
	if errors.Is(err, authcache.ErrInvalid) {
		w.h.log.Info("closing a long-lived request: its session is no longer valid")
		w.stop()
		return
	}
	if err != nil {
		w.h.log.Debug("revalidation undecided; keeping the connection", zap.Error(err))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.timer.Reset(w.h.opts.Revalidate)
	}
}

func (w *watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.timer.Stop()
	w.cancel()
}
