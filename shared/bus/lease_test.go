package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/stagetest"
)

// One process runs several workers under one name: a live lease keeps out every
// other claim, its own name's too, until it is released or runs out.
func TestLeaseKeepsOutEveryOtherClaim(t *testing.T) {
	js := stagetest.JetStream(t, stagetest.NewBroker(t))
	kv := stagetest.Topology(t, js, "1MiB")
	ctx := context.Background()
	const key, ttl = "fetch.f1", 800 * time.Millisecond

	first, _, err := bus.Claim[int](ctx, kv, key, "fetch-a", ttl)
	if err != nil || first == nil {
		t.Fatalf("first claim: %v %v", first, err)
	}
	if err := first.Save(ctx, func(n *int) { *n = 7 }); err != nil {
		t.Fatal(err)
	}
	for _, owner := range []string{"fetch-a", "fetch-b"} {
		l, wait, err := bus.Claim[int](ctx, kv, key, owner, ttl)
		if err != nil || l != nil || wait <= 0 || wait > ttl+time.Second {
			t.Errorf("%s claimed a held record: %v, wait %s, %v", owner, l, wait, err)
		}
	}

	first.Release(ctx)
	second, _, err := bus.Claim[int](ctx, kv, key, "fetch-a", ttl)
	if err != nil || second == nil || second.Get() != 7 {
		t.Fatalf("claim after release: %v %v", second, err)
	}
	if err := first.Save(ctx, func(n *int) { *n = 8 }); !errors.Is(err, bus.ErrLeaseLost) {
		t.Errorf("the released holder wrote on: %v", err)
	}

	time.Sleep(ttl + 100*time.Millisecond) // second never renews
	third, _, err := bus.Claim[int](ctx, kv, key, "fetch-b", ttl)
	if err != nil || third == nil || third.Get() != 7 {
		t.Fatalf("claim after the lease ran out: %v %v", third, err)
	}
	if err := second.Renew(ctx); !errors.Is(err, bus.ErrLeaseLost) {
		t.Errorf("the holder whose lease ran out renewed it: %v", err)
	}
}
