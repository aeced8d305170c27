// Package respond writes the answers the sidecar gives itself, as JSON, on both listeners.
// Status is the one place where an error becomes an HTTP status; no internal error text
// ever reaches a client.
package respond

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/authsidecar/authsidecar/authcache"
)

// ErrBadGateway means the app could not be reached.
var ErrBadGateway = errors.New("respond: upstream unreachable")

// RetryAfter is what a 503 asks clients to wait, in seconds.
const RetryAfter = 2

// Error is an answer decided by the sidecar: its status and a message safe to show.
type Error struct {
	Status  int
	Message string
	// RetryAfter, in whole seconds, is sent as Retry-After when positive; a 503 without it
	// asks for the default RetryAfter.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

// BadRequest is a 400 with msg.
func BadRequest(msg string) error { return &Error{Status: http.StatusBadRequest, Message: msg} }

// The client's own faults while sending a request the sidecar forwards: a body that stalled
// for the idle timeout (408), and a body whose framing is broken — malformed chunked
// encoding, or shorter than its Content-Length (400). Neither is the app's fault, so neither
// is a 502.
var (
	ErrBodyTimeout = &Error{Status: http.StatusRequestTimeout, Message: "request body timeout"}
	ErrBadFraming  = &Error{Status: http.StatusBadRequest, Message: "malformed request body"}
)

// TooManyRequests is a 429 for a client that presented too many invalid tokens; it may
// try again after retryAfter seconds (at least 1).
func TooManyRequests(retryAfter int) error {
	return &Error{Status: http.StatusTooManyRequests, Message: "too many invalid tokens", RetryAfter: max(retryAfter, 1)}
}

// Status maps err to the status and message the client sees: an *Error as it says, an
// invalid session 401, a bad eviction target 400, an unreachable app 502, and anything else
// (the session store could not decide) 503 — never a 401, so no outage logs anyone out.
func Status(err error) (int, string) {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Status, e.Message
	case errors.Is(err, authcache.ErrInvalid):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, authcache.ErrBadTarget):
		return http.StatusBadRequest, "give exactly one of token, tokenHash (64 lowercase hex) or userId"
	case errors.Is(err, ErrBadGateway):
		return http.StatusBadGateway, "bad gateway"
	default:
		return http.StatusServiceUnavailable, "session store unavailable"
	}
}

// WriteError answers err as {"error": message} plus fields, with the headers its status
// needs: WWW-Authenticate on 401, Retry-After on 503 and on an *Error that asks for it (429).
func WriteError(w http.ResponseWriter, err error, fields ...any) {
	code, msg := Status(err)
	var e *Error
	switch {
	case errors.As(err, &e) && e.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	case code == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", "Bearer")
	case code == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	w.Header().Set("Cache-Control", "no-store")
	body := map[string]any{"error": msg}
	for i := 0; i+1 < len(fields); i += 2 {
		if k, ok := fields[i].(string); ok {
			body[k] = fields[i+1]
		}
	}
	WriteJSON(w, code, body)
}

// WriteJSON answers v as JSON with code, Content-Length set and a trailing newline.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
