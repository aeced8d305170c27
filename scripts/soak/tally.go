package main

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// outageMargin is how long after an outage ends its allowances last: the change feed
// reconnects with backoff up to 5 s, then resyncs.
const outageMargin = 10 * time.Second

// tally counts requests and judges every answer against what the token is.
type tally struct {
	start                               time.Time
	requests, decisions, wrong, failing atomic.Int64

	mu       sync.Mutex
	outages  [][2]time.Time // [from, to]; to is zero while the outage lasts
	problems []string       // the first maxProblems wrong decisions and failures
}

const maxProblems = 100

// beginOutage opens an outage window and returns the function that closes it.
func (t *tally) beginOutage() (end func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := len(t.outages)
	t.outages = append(t.outages, [2]time.Time{time.Now()})
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.outages[i][1] = time.Now()
	}
}

// inOutage reports whether at falls in an outage or within outageMargin after one.
func (t *tally) inOutage(at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.outages {
		if !at.Before(o[0]) && (o[1].IsZero() || at.Before(o[1].Add(outageMargin))) {
			return true
		}
	}
	return false
}

// judge checks one answer for a request sent at sent: a valid session must get 200 (or
// 503 in an outage), an invalid token 401 (or 503 in an outage). 401 for a valid session
// and 200 for an invalid token are wrong decisions; anything else unexpected is a failure.
func (t *tally) judge(kind string, valid bool, code int, err error, sent time.Time) {
	if err != nil {
		t.fail(kind, "%v", err)
		return
	}
	t.decisions.Add(1)
	right, wrong := http.StatusUnauthorized, http.StatusOK
	if valid {
		right, wrong = http.StatusOK, http.StatusUnauthorized
	}
	switch {
	case code == right:
	case code == wrong:
		t.wrongDecision(kind, "answered %d", code)
	case code == http.StatusServiceUnavailable && (t.inOutage(sent) || t.inOutage(time.Now())):
	default:
		t.fail(kind, "answered %d", code)
	}
}

// wrongDecision counts and notes a wrong decision.
func (t *tally) wrongDecision(kind, format string, args ...any) {
	t.wrong.Add(1)
	t.note("WRONG", kind, format, args...)
}

// fail counts and notes a failure.
func (t *tally) fail(kind, format string, args ...any) {
	t.failing.Add(1)
	t.note("failure", kind, format, args...)
}

func (t *tally) note(what, kind, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.problems) < maxProblems {
		t.problems = append(t.problems, fmt.Sprintf("t=%6.1fs %s %s: %s", time.Since(t.start).Seconds(), what, kind, fmt.Sprintf(format, args...)))
	}
}

// counts is the tally for the verdict.
func (t *tally) counts() Counts {
	return Counts{Requests: t.requests.Load(), Decisions: t.decisions.Load(), Wrong: t.wrong.Load(), Failures: t.failing.Load()}
}
