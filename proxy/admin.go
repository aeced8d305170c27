package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/authcache"
)

// AdminOptions configures the internal listener's handler.
type AdminOptions struct {
	Auth    Authenticator
	Ready   func(ctx context.Context) error // nil error: Postgres answers
	Metrics http.Handler                    // nil: no /metrics
	Token   string                          // "" disables /admin/*
	Logger  *zap.Logger
}

// maxAdminBody bounds an /admin/invalidate body.
const maxAdminBody = 64 << 10

// NewAdmin returns the internal listener's handler: /healthz, /readyz, /metrics and, with a
// token, POST /admin/invalidate.
func NewAdmin(o AdminOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := o.Ready(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Token != "" {
		mux.Handle("POST /admin/invalidate", &invalidateHandler{o: o, want: sha256.Sum256([]byte(o.Token))})
	}
	return mux
}

type invalidateHandler struct {
	o    AdminOptions
	want [sha256.Size]byte
}

func (h *invalidateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
		return
	}
	var t authcache.Target
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	// One JSON object and nothing after it: a second object would otherwise be ignored.
	if err := dec.Decode(&t); err != nil || !errors.Is(dec.Decode(&struct{}{}), io.EOF) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON {\"token\"}, {\"tokenHash\"} or {\"userId\"}"})
		return
	}
	n, err := h.o.Auth.Invalidate(r.Context(), t, authcache.ReasonAdmin)
	switch {
	case errors.Is(err, authcache.ErrBadTarget):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "give exactly one of token, tokenHash (64 lowercase hex) or userId"})
	case err != nil:
		h.o.Logger.Warn("admin invalidation incomplete; retrying in the background", zap.Error(err))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "redis unavailable; eviction will be retried", "invalidated": n})
	default:
		writeJSON(w, http.StatusOK, map[string]int{"invalidated": n})
	}
}

// authorized compares the bearer token in constant time; hashing both sides first makes the
// comparison's time independent of the token's length too.
func (h *invalidateHandler) authorized(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimLeft(token, " ")))
	return subtle.ConstantTimeCompare(got[:], h.want[:]) == 1
}
