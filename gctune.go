package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcFloor is the heap the collector lets grow before it collects, however small the live heap.
// The sidecar's live heap is a few MiB while it allocates ~5 KiB per request, so Go's default
// (collect at twice the live heap, at least 4 MiB) runs dozens of collections a second under
// load, each taking one core of two for its mark phase. Holding the goal at 32 MiB cuts them
// about fivefold for a bounded cost: about gcFloor of extra heap, and none once the live
// heap passes gcFloor/2 (a large in-process cache), where the default already applies.
// GOGC is recomputed once a second, so a sudden jump of the live heap could meet a high
// GOGC; maxGCPercent caps that at a goal of 9 × live for at most a second.
const gcFloor = 32 << 20

const maxGCPercent = 800

// tuneGC keeps the heap goal at max(2 × live heap, gcFloor) by adjusting GOGC once a second,
// until ctx ends. An operator's own GOGC or GOMEMLIMIT in env (the process environment, which
// the runtime reads them from) turns it off.
func tuneGC(ctx context.Context, env map[string]string) {
	if env["GOGC"] != "" || env["GOMEMLIMIT"] != "" {
		return
	}
	defer debug.SetGCPercent(100)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	current := 100
	for {
		metrics.Read(sample)
		if want := gcPercent(sample[0].Value.Uint64()); want != current {
			debug.SetGCPercent(want)
			current = want
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// gcPercent is the GOGC that puts the next collection at gcFloor for a live heap of live
// bytes, never below the default 100. It moves in steps of 50 so that small changes of the
// live heap do not reset it every second.
func gcPercent(live uint64) int {
	if live == 0 || live >= gcFloor/2 {
		return 100
	}
	p := int(gcFloor/live)*100 - 100
	return min(maxGCPercent, max(100, p/50*50))
}
