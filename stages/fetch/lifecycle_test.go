package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// Zoom's whole recording lifecycle: files it makes after recording.completed, and
// files that come after the recording was archived.

func transcriptSpec(unlisted bool) standins.FileSpec {
	f := boardMeetingFiles()[3]
	f.ID, f.Unlisted = "cccc3333-0000-4000-8000-000000000004", unlisted
	return f
}

// trashedAfter fails unless the recording went to the trash exactly once, after
// the file key was verified.
func (w *world) trashedAfter(t *testing.T, key string) {
	t.Helper()
	waitFor(t, "trash", func() bool { return w.zoom.CallsTo("DELETE", "/v2/meetings/") == 1 })
	verifiedAt := w.job(t, key).Updated
	for _, c := range w.zoom.Calls() {
		if c.Method == "DELETE" && c.At.Before(verifiedAt) {
			t.Errorf("trashed at %s, before the transcript was verified at %s", c.At.Format(time.StampMilli), verifiedAt.Format(time.StampMilli))
		}
	}
}

func archivedAnnouncements(t *testing.T, w *world) []events.RecordingArchived {
	var out []events.RecordingArchived
	for _, m := range w.archiveEvents(t, "archive.recording.archived.") {
		var a events.RecordingArchived
		json.Unmarshal(m.Data, &a)
		out = append(out, a)
	}
	return out
}

// The host transcribes to the cloud: Zoom makes the transcript after the
// recording, first listing it as processing, or not listing it at all until it is
// made. Either way the recording stays in Zoom until the transcript is in Drive.
func TestTranscriptMadeLaterIsArchivedBeforeTheTrash(t *testing.T) {
	for name, unlisted := range map[string]bool{"listed as processing": false, "not listed until made": true} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, nil)
			w.zoom.SetTranscription("host1", true)
			w.startFetch(t)
			up := w.startUploader(t)
			rec := w.meeting("uuid-transcribed==", "Rehearsal, act 1", boardMeetingFiles()[:3]...)
			made := time.Now().Add(3 * time.Second)
			tr := w.zoom.AddLateFile(rec.UUID, transcriptSpec(unlisted), time.Until(made))
			w.send(t, events.EventRecordingCompleted, rec)
			for _, key := range keys(rec) {
				w.waitState(t, key, events.JobVerified)
			}
			time.Sleep(time.Until(made))
			if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 0 {
				t.Fatalf("trashed while Zoom was still making the transcript (%d calls)", n)
			}

			w.send(t, events.EventTranscriptCompleted, tr)
			trKey := keys(tr)[0]
			up.whole(t, trKey, contentOf(w, tr, trKey))
			w.waitState(t, trKey, events.JobVerified)
			w.trashedAfter(t, trKey)
			waitFor(t, "archived event", func() bool { return len(archivedAnnouncements(t, w)) == 1 })
			if a := archivedAnnouncements(t, w)[0]; len(a.Files) != 4 || a.NoTranscript {
				t.Errorf("archived %d files (no transcript: %v), want 4 with the transcript", len(a.Files), a.NoTranscript)
			}
		})
	}
}

// Without cloud transcription nothing is waited for: the recording is trashed as
// soon as its files are verified.
func TestWithoutTranscriptionTrashedAtOnce(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	w.startUploader(t)
	rec := w.meeting("uuid-plain==", "Rehearsal, act 2", boardMeetingFiles()[:3]...)
	w.send(t, events.EventRecordingCompleted, rec)
	waitFor(t, "trash", func() bool { return w.zoom.CallsTo("DELETE", "/v2/meetings/") == 1 })
	if n := w.zoom.CallsTo("GET", "/v2/users/host1/settings"); n != 1 {
		t.Errorf("the host's settings read %d times, want once", n)
	}
}

