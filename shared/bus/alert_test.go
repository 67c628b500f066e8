package bus_test

import (
	"context"
	"encoding/json"
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

// A failure is announced while the job says it is unsaid, under the recorded id,
// and then noted said; a job with nothing unsaid announces nothing.
func TestFailureAnnouncedOnceWhileUnsaid(t *testing.T) {
	url := stagetest.NewBroker(t)
	js := stagetest.JetStream(t, url)
	kv := stagetest.Topology(t, js, "8MiB")
	ctx := context.Background()
	job, err := bus.Update(ctx, kv, events.FileJobKey("k1"), func(j *events.FileJob, _ bool) error {
		*j = events.FileJob{Key: "k1", State: events.JobFailed, Attempts: 2, Mismatches: 3, LastError: "copies differ",
			Unannounced: events.UploadFailedID("k1", 4)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := bus.AnnounceFailure(ctx, js, kv, job); err != nil { // the second as a stage holding an old copy
			t.Fatal(err)
		}
	}
	if err := bus.AnnounceFailure(ctx, js, kv, events.FileJob{Key: "k2", State: events.JobFailed}); err != nil {
		t.Fatal(err)
	}
	var failed []events.FileFailed
	for _, m := range stagetest.StreamMsgs(t, url, events.StreamArchive) {
		var f events.FileFailed
		json.Unmarshal(m.Data, &f)
		if m.Header.Get(events.HeaderNatsMsgID) != events.UploadFailedID("k1", 4) {
			t.Errorf("announced as %q", m.Header.Get(events.HeaderNatsMsgID))
		}
		failed = append(failed, f)
	}
	if len(failed) != 1 || failed[0].Attempts != 3 || failed[0].Reason != "copies differ" {
		t.Fatalf("announced %+v; want one, 3 tries, the reason", failed)
	}
	if got, _, _ := bus.Get[events.FileJob](ctx, kv, events.FileJobKey("k1")); got.Unannounced != "" {
		t.Errorf("still unsaid: %q", got.Unannounced)
	}
}
