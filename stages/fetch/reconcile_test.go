package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// A prepared state with one gap of each kind: reconciliation reports each, and queues
// the recording no event brought, once.
func TestReconcileFindsEachGapAndQueuesOnce(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_STUCK_AFTER": "1h"})
	ctx := context.Background()
	w.zoom.AddUser(standins.ZoomUser{ID: "u1", Email: "anna@example.org", Status: "active"})
	now := time.Now().UTC()
	add := func(uuid, topic string, ago time.Duration) events.Recording {
		return w.zoom.AddRecording(events.Recording{UUID: uuid, ID: 81234567890, HostID: "u1", HostEmail: "anna@example.org",
			Topic: topic, Type: 2, StartTime: now.Add(-ago), Duration: 30},
			standins.FileSpec{ID: uuid + "-mp4", FileType: "MP4", Extension: "MP4", RecordingType: "active_speaker", Size: 1000})
	}
	add("rc-missing", "No event came", 48*time.Hour)
	add("rc-old", "Outside the window", 60*24*time.Hour)
	still := add("rc-still", "Verified, still in Zoom", 72*time.Hour)
	trashed := add("rc-trash", "Trashed by hand, never archived", 96*time.Hour)
	w.zoom.TrashByHand(trashed.UUID)
	put := func(key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := w.kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	stillKey := events.FileKey(still.UUID, still.RecordingFiles[0])
	put(events.FileJobKey(stillKey), events.FileJob{Key: stillKey, Recording: still.Info(), File: still.RecordingFiles[0], State: events.JobVerified, Updated: now})
	put(events.RecordingJobKey(events.MeetingKey(still.UUID)), events.RecordingJob{Key: events.MeetingKey(still.UUID), Recording: still.Info(),
		Files: []string{stillKey}, State: events.RecArchived, ZoomAction: events.ZoomTrashed})
	put(events.FileJobKey("stuck-1"), events.FileJob{Key: "stuck-1", Recording: events.RecordingInfo{Topic: "Stuck one"}, File: events.RecordingFile{FileType: "MP4"},
		State: events.JobFetching, Updated: now.Add(-2 * time.Hour)})

	reconcile := func(args ...string) events.ReconcileReport {
		t.Helper()
		out := &stagetest.Logs{}
		if err := run(ctx, append([]string{"fetch", "reconcile"}, args...), func(k string) string { return w.env[k] }, out, out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		reports := w.archiveEvents(t, events.SubjectReconcileReport)
		var r events.ReconcileReport
		json.Unmarshal(reports[len(reports)-1].Data, &r)
		return r
	}
	r := reconcile()
	for what, list := range map[string][]string{"missing": r.Missing, "still in zoom": r.StillInZoom, "trash not in drive": r.TrashNotInDrive, "stuck": r.Stuck} {
		if len(list) != 1 {
			t.Errorf("%s: %q, want one", what, list)
		}
	}
	if !strings.Contains(strings.Join(r.Missing, ""), "No event came") || !strings.Contains(strings.Join(r.StillInZoom, ""), "still in Zoom") ||
		!strings.Contains(strings.Join(r.TrashNotInDrive, ""), "Trashed by hand") || !strings.Contains(strings.Join(r.Stuck, ""), "Stuck one") {
		t.Errorf("report %+v", r)
	}
	if r.Enqueued != 1 || len(w.queuedUUIDs(t)) != 1 {
		t.Errorf("enqueued %d", r.Enqueued)
	}
	reconcile()
	if r := reconcile("--report-only"); r.Enqueued != 0 || len(r.Missing) != 1 {
		t.Errorf("report only: %+v", r)
	}
	if q := w.queuedUUIDs(t); len(q) != 1 || q["rc-missing"] != 1 {
		t.Errorf("queued %v, want rc-missing once", q)
	}
}
