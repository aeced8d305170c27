package pgsession

// The change feed's figures that reference.md, design.md and deploying.md quote, pinned: the
// behaviour behind each has its own test (feed_test.go, election_test.go), which runs with
// these values but cannot tell 1 s from 2 s without timing the machine.

import (
	"testing"
	"time"
)

func TestFeedFiguresAreTheDocumentedOnes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"a silent LISTEN connection is probed every second", waitTimeout, time.Second},
		{"reconnect backoff starts at 100 ms", backoffInitial, 100 * time.Millisecond},
		{"reconnect backoff is capped at 5 s", backoffMax, 5 * time.Second},
		{"the resync's slack is one minute", resyncMargin, time.Minute},
		{"an idle replica tries every 1–2 minutes (idleRetry/2 plus up to idleRetry/2)", idleRetry, 2 * time.Minute},
		// A vanished peer is noticed within about two seconds: one keepalive probe after a
		// second idle, and unacknowledged data dropped after 2 s.
		{"the feed connection's TCP settings", deadPeerSQL,
			"SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 1; SET tcp_user_timeout = 2000"},
		{"a starting feed waits up to 2 s for its relay", relayGrace, 2 * time.Second},
		{"a replica first found idle tries again after 2–4 s (idleFirstRetry plus up to as much)", idleFirstRetry, 2 * time.Second},
		{"a feed backend notices its client left within a second", leftSessionCheck, "SET client_connection_check_interval = 1000"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}
