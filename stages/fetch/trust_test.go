package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// No single message is trusted with the trash: these tests hold one program's
// broker identity, as an attacker would, and show that a recording leaves Zoom
// only once Drive holds the bytes fetch itself read from Zoom.

// twoFiles are a recording's video and audio, with ids of their own.
func twoFiles(prefix string, sizes ...int64) []standins.FileSpec {
	return []standins.FileSpec{
		{ID: prefix + "-0000-4000-8000-000000000001", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: sizes[0]},
		{ID: prefix + "-0000-4000-8000-000000000002", FileType: "M4A", Extension: "M4A", RecordingType: "audio_only", Size: sizes[1]},
	}
}

// An attacker holding the hook's identity publishes, before Zoom's genuine event,
// a recording.completed for a real recording with its real file ids but another
// recording's download URLs and sizes. fetch plans what Zoom's API lists: it reads
// the real recording's bytes, alerts that an event did not match Zoom, and the
// recording leaves Zoom only once Drive holds them.
func TestForgedEventFromTheHookCannotCostARecording(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	up := w.startUploader(t)
	real := w.meeting("uuid-premiere==", "Premiere", twoFiles("dddd4444", 2*mib+7, mib/2+3)...)
	other := w.meeting("uuid-lunch==", "Lunch", twoFiles("eeee5555", mib+11, mib/4+5)...)
	forged := real
	forged.RecordingFiles = append([]events.RecordingFile(nil), real.RecordingFiles...)
	for i := range forged.RecordingFiles {
		forged.RecordingFiles[i].DownloadURL = other.RecordingFiles[i].DownloadURL
		forged.RecordingFiles[i].FileSize = other.RecordingFiles[i].FileSize
	}
	w.publish(t, stagetest.JetStreamAs(t, w.natsURL, events.IdentityHook), events.EventRecordingCompleted, forged)

	for _, key := range keys(real) {
		up.whole(t, key, contentOf(w, real, key)) // the real bytes, nothing else
	}
	waitFor(t, "the real recording trashed", func() bool { trashed, _ := w.zoom.Trashed(real.UUID); return trashed })
	if trashed, _ := w.zoom.Trashed(other.UUID); trashed {
		t.Error("the other recording was trashed")
	}
	for _, key := range keys(real) {
		want, found := contentOf(w, real, key), false
		for _, f := range w.drive.Files() {
			found = found || f.Name == key && f.MD5 == want.MD5() && f.Size == want.Size
		}
		if !found {
			t.Errorf("%s: Drive has no copy with Zoom's bytes", key)
		}
	}
	if served, want := w.zoom.BytesServed(), int64(2*mib+7+mib/2+3); served != want {
		t.Errorf("Zoom served %d bytes, want %d: only the real recording's", served, want)
	}
	raised, _ := stagetest.Alerts(t, w.natsURL, events.AlertEventMismatchPrefix+events.MeetingKey(real.UUID))
	if len(raised) != 1 || !strings.Contains(raised[0].Message, "did not match what Zoom itself lists") || !strings.Contains(raised[0].Message, "Premiere") {
		t.Errorf("alerts %+v, want one saying the event did not match Zoom", raised)
	}

	// Zoom's genuine event, and its retry, change nothing and alert nothing more.
	w.send(t, events.EventRecordingCompleted, real)
	w.send(t, events.EventRecordingCompleted, real)
	time.Sleep(500 * time.Millisecond)
	if raised, _ := stagetest.Alerts(t, w.natsURL, events.AlertEventMismatchPrefix+events.MeetingKey(real.UUID)); len(raised) != 1 {
		t.Errorf("%d mismatch alerts after the genuine events, want still 1", len(raised))
	}
	if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 1 {
		t.Errorf("%d trash calls, want 1", n)
	}
}

