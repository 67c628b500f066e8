// Package retry has the waits every stage uses between tries.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential from base with jitter (between half and all of the step),
// capped at 64 times base.
func Backoff(base time.Duration, try int) time.Duration {
	d := base << min(try, 6)
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
