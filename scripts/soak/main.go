// Command soak is the driver of scripts/soak.sh (issue 13, "An hour without drift"): it
// runs the sidecar binary against a private redis-server and, through a TCP forwarder it
// can cut, the soak database; sends a fixed mix of traffic for -duration while checking
// every answer; revokes a session every second; restarts Redis at the midpoint and cuts
// Postgres for 10 s at a quarter; samples the sidecar every 10 s; and judges the run.
//
//	soak -sidecar ./authsidecar -db postgres://.../authsidecar_soak_1 -out /tmp/soak -duration 10m
//
// It writes samples.csv, summary.txt and events.env (the outages, for the plot) to -out
// and exits 1 when the verdict fails. Every process it started is stopped by its PID.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// tolerance is the verdict's, stated in docs/performance.md.
var tolerance = Tolerance{MemGrowth: 0.10, Goroutines: 10, FDs: 5, Conns: 2}

const (
	sampleEvery  = 10 * time.Second
	pgCut        = 10 * time.Second
	redisDown    = 2 * time.Second
	closeLead    = 20 * time.Second // long-lived requests close this long before the end
	minDuration  = 2 * time.Minute
	sidecarStart = "http://%s/api/health/redis"
)

func main() {
	sidecar := flag.String("sidecar", "", "the authsidecar binary")
	db := flag.String("db", "", "URL of the soak database (schema.sql and notify.sql applied)")
	out := flag.String("out", "", "directory for samples.csv, summary.txt, events.env and the logs")
	duration := flag.Duration("duration", 10*time.Minute, "how long the traffic runs")
	flag.Parse()
	if *sidecar == "" || *db == "" || *out == "" || *duration < minDuration {
		fmt.Fprintf(os.Stderr, "soak: -sidecar, -db and -out are required; -duration at least %s\n", minDuration)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	pass, err := run(ctx, *sidecar, *db, *out, *duration)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !pass {
		os.Exit(1)
	}
}
