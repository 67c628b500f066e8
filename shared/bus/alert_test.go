package bus_test

import (
	"context"
	"testing"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// An alert is announced once however often its condition is seen, resolved once,
// and a clear with nothing open sends nothing; a new episode is announced again.
func TestAlertOnceAndResolvedOnce(t *testing.T) {
	url := stagetest.NewBroker(t)
	js := stagetest.JetStream(t, url)
	kv := stagetest.Topology(t, js, "8MiB")
	ctx := context.Background()
	a := events.Alert{Kind: events.AlertDriveFull, Message: "full"}
	messages := func() (int, int) {
		raised, resolved := stagetest.Alerts(t, url, a.Kind)
		return len(raised), len(resolved)
	}
	for range 3 {
		if err := bus.RaiseAlert(ctx, js, kv, a); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := bus.ClearAlert(ctx, js, kv, a.Kind, "room again"); err != nil {
			t.Fatal(err)
		}
	}
	if raised, resolved := messages(); raised != 1 || resolved != 1 {
		t.Fatalf("%d raised, %d resolved; want 1 and 1", raised, resolved)
	}
	bus.RaiseAlert(ctx, js, kv, a)
	if raised, _ := messages(); raised != 2 {
		t.Errorf("a second episode: %d raised, want 2", raised)
	}
}
