// Package breaker builds the Redis circuit breaker, so that the cache and the operator's
// check exercise exactly the same settings.
package breaker

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// New returns a breaker that opens after failures consecutive failures, refuses calls for
// openFor, then lets one probe through: its success closes the breaker, its failure opens
// it again. redis.Nil is an answer, not a failure. onChange, if set, sees every transition.
func New(failures uint32, openFor time.Duration, onChange func(from, to gobreaker.State)) *gobreaker.CircuitBreaker[any] {
	return gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= failures
		},
		IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, redis.Nil) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if onChange != nil {
				onChange(from, to)
			}
		},
	})
}

// Refused reports whether err is the breaker refusing a call (open, or half-open with its
// probe already under way) rather than a failure of the call itself.
func Refused(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}
