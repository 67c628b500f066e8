package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDoublesWithJitterUpToItsCap(t *testing.T) {
	base := 100 * time.Millisecond
	for _, c := range []struct {
		try      int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{6, 3200 * time.Millisecond, 6400 * time.Millisecond},
		{40, 3200 * time.Millisecond, 6400 * time.Millisecond}, // capped at 64 times base
	} {
		for range 50 {
			if d := Backoff(base, c.try); d < c.min || d > c.max {
				t.Fatalf("try %d: %s, want within [%s, %s]", c.try, d, c.min, c.max)
			}
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("waited out: %v", err)
	}
}

func TestGateHoldsUntilItsLatestTime(t *testing.T) {
	var g Gate
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("a new gate is open: %v", err)
	}
	soon := time.Now().Add(50 * time.Millisecond)
	if !g.Close(soon) {
		t.Error("the first Close says the gate was closed")
	}
	if g.Close(soon.Add(-time.Second)) || !g.Until().Equal(soon) {
		t.Errorf("an earlier time moved the gate to %s (want %s), or it said it was open", g.Until(), soon)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a closed gate let a caller through before its time: %v", err)
	}
	if err := g.Wait(context.Background()); err != nil || time.Now().Before(soon) {
		t.Errorf("Wait returned %v at %s, before %s", err, time.Now(), soon)
	}
}
