// Package admin is the internal listener (ADMIN_ADDR): liveness and readiness probes,
// Prometheus metrics, the JWKS of the identity assertions and, with a token, the eviction
// API. It is meant for the Pod's
// network, never the public one.
package admin

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
	"github.com/authsidecar/authsidecar/internal/respond"
)

// Invalidator evicts sessions; *authcache.Cache is one.
type Invalidator interface {
	Invalidate(ctx context.Context, t authcache.Target, reason string) (int, error)
}

// Options configures the internal listener's handler.
type Options struct {
	Auth    Invalidator
	Ready   func(ctx context.Context) error // nil error: Postgres answers
	Metrics http.Handler                    // nil: no /metrics
	Token   string                          // "" disables /admin/*
	JWKS    http.Handler                    // nil: no /.well-known/jwks.json
	Logger  *zap.Logger
}

// maxBody bounds an /admin/invalidate body.
const maxBody = 64 << 10

// readyTimeout bounds the readiness probe's Postgres ping.
const readyTimeout = 2 * time.Second

var (
	errUnauthorized = &respond.Error{Status: http.StatusUnauthorized, Message: "unauthorized"}
	errBadBody      = respond.BadRequest(`body must be JSON {"token"}, {"tokenHash"} or {"userId"}`)
)

// New returns the internal listener's handler: /healthz, /readyz, /metrics, the JWKS at
// /.well-known/jwks.json and, with a token, POST /admin/invalidate.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		respond.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := o.Ready(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			respond.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
		respond.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.JWKS != nil {
		// The keys that verify X-Auth-Assertion, for an app in the same Pod.
		mux.Handle("GET /.well-known/jwks.json", o.JWKS)
	}
	if o.Token != "" {
		mux.Handle("POST /admin/invalidate", &invalidateHandler{o: o, want: sha256.Sum256([]byte(o.Token))})
	}
	return mux
}

type invalidateHandler struct {
	o    Options
	want [sha256.Size]byte
}

func (h *invalidateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r.Header.Get("Authorization")) {
		respond.WriteError(w, errUnauthorized)
		return
	}
	t, err := decodeTarget(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		respond.WriteError(w, errBadBody)
		return
	}
	n, err := h.o.Auth.Invalidate(r.Context(), t, authcache.ReasonAdmin)
	switch {
	case errors.Is(err, authcache.ErrBadTarget):
		respond.WriteError(w, err)
	case err != nil:
		// Evicted here; Redis is retried in the background. Say so, with what was done.
		h.o.Logger.Warn("admin invalidation incomplete; retrying in the background", zap.Error(err))
		respond.WriteError(w, errEvictionPending, "invalidated", n)
	default:
		respond.WriteJSON(w, http.StatusOK, map[string]int{"invalidated": n})
	}
}

var errEvictionPending = &respond.Error{Status: http.StatusServiceUnavailable, Message: "redis unavailable; eviction will be retried"}

// decodeTarget reads exactly one JSON object with known fields, and nothing after it: a
// second object would otherwise be ignored.
func decodeTarget(body io.Reader) (authcache.Target, error) {
	var t authcache.Target
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, err
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return t, errors.New("trailing data after the JSON object")
	}
	return t, nil
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
