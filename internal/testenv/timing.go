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

// HoldThroughput checks a product's verdict on a timed loop — passed or not, at rate
// operations per second against target — without turning the test into a benchmark. The
// verdict must agree with the rate the product measured; and a failed verdict stands only
// if op, timed the way the product times its loop (best of three runs of n calls) right
// after, stays under twice the target on this machine now. A busy machine may miss the
// target, and the product must then say so; a verdict that contradicts its own figure, or a
// failure where this machine is clearly fast enough, fails the test.
func HoldThroughput(tb testing.TB, what string, passed bool, rate, target float64, n int, op func() error) {
	tb.Helper()
	if passed != (rate > target) {
		tb.Errorf("%s: passed = %v at %.0f ops/s against a target of > %.0f", what, passed, rate, target)
	}
	if passed {
		return
	}
	var best float64
	for range 3 {
		start := time.Now()
		for range n {
			if err := op(); err != nil {
				tb.Fatalf("%s: calibration: %v", what, err)
			}
		}
		best = max(best, float64(n)/time.Since(start).Seconds())
	}
	tb.Logf("%s: failed at %.0f ops/s; the same loop from the test runs at %.0f ops/s now (target > %.0f)", what, rate, best, target)
	if best > 2*target {
		tb.Errorf("%s failed at %.0f ops/s, but this machine runs the same loop at %.0f ops/s now (target > %.0f)", what, rate, best, target)
	}
}
