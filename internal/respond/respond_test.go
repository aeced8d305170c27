package respond_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/authsidecar/authsidecar/authcache"
	"github.com/authsidecar/authsidecar/internal/respond"
)

func TestStatusMapsEveryOutcome(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{authcache.ErrInvalid, 401},
		{fmt.Errorf("lookup: %w", authcache.ErrInvalid), 401},
		{authcache.ErrBadTarget, 400},
		{respond.BadRequest("bad path"), 400},
		{fmt.Errorf("%w: x", authcache.ErrUnavailable), 503},
		{respond.ErrBadGateway, 502},
		{&respond.Error{Status: 429, Message: "slow down"}, 429},
		{errors.New("anything else"), 503},
	}
	for _, tc := range cases {
		if got, _ := respond.Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestWriteErrorSetsTheHeadersItsStatusNeeds(t *testing.T) {
	cases := []struct {
		err          error
		header, want string
		body         string
	}{
		{authcache.ErrInvalid, "WWW-Authenticate", "Bearer", `{"error":"unauthorized"}` + "\n"},
		{errors.New("postgres down: secret detail"), "Retry-After", "2", `{"error":"session store unavailable"}` + "\n"},
		{respond.ErrBadGateway, "Cache-Control", "no-store", `{"error":"bad gateway"}` + "\n"},
	}
	for _, tc := range cases {
		w := httptest.NewRecorder()
		respond.WriteError(w, tc.err)
		if got := w.Header().Get(tc.header); got != tc.want {
			t.Errorf("%v: %s = %q, want %q", tc.err, tc.header, got, tc.want)
		}
		if w.Body.String() != tc.body || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: body %q (%s), want %q as JSON", tc.err, w.Body.String(), w.Header().Get("Content-Type"), tc.body)
		}
	}
	w := httptest.NewRecorder()
	respond.WriteError(w, &respond.Error{Status: http.StatusServiceUnavailable, Message: "retrying"}, "invalidated", 3)
	if got := w.Body.String(); got != `{"error":"retrying","invalidated":3}`+"\n" {
		t.Errorf("extra fields: body %q", got)
	}
}

func TestClientFaultsAndLimitsHaveTheirOwnStatuses(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		retryAfter string
		body       string
	}{
		{respond.ErrBodyTimeout, http.StatusRequestTimeout, "", `{"error":"request body timeout"}` + "\n"},
		{respond.ErrBadFraming, http.StatusBadRequest, "", `{"error":"malformed request body"}` + "\n"},
		{respond.TooManyRequests(3), http.StatusTooManyRequests, "3", `{"error":"too many invalid tokens"}` + "\n"},
		{respond.TooManyRequests(0), http.StatusTooManyRequests, "1", `{"error":"too many invalid tokens"}` + "\n"},
	}
	for _, tc := range cases {
		w := httptest.NewRecorder()
		respond.WriteError(w, tc.err)
		if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retryAfter || w.Body.String() != tc.body {
			t.Errorf("%v: %d, Retry-After %q, body %q; want %d, %q, %q", tc.err, w.Code,
				w.Header().Get("Retry-After"), w.Body.String(), tc.status, tc.retryAfter, tc.body)
		}
	}
}
