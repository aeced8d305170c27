package check

import (
	"testing"
	"time"
)

// The timed loops' verdict, on rates that do not depend on the machine: a loop passes only
// above its target, keeps the best of up to three runs, and stops at the first that passes.
func TestTimedLoopsAreHeldToTheirTarget(t *testing.T) {
	if detail, err := throughput("GET", 3001, 1, TargetGetOpsPerSec, nil); err != nil || detail != "100 GETs: 3001 ops/s (target > 3000)" {
		t.Errorf("3001 GET/s: %q, %v; want a pass", detail, err)
	}
	if _, err := throughput("SET", 2000, 3, TargetSetOpsPerSec, nil); err == nil || err.Error() != "too slow: 100 SETs: 2000 ops/s (target > 2000), best of 3 runs" {
		t.Errorf("2000 SET/s at a target of > 2000: %v; want too slow", err)
	}

	calls := 0
	rate, runs, err := bench(TargetGetOpsPerSec, func(int) error { calls++; return nil })
	if err != nil || runs != 1 || calls != BenchOps || rate <= TargetGetOpsPerSec {
		t.Errorf("a fast loop: %.0f ops/s in %d runs (%d calls), %v; want one run above target", rate, runs, calls, err)
	}
	rate, runs, err = bench(TargetGetOpsPerSec, func(int) error { time.Sleep(time.Millisecond); return nil })
	if err != nil || runs != 3 || rate > 1000 {
		t.Errorf("a loop of 1 ms calls: %.0f ops/s in %d runs, %v; want three runs under 1,000 ops/s", rate, runs, err)
	}
}