// A transcript that never comes holds the recording for ZOOM_TRANSCRIPT_WAIT, no
// longer; the announcement says it went without one.
func TestTranscriptThatNeverComesStopsTheWait(t *testing.T) {
	w := newWorld(t, map[string]string{"ZOOM_TRANSCRIPT_WAIT": "2s"})
	w.zoom.SetTranscription("host1", true)
	w.startFetch(t)
	w.startUploader(t)
	rec := w.meeting("uuid-never==", "Rehearsal, act 3", boardMeetingFiles()[:3]...)
	w.send(t, events.EventRecordingCompleted, rec)
	for _, key := range keys(rec) {
		w.waitState(t, key, events.JobVerified)
	}
	verified := time.Now()
	waitFor(t, "trash", func() bool { return w.zoom.CallsTo("DELETE", "/v2/meetings/") == 1 })
	if waited := time.Since(verified); waited < 1500*time.Millisecond {
		t.Errorf("trashed %s after the last file was verified, want the 2s wait", waited)
	}
	waitFor(t, "archived event", func() bool { return len(archivedAnnouncements(t, w)) == 1 })
	if a := archivedAnnouncements(t, w)[0]; !a.NoTranscript || len(a.Files) != 3 {
		t.Errorf("announcement %+v, want 3 files and no transcript said", a)
	}
}

// A transcript event for a recording already trashed: the file is fetched from the
// trash (the recording restored for it, then trashed again) and announced as late.
func TestLateFileFetchedFromTheTrash(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-late==", "Rehearsal, act 4", boardMeetingFiles()[:3]...)
	w.send(t, events.EventRecordingCompleted, rec)
	waitFor(t, "first archive", func() bool { return len(archivedAnnouncements(t, w)) == 1 })
	if trashed, _ := w.zoom.Trashed(rec.UUID); !trashed {
		t.Fatal("not trashed")
	}

	tr := w.zoom.AddLateFile(rec.UUID, transcriptSpec(false), 0)
	w.send(t, events.EventTranscriptCompleted, tr)
	trKey := keys(tr)[0]
	up.whole(t, trKey, contentOf(w, tr, trKey))
	waitFor(t, "second announcement", func() bool { return len(archivedAnnouncements(t, w)) == 2 })
	a := archivedAnnouncements(t, w)[1]
	late := 0
	for _, f := range a.Files {
		if f.Late {
			late++
			if f.Key != trKey {
				t.Errorf("%s marked late, want only %s", f.Key, trKey)
			}
		}
	}
	if late != 1 || len(a.Files) != 4 || a.ZoomAction != events.ZoomTrashed {
		t.Errorf("second announcement: %d files, %d late, zoom %s; want 4, 1, trashed", len(a.Files), late, a.ZoomAction)
	}
	if trashed, _ := w.zoom.Trashed(rec.UUID); !trashed {
		t.Error("left out of the trash after the late file")
	}
	if n, r := w.zoom.CallsTo("DELETE", "/v2/meetings/"), w.zoom.CallsTo("PUT", "/v2/meetings/"); n != 2 || r != 1 {
		t.Errorf("%d trash calls and %d restores, want 2 and 1", n, r)
	}
}

// Deleting from Zoom with only some file types archived would destroy the rest.
func TestDeleteWithFileTypesNeedsItsOptIn(t *testing.T) {
	w := newWorld(t, map[string]string{"ZOOM_AFTER_ARCHIVE": "delete", "ZOOM_TRASH_AFTER": "168h", "ARCHIVE_FILE_TYPES": "mp4,m4a"})
	err := run(context.Background(), []string{"fetch"}, func(k string) string { return w.env[k] }, &stagetest.Logs{}, &stagetest.Logs{})
	if err == nil || !strings.Contains(err.Error(), "ZOOM_DELETE_UNARCHIVED=yes") {
		t.Fatalf("delete with file types: %v, want a refusal naming the opt-in", err)
	}
	w.env["ZOOM_DELETE_UNARCHIVED"] = "yes"
	w.startFetch(t)
}

// ZOOM_AFTER_ARCHIVE=delete, which no one can undo, needs a week's hold first or
// an opt-in whose name says what it costs.
func TestDeleteNeedsAHoldOrItsOptIn(t *testing.T) {
	for _, hold := range []string{"0", "167h"} {
		w := newWorld(t, map[string]string{"ZOOM_AFTER_ARCHIVE": "delete", "ZOOM_TRASH_AFTER": hold})
		err := run(context.Background(), []string{"fetch"}, func(k string) string { return w.env[k] }, &stagetest.Logs{}, &stagetest.Logs{})
		if err == nil || !strings.Contains(err.Error(), "ZOOM_TRASH_AFTER to at least 168h") || !strings.Contains(err.Error(), "ZOOM_DELETE_WITHOUT_HOLD=yes") {
			t.Fatalf("delete with a hold of %s: %v, want a refusal naming the hold and the opt-in", hold, err)
		}
	}
	w := newWorld(t, map[string]string{"ZOOM_AFTER_ARCHIVE": "delete", "ZOOM_DELETE_WITHOUT_HOLD": "yes"})
	w.startFetch(t)
}

