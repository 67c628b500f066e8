// Package retry has the waits every stage uses between tries.
package retry

import (
	"context"
	"math/rand/v2"
	"sync"
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

// Gate holds callers until a time: a 429's Retry-After for every request of a
// stage, or the end of a daily quota.
type Gate struct {
	mu    sync.Mutex
	until time.Time
}

// Close holds callers until t (a later time than before wins); it tells whether
// the gate was open until now.
func (g *Gate) Close(t time.Time) (wasOpen bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	wasOpen = !g.until.After(time.Now())
	if t.After(g.until) {
		g.until = t
	}
	return wasOpen
}

// Wait returns once the gate is open, or ctx ends.
func (g *Gate) Wait(ctx context.Context) error {
	g.mu.Lock()
	d := time.Until(g.until)
	g.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return Sleep(ctx, d)
}

// Until is when the gate opens (in the past when it is open).
func (g *Gate) Until() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until
}
