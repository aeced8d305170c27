package main

import (
	"context"
	"testing"
	"time"
)

func TestGCPercentHoldsTheHeapGoalAtTheFloorOnly(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},                // no collection yet: leave the default
		{1 << 20, maxGCPercent}, // 1 MiB live: capped (a goal of 9 MiB, not 32)
		{4 << 20, 700},          // 4 MiB live: 32 MiB
		{gcFloor / 2, 100},      // from half the floor on, the default already reaches it
		{gcFloor * 4, 100},      // a big live heap: never below the default
		{gcFloor/2 - 1, 100},    // just under half: 2 × live is the floor, rounded to the default
		{3 << 20, 800},          // 32/3 = 10 → 900, capped
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestOperatorGCSettingsTurnTheTuningOff: with GOGC or GOMEMLIMIT in the environment the
// tuner returns at once and never touches GOGC.
func TestOperatorGCSettingsTurnTheTuningOff(t *testing.T) {
	for _, env := range []map[string]string{{"GOGC": "50"}, {"GOMEMLIMIT": "256MiB"}} {
		done := make(chan struct{})
		go func() { tuneGC(context.Background(), env); close(done) }() // a context that never ends
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: the tuner runs although the operator set the GC", env)
		}
	}
}
