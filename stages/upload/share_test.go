package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

var shareEnv = map[string]string{"DRIVE_SHARE_HOST": "commenter", "DRIVE_SHARE_DOMAINS": "Theatre.example"}

// folderOf is the Drive folder a file is in.
func (w *world) folderOf(t *testing.T, key string) standins.DriveFile {
	t.Helper()
	parent := w.checkCopy(t, key).Parents[0]
	for _, f := range w.drive.Files() {
		if f.ID == parent {
			return f
		}
	}
	t.Fatalf("%s: no folder %s", key, parent)
	return standins.DriveFile{}
}

func (w *world) share(t *testing.T, rec events.RecordingInfo) events.FolderShare {
	t.Helper()
	s, _, err := bus.Get[events.FolderShare](context.Background(), w.kv, events.ShareKey(events.MeetingKey(rec.UUID)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The host of an allowed domain gets the folder, as commenter, without Drive's
// mail; a host of another domain does not. A crash after Drive took the share but
// before it was recorded repeats the share once, which finds the permission and
// grants nothing twice.
func TestFolderSharedWithItsHostOnce(t *testing.T) {
	w := newWorld(t, shareEnv)
	s := w.startUpload(t)
	jobs := w.plan(t, cherry,
		spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: mib + 5},
		spec{key: "c-chat", fileType: "CHAT", ext: "TXT", recType: "chat_file", size: 300})
	jobs = append(jobs, w.plan(t, board, spec{key: "b-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: 1000})...)
	w.feedAll(t, jobs)
	for _, j := range jobs {
		w.waitVerified(t, j.Key)
	}
	perms := w.folderOf(t, "c-mp4").Permissions
	if len(perms) != 1 || perms[0] != (standins.DrivePermission{ID: perms[0].ID, Type: "user", Role: "commenter", EmailAddress: "director@theatre.example"}) {
		t.Fatalf("the rehearsal's folder is shared as %+v", perms)
	}
	if sh := w.share(t, cherry); !sh.Shared || sh.Attempts != 0 || sh.FolderID != w.folderOf(t, "c-mp4").ID {
		t.Errorf("share record %+v", sh)
	}
	if perms := w.folderOf(t, "b-mp4").Permissions; len(perms) != 0 {
		t.Errorf("a host outside DRIVE_SHARE_DOMAINS got the folder: %+v", perms)
	}
	if metric(t, s, "zoomarchive_upload_shares_total") != 1 {
		t.Error("the share is not counted")
	}

	// As if the worker died after Drive took the share, before it was recorded.
	s.Stop()
	bus.Update(context.Background(), w.kv, events.ShareKey(events.MeetingKey(cherry.UUID)), func(r *events.FolderShare, _ bool) error {
		r.Shared, r.Owner, r.Since = false, "upload-dead", time.Now().Add(-2*time.Minute)
		return nil
	})
	w.startUpload(t)
	waitFor(t, "the share taken up again", func() bool { return w.share(t, cherry).Shared })
	if perms := w.folderOf(t, "c-mp4").Permissions; len(perms) != 1 {
		t.Errorf("shared twice: %+v", perms)
	}
}

// Drive refuses the share three times: the files are verified meanwhile, the
// share goes through on a later try, each refusal counted, no alert.
func TestShareRefusedThreeTimesGoesThroughLater(t *testing.T) {
	w := newWorld(t, stagetest.Merge(shareEnv, map[string]string{"DRIVE_SHARE_NOTIFY": "on"}))
	w.drive.Inject(standins.DriveFault{Kind: "share", Times: 3, Status: 500})
	s := w.startUpload(t)
	jobs := w.plan(t, cherry, spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: mib + 5})
	w.feedAll(t, jobs)
	w.waitVerified(t, "c-mp4")
	waitFor(t, "shared", func() bool { return w.share(t, cherry).Shared })
	sh := w.share(t, cherry)
	perms := w.folderOf(t, "c-mp4").Permissions
	if sh.Attempts != 3 || len(perms) != 1 || !perms[0].Notified {
		t.Errorf("after three refusals: %+v, permissions %+v", sh, perms)
	}
	if metric(t, s, "zoomarchive_upload_share_failures_total") != 3 {
		t.Error("the refusals are not counted")
	}
	if raised, _ := w.alerts(t, events.AlertDriveShare); len(raised) != 0 {
		t.Errorf("alerts %+v", raised)
	}
}

// A share Drive keeps refusing is given up after shareTries with one alert, never
// looped; the recording is archived all the same.
func TestShareKeptRefusedAlertsOnceAndStops(t *testing.T) {
	w := newWorld(t, shareEnv)
	w.drive.Inject(standins.DriveFault{Kind: "share", Times: 100, Status: 403, Reason: "invalidSharingRequest", Message: "Sharing outside the domain is not allowed."})
	s := w.startUpload(t)
	jobs := w.plan(t, cherry, spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: mib + 5})
	w.feedAll(t, jobs)
	w.waitVerified(t, "c-mp4")
	waitFor(t, "given up", func() bool { return w.share(t, cherry).GaveUp })
	var raised []events.Alert
	waitFor(t, "the alert", func() bool { raised, _ = w.alerts(t, events.AlertDriveShare); return len(raised) > 0 })
	time.Sleep(3 * time.Second) // time for more tries, if any were made
	sh := w.share(t, cherry)
	if sh.Attempts != shareTries || sh.Shared || !strings.Contains(sh.LastError, "Sharing outside the domain") {
		t.Errorf("share %+v", sh)
	}
	if raised, _ = w.alerts(t, events.AlertDriveShare); len(raised) != 1 || !strings.Contains(raised[0].Message, "Share the folder by hand") {
		t.Errorf("alerts %+v", raised)
	}
	if metric(t, s, "zoomarchive_upload_share_failures_total") != shareTries {
		t.Error("refusals not counted, or tried beyond shareTries")
	}
}