// A number Zoom's API lists that does not parse fails that file with the field
// named, as a failure mail says; the other files are archived and the recording
// stays.
func TestUnparsableFileSizeFailsThatFileNamed(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	w.startUploader(t)
	rec := w.meeting("uuid-float==", "Rehearsal, act 5", boardMeetingFiles()[2:5]...)
	w.zoom.Garble(rec.UUID, rec.RecordingFiles[0].ID, "file_size", "5.24288e5")
	w.send(t, events.EventRecordingCompleted, rec)
	ks := keys(rec)
	j := w.waitState(t, ks[0], events.JobFailed)
	if !strings.Contains(j.LastError, "file_size 5.24288e5") {
		t.Errorf("failed with %q, want the field and its value", j.LastError)
	}
	w.waitState(t, ks[1], events.JobVerified)
	w.waitState(t, ks[2], events.JobVerified)
	waitFor(t, "failure announced", func() bool { return len(w.archiveEvents(t, "archive.file.failed.")) == 1 })
	var f events.FileFailed
	json.Unmarshal(w.archiveEvents(t, "archive.file.failed.")[0].Data, &f)
	if !strings.Contains(f.Reason, "file_size") || f.Replay == "" {
		t.Errorf("failure %+v", f)
	}
	time.Sleep(300 * time.Millisecond)
	if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 0 || w.zoom.BytesServed() != int64(boardMeetingFiles()[3].Size+boardMeetingFiles()[4].Size) {
		t.Errorf("%d trash calls, %d bytes served: the broken file must be neither fetched nor let the recording go", n, w.zoom.BytesServed())
	}
}

