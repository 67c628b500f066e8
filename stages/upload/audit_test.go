package main

import (
	"encoding/json"
	"strings"
	"testing"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// A verified file someone deleted from Drive is found by the audit (by its tag,
// not the job record), archived again from fetch, and named in the report; the
// files still there are left alone.
func TestDriveAuditArchivesAgainWhatWasDeleted(t *testing.T) {
	w := newWorld(t, nil)
	refetches := w.refetcher(t)
	jobs := w.plan(t, board, spec{key: "kept", fileType: "M4A", ext: "M4A", size: mib},
		spec{key: "deleted", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: 2*mib + 5})
	w.startUpload(t)
	w.feedAll(t, jobs)
	w.waitVerified(t, "kept")
	w.drive.DeleteByHand(w.waitVerified(t, "deleted").DriveID)

	out, err := stagetest.Command(run, w.env, "upload", "audit")
	if err != nil || !strings.Contains(out, "looked for 2 verified files in Drive: 1 gone") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	j := w.waitVerified(t, "deleted")
	w.checkCopy(t, "deleted")
	w.checkCopy(t, "kept")
	if !j.Lost || *refetches != 1 {
		t.Errorf("job lost %v, %d requests to fetch; want it marked and asked for once", j.Lost, *refetches)
	}
	reports := w.archiveEvents(t, events.SubjectDriveAudit)
	var a events.DriveAudit
	json.Unmarshal(reports[0].Data, &a)
	if a.Checked != 2 || len(a.Missing) != 1 || !strings.Contains(a.Missing[0], "MP4 of Hallitus") || !a.Complete {
		t.Errorf("report %+v", a)
	}
	if out, err := stagetest.Command(run, w.env, "upload", "audit"); err != nil || !strings.Contains(out, "2 verified files in Drive: 0 gone") {
		t.Errorf("a second audit: %v\n%s", err, out)
	}
}