// An attacker holding upload's identity says a file is verified that Drive does
// not hold as Zoom served it: no copy, another file's bytes, a copy outside the
// archive, a copy in Drive's trash. The recording stays in Zoom, held with one
// alert, and goes once Drive holds the real bytes (the alert then says it is over).
func TestUploadsWordAloneCannotTrash(t *testing.T) {
	w := newWorld(t, nil)
	s := w.startFetch(t)
	rec := w.meeting("uuid-claimed==", "Dress rehearsal", twoFiles("ffff6666", mib+1, 1000)[1:]...)
	key := keys(rec)[0]
	up := w.startUploader(t, key)
	w.send(t, events.EventRecordingCompleted, rec)
	want := contentOf(w, rec, key)
	up.whole(t, key, want)
	w.waitState(t, key, events.JobFetched)

	ctx := context.Background()
	ujs := stagetest.JetStreamAs(t, w.natsURL, events.IdentityUpload)
	ukv, err := ujs.KeyValue(ctx, events.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	claim := func(name, driveID string) {
		t.Helper()
		job, err := bus.Update(ctx, ukv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
			j.State, j.DriveID, j.Size, j.MD5 = events.JobVerified, driveID, want.Size, want.MD5()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(job.Verified())
		if _, err := ujs.Publish(ctx, events.FileVerifiedSubject(key), b, jetstream.WithMsgID("forged "+name)); err != nil {
			t.Fatal(err)
		}
	}
	body := make([]byte, want.Size)
	outside := w.drive.AddFolder("Someone's own folder", true)
	trashed := w.drive.Put(w.folder(), "trashed copy", nil)
	w.drive.Trash(trashed)
	cases := []struct{ name, driveID, reason string }{
		{"no copy named", "", "has no Drive copy"},
		{"no such copy", "no-such-file", "Drive has no copy"},
		{"other bytes", w.drive.Put(w.folder(), key, body), "is not what fetch read from Zoom"},
		{"outside the archive", w.drive.Put(outside, key, body), "not inside the archive folder"},
		{"in the trash", trashed, "in Drive's trash"},
	}
	for i, c := range cases {
		claim(c.name, c.driveID)
		waitFor(t, c.name+": held", func() bool { return metric(t, s, "zoomarchive_fetch_recordings_held_total") == float64(i+1) })
		if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 0 {
			t.Fatalf("%s: trashed on upload's word alone", c.name)
		}
		found := false
		for _, line := range s.Logs.Lines() {
			found = found || line["msg"] == "recording kept in Zoom: the proof before the trash failed" && strings.Contains(line["reason"].(string), c.reason)
		}
		if !found {
			t.Errorf("%s: no log line saying %q", c.name, c.reason)
		}
	}
	kind := events.AlertTrashHeldPrefix + events.MeetingKey(rec.UUID)
	if raised, _ := stagetest.Alerts(t, w.natsURL, kind); len(raised) != 1 || !strings.Contains(raised[0].Message, "Dress rehearsal") {
		t.Errorf("alerts %+v, want one naming the recording", raised)
	}

	out, err := stagetest.Command(run, w.env, "fetch", "status")
	if err != nil || !strings.Contains(out, "Kept in Zoom until Drive's copy is proven (1)") || !strings.Contains(out, `"Dress rehearsal"`) || !strings.Contains(out, "in Drive's trash") {
		t.Errorf("fetch status: %v\n%s", err, out)
	}

	up.release(key) // Drive now holds the real bytes
	waitFor(t, "trashed once Drive holds the bytes", func() bool { trashed, _ := w.zoom.Trashed(rec.UUID); return trashed })
	waitFor(t, "the alert over", func() bool { _, resolved := stagetest.Alerts(t, w.natsURL, kind); return len(resolved) == 1 })
	if out, _ := stagetest.Command(run, w.env, "fetch", "status"); !strings.Contains(out, "Kept in Zoom until Drive's copy is proven (0)") {
		t.Errorf("fetch status after the trash:\n%s", out)
	}
}

// A job planned from other facts than Zoom lists now (an earlier version planned
// it from a webhook, say) is corrected: the file starts over and is read as Zoom
// lists it; what was read before is never kept.
func TestJobPlannedFromWrongFactsStartsOver(t *testing.T) {
	w := newWorld(t, nil)
	rec := w.meeting("uuid-wrongfacts==", "Read-through", twoFiles("abab7777", mib+3, 2000)[:1]...)
	key := keys(rec)[0]
	ctx := context.Background()
	wrong := rec.RecordingFiles[0]
	wrong.FileSize++
	for _, put := range []func() error{
		func() error {
			_, err := bus.Update(ctx, w.kv, events.FactsKey(key), func(f *events.FileFacts, _ bool) error {
				*f = events.FileFacts{Key: key, File: wrong, Planned: 1, Read: 1, Size: int64(wrong.FileSize), MD5: "0123456789abcdef0123456789abcdef"}
				return nil
			})
			return err
		},
		func() error {
			_, err := bus.Update(ctx, w.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
				*j = events.FileJob{Key: key, Recording: rec.Info(), File: wrong, State: events.JobVerified, DriveID: "stale"}
				return nil
			})
			return err
		},
	} {
		if err := put(); err != nil {
			t.Fatal(err)
		}
	}
	w.startFetch(t)
	up := w.startUploader(t)
	w.send(t, events.EventRecordingCompleted, rec)
	got := up.whole(t, key, contentOf(w, rec, key))
	if got.gen == 0 {
		t.Error("read in generation 0: the file did not start over")
	}
	waitFor(t, "trashed", func() bool { trashed, _ := w.zoom.Trashed(rec.UUID); return trashed })
	facts, _, _ := bus.Get[events.FileFacts](ctx, w.kv, events.FactsKey(key))
	if facts.File.FileSize != rec.RecordingFiles[0].FileSize || !facts.Fetched() || facts.MD5 != contentOf(w, rec, key).MD5() {
		t.Errorf("facts %+v, want Zoom's size and the MD5 of Zoom's bytes", facts)
	}
}

// An attacker holding upload's identity rewrites a file job to point at another
// recording's download link and size, and asks fetch for the file again: fetch
// downloads what its own record of Zoom's listing says, the real file.
func TestUploadCannotRedirectADownload(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	real := w.meeting("uuid-score==", "Score reading", twoFiles("cdcd8888", mib+9, 1000)[:1]...)
	other := w.meeting("uuid-party==", "Party", twoFiles("efef9999", mib/2+1, 1000)[:1]...)
	key := keys(real)[0]
	up := w.startUploader(t, key)
	w.send(t, events.EventRecordingCompleted, real)
	up.whole(t, key, contentOf(w, real, key))

	ctx := context.Background()
	ujs := stagetest.JetStreamAs(t, w.natsURL, events.IdentityUpload)
	ukv, err := ujs.KeyValue(ctx, events.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Update(ctx, ukv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
		j.File.DownloadURL, j.File.FileSize = other.RecordingFiles[0].DownloadURL, other.RecordingFiles[0].FileSize
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ujs.PublishMsg(ctx, events.RestartMsg(key)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file read again", func() bool {
		up.mu.Lock()
		defer up.mu.Unlock()
		return up.files[key].gen > 0 && up.files[key].final
	})
	up.whole(t, key, contentOf(w, real, key))
	if served := w.zoom.BytesServed(); served != 2*int64(mib+9) {
		t.Errorf("Zoom served %d bytes, want the real file twice (%d)", served, 2*(mib+9))
	}
}