// Zoom refuses the app at start (a wrong secret): fetch stops with what to fix,
// and the admins hear of it.
func TestZoomRefusingTheAppAtStartStopsFetch(t *testing.T) {
	w := newWorld(t, map[string]string{"ZOOM_CLIENT_SECRET": "not-the-secret"})
	out := &stagetest.Logs{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a fetch that does not stop is stopped here
	defer cancel()
	err := run(ctx, []string{"fetch"}, func(k string) string { return w.env[k] }, out, out)
	if err == nil || !strings.Contains(err.Error(), "zoom refuses the app") || !strings.Contains(err.Error(), "ZOOM_CLIENT_SECRET") {
		t.Fatalf("start with a wrong secret: %v, want a stop naming what to check", err)
	}
	if strings.Contains(out.String(), "not-the-secret") || strings.Contains(err.Error(), "not-the-secret") {
		t.Error("the secret is in the log or the error")
	}
	if n := len(w.archiveEvents(t, events.AlertSubject(events.AlertZoomRefused))); n != 1 {
		t.Errorf("%d alerts, want 1", n)
	}
}

// The app's secret changes under a running fetch: one alert, the files wait with
// their attempts untouched, and once the right secret is back they go on and the
// alert is resolved.
func TestZoomRefusingTheAppAtRunTimeAlertsOnceAndWaits(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_MAX_ATTEMPTS": "2"})
	w.startFetch(t)
	w.startUploader(t)
	w.zoom.SetClientSecret("regenerated")
	w.zoom.ExpireTokens()
	rec := w.meeting("uuid-refused==", "Rehearsal, act 6", boardMeetingFiles()[2:4]...)
	w.send(t, events.EventRecordingCompleted, rec)
	alerts := func() (int, int) {
		raised, resolved := stagetest.Alerts(t, w.natsURL, events.AlertZoomRefused)
		return len(raised), len(resolved)
	}
	waitFor(t, "the alert", func() bool { raised, _ := alerts(); return raised == 1 })
	time.Sleep(time.Second) // many more refusals
	if raised, _ := alerts(); raised != 1 {
		t.Errorf("%d alerts, want 1", raised)
	}
	for _, key := range keys(rec) {
		if j := w.job(t, key); j.Attempts != 0 || j.State == events.JobFailed {
			t.Errorf("%s: %d attempts, %s: a refused app must not use up the file's attempts", key, j.Attempts, j.State)
		}
	}

	w.zoom.SetClientSecret(w.zoom.ClientSecret)
	for _, key := range keys(rec) {
		w.waitState(t, key, events.JobVerified)
	}
	waitFor(t, "resolved", func() bool { _, resolved := alerts(); return resolved == 1 })
}

// Webhooks stopped arriving: the reconciliation finds recordings of the last two
// days that no event announced, and says what to look at; once it finds none,
// the alert is over.
func TestWebhooksNotArrivingAlertsAndResolves(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_MISSING_ALERT": "3"})
	w.zoom.AddUser(standins.ZoomUser{ID: "host1", Email: "board@example.org", Status: "active"})
	for i, uuid := range []string{"uuid-silent-1==", "uuid-silent-2==", "uuid-silent-3=="} {
		w.zoom.AddRecording(events.Recording{UUID: uuid, ID: 81234567890, HostID: "host1", HostEmail: "board@example.org",
			Topic: "Unannounced", Type: 2, StartTime: time.Now().UTC().Add(-time.Duration(i+3) * time.Hour), Duration: 30},
			standins.FileSpec{ID: uuid[:14] + "-mp4", FileType: "MP4", Extension: "MP4", Size: 1000})
	}
	reconcile := func() {
		t.Helper()
		out := &stagetest.Logs{}
		if err := run(context.Background(), []string{"fetch", "reconcile"}, func(k string) string { return w.env[k] }, out, out); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	reconcile()
	msgs := w.archiveEvents(t, events.AlertSubject(events.AlertWebhooksMissing))
	if len(msgs) != 1 {
		t.Fatalf("%d alerts, want 1", len(msgs))
	}
	var a events.Alert
	json.Unmarshal(msgs[0].Data, &a)
	if !strings.Contains(a.Message, "3 recordings") || !strings.Contains(a.Message, "Event Subscription") || !strings.Contains(a.Message, "deploy/check") {
		t.Errorf("alert %q, want the count, the likely causes and what to run", a.Message)
	}
	// fetch plans what the reconciliation queued; the next one finds nothing missing.
	w.startFetch(t)
	w.startUploader(t)
	waitFor(t, "planned", func() bool { return len(w.archiveEvents(t, "archive.recording.archived.")) == 3 })
	reconcile()
	msgs = w.archiveEvents(t, events.AlertSubject(events.AlertWebhooksMissing))
	if json.Unmarshal(msgs[len(msgs)-1].Data, &a); len(msgs) != 2 || !a.Resolved {
		t.Errorf("%d alert messages, the last resolved %v; want the alert then its end", len(msgs), a.Resolved)
	}
}

// upload's Drive audit found a verified file's copy deleted (it marks the job lost
// and asks for it again): fetch takes the recording out of Zoom's trash, fetches
// the file and trashes the recording again; when Zoom deleted it for good, the file
// fails at once as lost, named in the failure mail.
func TestLostFromDriveFetchedFromTheTrashOrFailedNamed(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	w.startUploader(t)
	ctx := context.Background()
	lose := func(key string) {
		t.Helper()
		_, err := bus.Update(ctx, w.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
			j.State, j.Lost, j.LastError = events.JobQueued, true, "the Drive copy was deleted; archived again"
			return nil
		})
		msg := nats.NewMsg(events.FetchJobSubject(key))
		msg.Header.Set(events.HeaderRestart, "true")
		if _, perr := w.js.PublishMsg(ctx, msg); err != nil || perr != nil {
			t.Fatal(err, perr)
		}
	}
	rec := w.meeting("uuid-lost==", "Rehearsal, act 7", boardMeetingFiles()[2:4]...)
	gone := w.meeting("uuid-gone==", "Rehearsal, act 8", boardMeetingFiles()[4:5]...)
	w.send(t, events.EventRecordingCompleted, rec)
	w.send(t, events.EventRecordingCompleted, gone)
	waitFor(t, "both archived", func() bool { return len(archivedAnnouncements(t, w)) == 2 })

	lose(keys(rec)[0])
	waitFor(t, "archived again", func() bool { return len(archivedAnnouncements(t, w)) == 3 })
	if j := w.job(t, keys(rec)[0]); j.State != events.JobVerified || j.Generation != 1 {
		t.Errorf("the lost file: %s in generation %d, want verified in a new one", j.State, j.Generation)
	}
	if trashed, _ := w.zoom.Trashed(rec.UUID); !trashed || w.zoom.CallsTo("PUT", "/v2/meetings/") != 1 {
		t.Errorf("trashed %v after %d restores, want back in the trash after one", trashed, w.zoom.CallsTo("PUT", "/v2/meetings/"))
	}

	w.zoom.DeleteByHand(gone.UUID)
	lost := keys(gone)[0]
	lose(lost)
	j := w.waitState(t, lost, events.JobFailed)
	if !strings.Contains(j.LastError, "lost") || j.Attempts != 1 {
		t.Errorf("failed after %d attempts with %q, want at once, said lost", j.Attempts, j.LastError)
	}
	waitFor(t, "failure mail's event", func() bool { return len(w.archiveEvents(t, "archive.file.failed.")) == 1 })
}

// A recording shorter than ARCHIVE_MIN_LENGTH (an accidental one) is neither
// archived nor removed from Zoom, and a replay changes nothing; a longer one is
// archived as ever. With ZOOM_TRASH_SHORT_UNARCHIVED=yes the short one goes to
// Zoom's trash unarchived, once.
func TestShortRecordingsLeftAlone(t *testing.T) {
	for _, trash := range []string{"no", "yes"} {
		t.Run("trash "+trash, func(t *testing.T) {
			w := newWorld(t, map[string]string{"ARCHIVE_MIN_LENGTH": "2m", "ZOOM_TRASH_SHORT_UNARCHIVED": trash})
			s := w.startFetch(t)
			up := w.startUploader(t)
			start := time.Date(2026, 3, 14, 17, 30, 0, 0, time.UTC)
			accidental := w.meeting("uuid-oops==", "Test, please ignore", standins.FileSpec{ID: "abcd0000-0000-4000-8000-000000000001", FileType: "MP4",
				Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 90000, Start: start, End: start.Add(40 * time.Second)})
			real := w.meeting("uuid-real-length==", "Rehearsal", twoFiles("abcd1111", mib, 1000)[:1]...)
			w.send(t, events.EventRecordingCompleted, accidental)
			w.send(t, events.EventRecordingCompleted, real)
			up.whole(t, keys(real)[0], contentOf(w, real, keys(real)[0]))
			waitFor(t, "the real one trashed", func() bool { tr, _ := w.zoom.Trashed(real.UUID); return tr })
			w.send(t, events.EventRecordingCompleted, accidental) // a replay
			waitFor(t, "both short events read", func() bool {
				return metric(t, s, `zoomarchive_fetch_events_total{event="recording.completed",outcome="short"}`) == 2
			})
			rec, _, err := bus.Get[events.RecordingJob](context.Background(), w.kv, events.RecordingJobKey(events.MeetingKey(accidental.UUID)))
			if err != nil || rec.State != events.RecShort || rec.Length != 40*time.Second || len(rec.Files) != 0 {
				t.Errorf("the short recording's record %+v, %v", rec, err)
			}
			for _, f := range w.drive.Files() {
				if f.Name == keys(accidental)[0] {
					t.Errorf("the short recording's file is in Drive: %+v", f)
				}
			}
			trashed, _ := w.zoom.Trashed(accidental.UUID)
			if want := trash == "yes"; trashed != want || (rec.ZoomAction == events.ZoomTrashed) != want {
				t.Errorf("short recording trashed %v (record says %s), want %v", trashed, rec.ZoomAction, want)
			}
			if n := w.zoom.CallsTo("DELETE", "/v2/meetings/uuid-oops"); trash == "yes" && n != 1 {
				t.Errorf("%d trash calls for the short recording, want 1", n)
			}
			if served := w.zoom.BytesServed(); served != int64(mib) {
				t.Errorf("Zoom served %d bytes: the short recording must not be downloaded", served)
			}
		})
	}
	w := newWorld(t, map[string]string{"ZOOM_TRASH_SHORT_UNARCHIVED": "yes"})
	err := run(context.Background(), []string{"fetch"}, func(k string) string { return w.env[k] }, &stagetest.Logs{}, &stagetest.Logs{})
	if err == nil || !strings.Contains(err.Error(), "ZOOM_TRASH_SHORT_UNARCHIVED: yes needs ARCHIVE_MIN_LENGTH") {
		t.Errorf("trashing short recordings without a length: %v", err)
	}
}
