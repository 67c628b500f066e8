package bus_test

import (
	"context"
	"encoding/json"
	"testing"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

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
