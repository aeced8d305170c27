package testenv

import (
	"slices"
	"testing"
	"time"
)

// MinSlack is the least Slack returns: what a loaded, race-instrumented two-core machine
// may add to one step that waits on nothing.
const MinSlack = time.Second

// Slack calibrates a time bound on this machine, now: it runs baseline (a step that waits
// on no timeout, e.g. one request to a healthy process) nine times and returns twenty times
// the median, never less than MinSlack. A test bounds a step by the timeouts the product may
// legitimately wait plus Slack: a busy machine slows the baseline with everything else, so
// the bound measures the product (bounded by its timeouts, or not), not the machine.
func Slack(tb testing.TB, baseline func()) time.Duration {
	tb.Helper()
	runs := make([]time.Duration, 9)
	for i := range runs {
		start := time.Now()
		baseline()
		runs[i] = time.Since(start)
	}
	slices.Sort(runs)
	slack := max(20*runs[len(runs)/2], MinSlack)
	tb.Logf("calibrated slack %v (baseline median %v)", slack.Round(time.Millisecond), runs[len(runs)/2].Round(time.Microsecond))
	return slack
}
