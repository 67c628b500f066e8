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

// The reconciliation carries Zoom's cloud recording storage for the digest: used,
// plan, percent and the change since the day before; without the scope, it asks
// nothing of Zoom and says which scope to add.
func TestReconcileReportsZoomStorage(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	today := time.Now().UTC()
	w.zoom.SetStorage(
		standins.ZoomStorageDay{Date: today.AddDate(0, 0, -1).Format("2006-01-02"), Usage: "400 GB", PlanUsage: "1 TB"},
		standins.ZoomStorageDay{Date: today.Format("2006-01-02"), Usage: "412.5 GB", PlanUsage: "1 TB", FreeUsage: "0 MB"},
		standins.ZoomStorageDay{Date: today.AddDate(0, 0, -30).Format("2006-01-02"), Usage: "100 GB", PlanUsage: "1 TB"})
	reconcile := func() events.ZoomStorage {
		t.Helper()
		out := &stagetest.Logs{}
		if err := run(ctx, []string{"fetch", "reconcile", "--report-only"}, func(k string) string { return w.env[k] }, out, out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		reports := w.archiveEvents(t, events.SubjectReconcileReport)
		var r events.ReconcileReport
		json.Unmarshal(reports[len(reports)-1].Data, &r)
		if r.Storage == nil {
			t.Fatal("no storage in the report")
		}
		return *r.Storage
	}
	s := reconcile()
	if s.Used != "412.5 GB" || s.Plan != "1 TB" || s.Percent < 40.2 || s.Percent > 40.3 || !s.ChangeKnown || s.Change != 25<<29 || s.NotKnown != "" {
		t.Errorf("storage %+v", s)
	}
	w.zoom.SetScopes("cloud_recording:read:list_recording_files:admin cloud_recording:delete:meeting_recording:admin " +
		"cloud_recording:read:list_user_recordings:admin user:read:list_users:admin cloud_recording:update:recover_meeting_recordings:admin user:read:settings:admin")
	calls := w.zoom.CallsTo("GET", "/v2/report/")
	if s := reconcile(); s.NotKnown != "add the scope report:read:cloud_recording:admin to the Zoom app (Marketplace, Scopes)" || s.Used != "" {
		t.Errorf("without the scope: %+v", s)
	}
	if w.zoom.CallsTo("GET", "/v2/report/") != calls {
		t.Error("the report was asked for without its scope")
	}
}
