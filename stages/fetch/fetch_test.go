package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"

	"github.com/nats-io/nats.go"
)

const mib = 1 << 20

// A board meeting paused once, with every kind of file Zoom makes.
func boardMeetingFiles() []standins.FileSpec {
	seg2 := time.Date(2026, 3, 14, 18, 20, 0, 0, time.UTC)
	return []standins.FileSpec{
		{ID: "aaaa1111-0000-4000-8000-000000000001", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 3*mib + 12345},
		{ID: "aaaa1111-0000-4000-8000-000000000002", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 2*mib + 1, Start: seg2, End: seg2.Add(45 * time.Minute)},
		{ID: "aaaa1111-0000-4000-8000-000000000003", FileType: "M4A", Extension: "M4A", RecordingType: "audio_only", Size: mib / 2},
		{ID: "aaaa1111-0000-4000-8000-000000000004", FileType: "TRANSCRIPT", Extension: "VTT", RecordingType: "audio_transcript", Size: 20000},
		{ID: "aaaa1111-0000-4000-8000-000000000005", FileType: "CHAT", Extension: "TXT", RecordingType: "chat_file", Size: 1500},
		{ID: "aaaa1111-0000-4000-8000-000000000006", FileType: "TIMELINE", Extension: "JSON", RecordingType: "timeline", Size: 4096},
		{ID: "", FileType: "CC", Extension: "VTT", Size: 3000, NoSize: true},
		{ID: "aaaa1111-0000-4000-8000-000000000008", FileType: "HOLOGRAM", Extension: "H3D", RecordingType: "volumetric_view", Size: 777},
		{ID: "bbbb2222-0000-4000-8000-000000000001", FileType: "M4A", Extension: "M4A", Size: 300000, Participant: "Aino Virtanen"},
		{ID: "bbbb2222-0000-4000-8000-000000000002", FileType: "M4A", Extension: "M4A", Size: 200000, Participant: "Mikko"},
	}
}

func contentOf(w *world, rec events.Recording, key string) standins.Content {
	for _, f := range rec.Files() {
		if events.FileKey(rec.UUID, f) == key {
			return w.zoom.Content(f.DownloadURL[strings.LastIndex(f.DownloadURL, "/")+1:])
		}
	}
	panic("no file " + key)
}

func TestEveryFileArchivedThenTrashedOnce(t *testing.T) {
	w := newWorld(t, nil)
	s := w.startFetch(t)
	up := w.startUploader(t)
	// A UUID that Zoom wants double-encoded in paths.
	rec := w.meeting("/ajXp+112QmS7gqgP//3ep==", "Hallitus – kokous", boardMeetingFiles()...)
	w.send(t, events.EventRecordingCompleted, rec)

	for _, key := range keys(rec) {
		up.whole(t, key, contentOf(w, rec, key))
		j := w.waitState(t, key, events.JobVerified)
		if j.Recording.UUID != rec.UUID || j.Recording.Topic != rec.Topic || len(j.MD5) != 32 {
			t.Errorf("%s: job %+v", key, j)
		}
	}
	waitFor(t, "recording archived", func() bool { return len(w.archiveEvents(t, "archive.recording.archived.")) == 1 })
	if trashed, deleted := w.zoom.Trashed(rec.UUID); !trashed || deleted {
		t.Fatalf("trashed %v deleted %v, want trashed", trashed, deleted)
	}
	var archived events.RecordingArchived
	json.Unmarshal(w.archiveEvents(t, "archive.recording.archived.")[0].Data, &archived)
	if archived.ZoomAction != events.ZoomTrashed || len(archived.Files) != len(keys(rec)) || archived.Recording.Topic != rec.Topic || archived.FolderLink == "" {
		t.Errorf("archived event %+v", archived)
	}
	for _, f := range archived.Files {
		if f.DriveLink == "" || f.Size == 0 {
			t.Errorf("archived file without link or size: %+v", f)
		}
	}

	// Zoom retries the webhook, an operator replays the stream, the transcript event
	// repeats a file: nothing is fetched again, nothing trashed twice.
	served := w.zoom.BytesServed()
	w.send(t, events.EventRecordingCompleted, rec)
	w.send(t, events.EventTranscriptCompleted, rec)
	waitFor(t, "replays planned", func() bool {
		return metric(t, s, `zoomarchive_fetch_events_total{event="recording.transcript_completed",outcome="planned"}`) == 1
	})
	time.Sleep(300 * time.Millisecond)
	if got := w.zoom.BytesServed(); got != served {
		t.Errorf("replay downloaded %d more bytes", got-served)
	}
	if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 1 {
		t.Errorf("%d trash calls, want exactly 1", n)
	}
	if n := w.zoom.CallsTo("POST", "/oauth/token"); n != 1 {
		t.Errorf("%d token requests for %d files, want 1 (cached)", n, len(keys(rec)))
	}
	for _, line := range s.Logs.Lines() {
		b, _ := json.Marshal(line)
		for _, secret := range []string{w.zoom.ClientSecret, "download-token", "Signature=", "/rec/download/", "Bearer"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("log line holds %q: %s", secret, b)
			}
		}
	}
}

func TestPartlyVerifiedNeverTouchedAndLateFilesFirst(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	rec := w.meeting("uuid-partly==", "Rehearsal", boardMeetingFiles()[:3]...)
	ks := keys(rec)
	up := w.startUploader(t, ks[2])
	w.send(t, events.EventRecordingCompleted, rec)
	w.waitState(t, ks[0], events.JobVerified)
	w.waitState(t, ks[1], events.JobVerified)
	up.whole(t, ks[2], contentOf(w, rec, ks[2]))
	time.Sleep(500 * time.Millisecond)
	if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 0 {
		t.Fatalf("trashed with a file unverified (%d calls)", n)
	}

	// Zoom made a transcript meanwhile, with no event yet: it must be archived before
	// the recording goes to the trash.
	late := w.meeting("uuid-partly==", "Rehearsal", append(boardMeetingFiles()[:3], boardMeetingFiles()[3])...)
	lateKey := keys(late)[3]
	up.release(ks[2])
	w.waitState(t, lateKey, events.JobVerified)
	waitFor(t, "trash", func() bool { return w.zoom.CallsTo("DELETE", "/v2/meetings/") == 1 })
	var archived events.RecordingArchived
	waitFor(t, "archived event", func() bool { return len(w.archiveEvents(t, "archive.recording.archived.")) == 1 })
	json.Unmarshal(w.archiveEvents(t, "archive.recording.archived.")[0].Data, &archived)
	if len(archived.Files) != 4 {
		t.Errorf("archived %d files, want 4 with the late transcript", len(archived.Files))
	}
}

// An admin trashed the recording by hand before the archive finished: the archive
// still completes, and says Zoom's copy was already gone instead of "trashed".
func TestRecordingGoneFromZoomIsReportedSo(t *testing.T) {
	w := newWorld(t, nil)
	w.startFetch(t)
	rec := w.meeting("uuid-by-hand", "By hand", boardMeetingFiles()[2:4]...)
	up := w.startUploader(t, keys(rec)[1])
	w.send(t, events.EventRecordingCompleted, rec)
	up.whole(t, keys(rec)[1], contentOf(w, rec, keys(rec)[1]))
	w.zoom.TrashByHand(rec.UUID)
	up.release(keys(rec)[1])
	waitFor(t, "archived", func() bool { return len(w.archiveEvents(t, "archive.recording.archived.")) == 1 })
	var archived events.RecordingArchived
	json.Unmarshal(w.archiveEvents(t, "archive.recording.archived.")[0].Data, &archived)
	if archived.ZoomAction != events.ZoomGone {
		t.Errorf("zoom action %q, want %q", archived.ZoomAction, events.ZoomGone)
	}
}

func TestArchiveFileTypesNarrows(t *testing.T) {
	w := newWorld(t, map[string]string{"ARCHIVE_FILE_TYPES": "mp4,TRANSCRIPT", "ZOOM_AFTER_ARCHIVE": "keep"})
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-narrow", "Narrow", boardMeetingFiles()...)
	w.send(t, events.EventRecordingCompleted, rec)
	waitFor(t, "archived", func() bool { return len(w.archiveEvents(t, "archive.recording.archived.")) == 1 })
	up.mu.Lock()
	n := len(up.files)
	up.mu.Unlock()
	if n != 3 {
		t.Errorf("archived %d files, want the 2 MP4 segments and the transcript", n)
	}
	if w.zoom.CallsTo("DELETE", "/v2/") != 0 {
		t.Error("ZOOM_AFTER_ARCHIVE=keep, yet Zoom was asked to remove the recording")
	}
}

func TestDownloadCutThreeTimesArrivesWhole(t *testing.T) {
	w := newWorld(t, nil)
	for _, at := range []int64{mib + 7, 100, 2*mib + 3} {
		w.zoom.Inject(standins.Fault{Path: "/file/", CutAfter: at})
	}
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-cut", "Cut", standins.FileSpec{ID: "cut-1", FileType: "MP4", Extension: "MP4", Size: 5 * mib})
	w.send(t, events.EventRecordingCompleted, rec)
	up.whole(t, "cut-1", w.zoom.Content("cut-1"))
	var ranges []string
	for _, c := range w.zoom.Calls() {
		if strings.HasPrefix(c.Path, "/file/") {
			ranges = append(ranges, c.Range)
		}
	}
	// A cut link loses what was in flight, so each resume starts where the bytes
	// received so far end, never at 0.
	if len(ranges) != 4 || ranges[0] != "" {
		t.Fatalf("downloads with Range %q; want a first full request and three resumes", ranges)
	}
	for i, last := 1, int64(0); i < 4; i++ {
		var from int64
		if _, err := fmt.Sscanf(ranges[i], "bytes=%d-", &from); err != nil || from <= last {
			t.Errorf("resume %d asks %q after %d", i, ranges[i], last)
		}
		last = from
	}
	if j := w.job(t, "cut-1"); j.Attempts != 0 || j.Generation != 0 {
		t.Errorf("cuts must be resumed within one attempt: %+v", j)
	}
}

// A download that stops delivering bytes without closing is cut after
// ZOOM_STALL_TIMEOUT and resumed.
func TestStalledDownloadResumed(t *testing.T) {
	w := newWorld(t, map[string]string{"ZOOM_STALL_TIMEOUT": "300ms"})
	w.zoom.Inject(standins.Fault{Path: "/file/", CutAfter: 1536 << 10, StallMidway: 3 * time.Second})
	s := w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-stall", "Stall", standins.FileSpec{ID: "stall-1", FileType: "MP4", Extension: "MP4", Size: 3 * mib})
	start := time.Now()
	w.send(t, events.EventRecordingCompleted, rec)
	up.whole(t, "stall-1", w.zoom.Content("stall-1"))
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("took %s: the stall was waited out instead of cut", took)
	}
	if metric(t, s, `zoomarchive_fetch_retries_total{reason="stalled"}`) != 1 {
		t.Error("stall not counted")
	}
}

func TestServerWithoutRangeStartsOver(t *testing.T) {
	w := newWorld(t, nil)
	w.zoom.NoRange = true
	w.zoom.Inject(standins.Fault{Path: "/file/", CutAfter: 2*mib + 5})
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-norange", "No range", standins.FileSpec{ID: "nr-1", FileType: "MP4", Extension: "MP4", Size: 3 * mib})
	w.send(t, events.EventRecordingCompleted, rec)
	f := up.whole(t, "nr-1", w.zoom.Content("nr-1"))
	if f.gen != 1 {
		t.Errorf("generation %d, want 1: the file starts over when Zoom cannot resume", f.gen)
	}
}

func TestWrongLengthFailsTheAttempt(t *testing.T) {
	w := newWorld(t, nil)
	w.zoom.Inject(standins.Fault{Path: "/file/", ExtraBytes: 10})
	w.zoom.Inject(standins.Fault{Path: "/file/", ShortBytes: 10})
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-len", "Length", standins.FileSpec{ID: "len-1", FileType: "MP4", Extension: "MP4", Size: mib + 99})
	w.send(t, events.EventRecordingCompleted, rec)
	up.whole(t, "len-1", w.zoom.Content("len-1"))
	if j := w.waitState(t, "len-1", events.JobVerified); j.Attempts != 2 || !strings.Contains(j.LastError, "file_size") {
		t.Errorf("want two failed attempts for the wrong lengths: %+v", j)
	}
}

func TestRateLimitHoldsEveryRequest(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_CONCURRENCY": "3"})
	until := time.Now().Add(1500 * time.Millisecond).UTC().Truncate(time.Second).Add(time.Second)
	w.zoom.Inject(standins.Fault{Path: "/file/", Status: 429, RetryAfter: until.Format(time.RFC3339)})
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-429", "Busy", boardMeetingFiles()[2:5]...)
	w.send(t, events.EventRecordingCompleted, rec)
	for _, key := range keys(rec) {
		up.whole(t, key, contentOf(w, rec, key))
	}
	w.noRequestUntil(t, until)
}

// noRequestUntil checks that no request reached Zoom after its 429 and before
// until. A request already past the pacer when the 429 came may land just after it;
// anything started later must wait.
func (w *world) noRequestUntil(t *testing.T, until time.Time) {
	t.Helper()
	var limited time.Time
	for _, c := range w.zoom.Calls() {
		if c.Status == 429 {
			limited = c.At
			continue
		}
		if !limited.IsZero() && c.At.After(limited.Add(500*time.Millisecond)) && c.At.Before(until) {
			t.Errorf("%s %s at %s, before %s", c.Method, c.Path, c.At.Format(time.StampMilli), until.Format(time.StampMilli))
		}
	}
	if limited.IsZero() {
		t.Fatal("the 429 was never served")
	}
}

// A daily limit is not a per-second one: every request waits for Zoom's reset (its
// Retry-After here), the admins hear of it once, the files keep their attempts,
// and after the reset everything goes on and the alert is over.
func TestZoomDailyLimitPausesAlertsOnceAndResumes(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_CONCURRENCY": "3", "FETCH_MAX_ATTEMPTS": "2"})
	reset := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	w.zoom.Inject(standins.Fault{Path: "/file/", Status: 429, DailyLimit: true, RetryAfter: reset.Format(time.RFC3339)})
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-daily", "Daily", boardMeetingFiles()[2:5]...)
	w.send(t, events.EventRecordingCompleted, rec)
	alerts := func() ([]events.Alert, []events.Alert) {
		return stagetest.Alerts(t, w.natsURL, events.AlertZoomDailyLimit)
	}
	waitFor(t, "the alert", func() bool { raised, _ := alerts(); return len(raised) == 1 })
	if raised, _ := alerts(); !raised[0].Until.Equal(reset) {
		t.Errorf("the alert says until %s, want Zoom's reset %s", raised[0].Until, reset)
	}
	for _, key := range keys(rec) {
		up.whole(t, key, contentOf(w, rec, key))
		if j := w.waitState(t, key, events.JobVerified); j.Attempts != 0 {
			t.Errorf("%s: %d attempts; a daily limit must not use them up", key, j.Attempts)
		}
	}
	w.noRequestUntil(t, reset)
	waitFor(t, "resolved", func() bool { _, resolved := alerts(); return len(resolved) == 1 })
	if raised, _ := alerts(); len(raised) != 1 {
		t.Errorf("%d alerts, want 1", len(raised))
	}
}

func TestExpiredTokenRenewedOnceAndDownloadToken(t *testing.T) {
	w := newWorld(t, nil)
	w.zoom.RejectS2SDownloads = true
	w.startFetch(t)
	up := w.startUploader(t, "aaaa1111-0000-4000-8000-000000000005")
	rec := w.meeting("uuid-tokens", "Tokens", boardMeetingFiles()[3:5]...)
	w.send(t, events.EventRecordingCompleted, rec)
	for _, key := range keys(rec) {
		up.whole(t, key, contentOf(w, rec, key))
	}
	w.waitState(t, keys(rec)[0], events.JobVerified)
	w.zoom.ExpireTokens() // the hour is over before the last file is verified
	up.release(keys(rec)[1])
	waitFor(t, "trash", func() bool { return w.zoom.CallsTo("DELETE", "/v2/meetings/") == 1 })
	if n := w.zoom.CallsTo("POST", "/oauth/token"); n != 2 {
		t.Errorf("%d token requests, want 2: one, then one renewal after the 401", n)
	}
	asked := 0
	for _, c := range w.zoom.Calls() {
		if c.Method == "GET" && strings.Contains(c.Query, "download_access_token") {
			asked++
		}
	}
	if asked == 0 {
		t.Error("downloads refused the S2S token, yet no download_access_token was asked for")
	}
}

func TestHostileDownloadURLRefused(t *testing.T) {
	var hits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer evil.Close()
	w := newWorld(t, map[string]string{"FETCH_MAX_ATTEMPTS": "1"})
	w.startFetch(t)
	rec := w.meeting("uuid-evil", "Evil", standins.FileSpec{ID: "evil-1", FileType: "MP4", Extension: "MP4", Size: 1000})
	rec.RecordingFiles[0].DownloadURL = strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) + "/steal"
	w.send(t, events.EventRecordingCompleted, rec)
	j := w.waitState(t, "evil-1", events.JobFailed)
	if hits.Load() != 0 {
		t.Fatalf("fetch called the hostile host %d times", hits.Load())
	}
	if !strings.Contains(j.LastError, "not in ZOOM_DOWNLOAD_HOSTS") {
		t.Errorf("reason %q", j.LastError)
	}
}

// A job that keeps failing gives up after FETCH_MAX_ATTEMPTS, tells notify once, and
// the one command the failure mail gives brings it back once Zoom is healthy; so
// does the nats recipe docs/operating.md keeps for operators who want it.
func TestGivesUpThenRetryCommandWorks(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_MAX_ATTEMPTS": "3"})
	w.zoom.Inject(standins.Fault{Path: "/file/", Status: 503, Times: 1000})
	w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-down", "Down", standins.FileSpec{ID: "down-1", FileType: "MP4", Extension: "MP4", Size: mib},
		standins.FileSpec{ID: "down-2", FileType: "M4A", Extension: "M4A", Size: mib / 2})
	w.send(t, events.EventRecordingCompleted, rec)
	j := w.waitState(t, "down-1", events.JobFailed)
	w.waitState(t, "down-2", events.JobFailed)
	if j.Attempts != 3 {
		t.Errorf("attempts %d, want 3", j.Attempts)
	}
	var failed events.FileFailed
	waitFor(t, "failure events", func() bool { return len(w.archiveEvents(t, "archive.file.failed.")) == 2 })
	for _, m := range w.archiveEvents(t, "archive.file.failed.") {
		if strings.HasSuffix(m.Subject, "down-1") {
			json.Unmarshal(m.Data, &failed)
		}
	}
	if failed.Attempts != 3 || failed.Recording.Topic != "Down" || !strings.Contains(failed.Reason, "503") || failed.Replay != events.RetryCommand("down-1") {
		t.Fatalf("failure event %+v", failed)
	}
	if n := len(stagetest.StreamMsgs(t, w.natsURL, events.StreamZoomEvents)); n != 1 {
		t.Errorf("the event must stay in ZOOM_EVENTS for a replay; %d there", n)
	}

	// The operator looks, as docs/operating.md shows, then, Zoom healthy again, runs the
	// mail's command (fetch retry, which compose runs in a fetch container).
	nats := func(line string) string {
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = append(os.Environ(), "NATS_URL="+w.natsURL, "NATS_CREDS="+stagetest.Creds(t, w.natsURL, events.IdentityOperator), "PATH="+natsCLIDir(t)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return string(out)
	}
	if out := nats("nats kv get ARCHIVE_JOBS file.down-1 --raw"); !strings.Contains(out, `"state":"failed"`) || !strings.Contains(out, "503") {
		t.Errorf("nats kv get shows:\n%s", out)
	}
	if out := nats("nats kv ls ARCHIVE_JOBS"); !strings.Contains(out, "file.down-1") || !strings.Contains(out, "rec.") {
		t.Errorf("nats kv ls shows:\n%s", out)
	}
	w.zoom.ClearFaults()
	command := func(args ...string) (string, error) {
		out := &stagetest.Logs{} // written by the log and the command at once
		err := run(context.Background(), args, func(k string) string { return w.env[k] }, out, out)
		return out.String(), err
	}
	retry := func(key string) (string, error) {
		_, args, _ := strings.Cut(events.RetryCommand(key), "docker compose run --rm --no-deps ")
		return command(strings.Fields(args)...)
	}
	status := func() status {
		out, err := command("fetch", "status", "--json")
		var s status
		if err == nil {
			err = json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &s)
		}
		if err != nil {
			t.Fatalf("fetch status --json: %v\n%s", err, out)
		}
		return s
	}
	if s := status(); len(s.Failed) != 2 || s.Failed[0].Retry != events.RetryCommand(s.Failed[0].Key) || len(s.InFlight) != 0 || s.LastArchived != nil {
		t.Errorf("status with two failed files: %+v", s)
	}
	if out, err := command("fetch", "status"); err != nil || !strings.Contains(out, "Failed (2):") || !strings.Contains(out, "retry: "+events.RetryCommand("down-1")) {
		t.Errorf("fetch status: %v\n%s", err, out)
	}
	if out, err := retry("down-1"); err != nil || !strings.Contains(out, "queued again") {
		t.Fatalf("fetch retry: %v\n%s", err, out)
	}
	up.whole(t, "down-1", w.zoom.Content("down-1"))
	w.waitState(t, "down-1", events.JobVerified)
	for key, want := range map[string]string{"down-1": "is verified, not failed", "nope": "no file job nope"} {
		if _, err := retry(key); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fetch retry %s: %v, want %q", key, err, want)
		}
	}
	// The nats recipe: forget the job, replay the event.
	nats("nats kv del ARCHIVE_JOBS file.down-2 -f && nats consumer reset ZOOM_EVENTS fetch --sequence 1 -f")
	up.whole(t, "down-2", w.zoom.Content("down-2"))
	w.waitState(t, "down-2", events.JobVerified)
	waitFor(t, "the recording archived, in fetch status", func() bool {
		s := status()
		return s.LastArchived != nil && s.LastArchived.Topic == "Down" && len(s.Failed) == 0
	})
}

func natsCLIDir(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NATS_CLI"); p != "" {
		return p[:strings.LastIndex(p, "/")]
	}
	if _, err := os.Stat("../../.tools/nats"); err == nil {
		wd, _ := os.Getwd()
		return wd + "/../../.tools"
	}
	if p, err := exec.LookPath("nats"); err == nil {
		return p[:strings.LastIndex(p, "/")]
	}
	t.Fatal("natscli v0.5.0 not found: run 'make tools' or set NATS_CLI")
	return ""
}

// With the window full, fetch waits: the stream never holds more than the window,
// and once upload drains it every byte arrives once and in order.
// A file failed whose announcement a broker error kept back (the record says so)
// is announced when its work message comes back, once, under the recorded id.
func TestFailureLeftUnannouncedIsAnnouncedOnRedelivery(t *testing.T) {
	w := newWorld(t, nil)
	rec := w.meeting("uuid-quiet", "Quiet", standins.FileSpec{ID: "quiet-1", FileType: "MP4", Extension: "MP4", Size: mib})
	ctx := context.Background()
	if _, err := bus.Update(ctx, w.kv, events.FileJobKey("quiet-1"), func(j *events.FileJob, _ bool) error {
		*j = events.FileJob{Key: "quiet-1", Recording: rec.Info(), File: rec.Files()[0], State: events.JobFailed, Attempts: 8,
			LastError: "zoom answered 503", Unannounced: events.FetchFailedID("quiet-1", 8)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w.startFetch(t)
	for range 2 { // the redelivery, and a later replay's message
		if _, err := w.js.PublishMsg(ctx, nats.NewMsg(events.FetchJobSubject("quiet-1"))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the failure announced", func() bool { return w.job(t, "quiet-1").Unannounced == "" })
	msgs := w.archiveEvents(t, "archive.file.failed.")
	if len(msgs) != 1 || msgs[0].Header.Get(events.HeaderNatsMsgID) != events.FetchFailedID("quiet-1", 8) {
		t.Fatalf("%d failure events; want one, with the recorded id", len(msgs))
	}
	if n := w.zoom.CallsTo("GET", "/file/"); n != 0 {
		t.Errorf("a failed file was downloaded %d times", n)
	}
}

func TestFullWindowStallsWithoutLoss(t *testing.T) {
	w := newWorld(t, map[string]string{"CHUNK_WINDOW": "8MiB"})
	s := w.startFetch(t)
	rec := w.meeting("uuid-window", "Window", standins.FileSpec{ID: "win-1", FileType: "MP4", Extension: "MP4", Size: 40 * mib})
	w.send(t, events.EventRecordingCompleted, rec)
	waitFor(t, "window full", func() bool { return metric(t, s, "zoomarchive_fetch_window_full_total") > 3 })
	st, _ := w.js.Stream(context.Background(), events.StreamChunks)
	info, _ := st.Info(context.Background())
	if info.State.Bytes > 8*mib {
		t.Fatalf("chunk stream holds %d bytes, over the 8 MiB window", info.State.Bytes)
	}
	up := w.startUploader(t)
	f := up.whole(t, "win-1", w.zoom.Content("win-1"))
	if f.dups != 0 {
		t.Errorf("%d chunks arrived twice", f.dups)
	}
}

func TestSettingsErrorsListEverything(t *testing.T) {
	env := map[string]string{"ZOOM_API_URL": "https://evil.example/v2", "ZOOM_AFTER_ARCHIVE": "burn", "FETCH_RETRY_DELAYS": "1m,soon"}
	err := run(context.Background(), []string{"fetch"}, func(k string) string { return env[k] }, os.Stdout, os.Stderr)
	if err == nil {
		t.Fatal("started without settings")
	}
	for _, want := range []string{"ZOOM_ACCOUNT_ID: required", "ZOOM_CLIENT_ID: required", "ZOOM_CLIENT_SECRET: required (or ZOOM_CLIENT_SECRET_FILE",
		"ZOOM_API_URL: refused host \"evil.example\"", "ZOOM_AFTER_ARCHIVE", "FETCH_RETRY_DELAYS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// The retention hold: a verified recording stays in Zoom for ZOOM_TRASH_AFTER, and
// not a moment less, also when fetch restarts meanwhile; then fetch restore takes it
// back out of the trash.
func TestRetentionHoldThenRestore(t *testing.T) {
	w := newWorld(t, map[string]string{"ZOOM_TRASH_AFTER": "3s"})
	s := w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid/held==", "Held", boardMeetingFiles()[3:5]...)
	w.send(t, events.EventRecordingCompleted, rec)
	for _, key := range keys(rec) {
		up.whole(t, key, contentOf(w, rec, key))
		w.waitState(t, key, events.JobVerified)
	}
	verified := time.Now()
	time.Sleep(time.Second)
	s.Stop() // restarted during the hold
	w.startFetch(t)
	waitFor(t, "trash after the hold", func() bool { return w.zoom.CallsTo("DELETE", "/v2/meetings/") > 0 })
	var trashedAt time.Time
	for _, c := range w.zoom.Calls() {
		if c.Method == "DELETE" {
			trashedAt = c.At
		}
	}
	if held := trashedAt.Sub(verified); held < 2800*time.Millisecond {
		t.Errorf("trashed %s after the last file was verified, before the 3s hold", held)
	}
	time.Sleep(500 * time.Millisecond)
	if n := w.zoom.CallsTo("DELETE", "/v2/meetings/"); n != 1 {
		t.Errorf("%d trash calls, want 1", n)
	}

	out := &stagetest.Logs{} // written by the log and the command at once
	if err := run(context.Background(), []string{"fetch", "restore", rec.UUID}, func(k string) string { return w.env[k] }, out, out); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	if trashed, _ := w.zoom.Trashed(rec.UUID); trashed || !strings.Contains(out.String(), "is back in Zoom") {
		t.Errorf("still trashed after restore:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"fetch", "restore", "no-such-uuid"}, func(k string) string { return w.env[k] }, out, out); err == nil || !strings.Contains(err.Error(), "no recording") {
		t.Errorf("restoring an unknown recording: %v", err)
	}
}

// fetch check proves the broker, fetch's Drive key, the Zoom app's token, its
// scopes and the API for real, and says what to fix for each that fails.
func TestCheckSaysWhatToFix(t *testing.T) {
	w := newWorld(t, nil)
	out, err := stagetest.Command(run, w.env, "fetch", "check")
	if err != nil || strings.Count(out, "fetch: ok ") != 5 {
		t.Fatalf("a good deployment: %v\n%s", err, out)
	}
	out, err = stagetest.Command(run, stagetest.Merge(w.env, map[string]string{"DRIVE_FOLDER_ID": "no-such-folder"}), "fetch", "check")
	if err == nil || !strings.Contains(out, "fetch: FAIL Google Drive: fetch's key reads the archive folder") || !strings.Contains(out, "404") {
		t.Errorf("a folder fetch cannot read: %v\n%s", err, out)
	}
	w.zoom.SetScopes("cloud_recording:read:list_recording_files:admin recording:write:admin")
	out, err = stagetest.Command(run, w.env, "fetch", "check")
	if err == nil || !strings.Contains(out, "fetch: FAIL Zoom: the app's scopes") || !strings.Contains(out, "user:read:list_users:admin") || !strings.Contains(out, "user:read:settings:admin") ||
		strings.Contains(out, "cloud_recording:delete") {
		t.Errorf("scopes missing (the classic recording:write:admin covers the trash): %v\n%s", err, out)
	}
	if !strings.Contains(out, "fetch: WARN Zoom: the daily digest cannot show Zoom's storage") || !strings.Contains(out, "report:read:cloud_recording:admin") {
		t.Errorf("the optional storage scope missing is a warning naming it:\n%s", out)
	}
	out, err = stagetest.Command(run, stagetest.Merge(w.env, map[string]string{"ZOOM_CLIENT_SECRET": "wrong"}), "fetch", "check")
	if err == nil || !strings.Contains(out, "fetch: FAIL Zoom: a Server-to-Server OAuth token") || !strings.Contains(out, "ZOOM_CLIENT_SECRET") {
		t.Errorf("a wrong client secret: %v\n%s", err, out)
	}
	other := stagetest.Auth(t, t.TempDir())
	out, err = stagetest.Command(run, stagetest.Merge(w.env, map[string]string{"NATS_CREDS": other + "/fetch.creds"}), "fetch", "check")
	if err == nil || !strings.Contains(out, "fetch: FAIL broker") || !strings.Contains(out, "the broker refused them") {
		t.Errorf("credentials of another broker: %v\n%s", err, out)
	}
}

// The app's client secret rotated in the Marketplace and then in its file, without
// a restart: a slip in the file is refused by Zoom and the earlier secret stays in
// use; the rotated one is taken at once, and the next recording archives with it.
func TestClientSecretRotatedInItsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "zoom-client-secret")
	write := func(secret string) { stagetest.Rewrite(t, file, secret+"\n") }
	w := newWorld(t, nil)
	write(w.env["ZOOM_CLIENT_SECRET"])
	w.env["ZOOM_CLIENT_SECRET"], w.env["ZOOM_CLIENT_SECRET_FILE"] = "", file
	s := w.startFetch(t)
	w.startUploader(t)

	write("a-slip")
	s.WaitLog(t, "zoom refuses the new client secret; the earlier one still works and stays in use")
	w.zoom.SetClientSecret("rotated-in-the-marketplace")
	write("rotated-in-the-marketplace")
	s.WaitLog(t, "zoom takes the new client secret; it is in use")
	rec := w.meeting("uuid-rotated", "Rotated", standins.FileSpec{ID: "rot-1", FileType: "M4A", Extension: "M4A", Size: mib / 4})
	w.send(t, events.EventRecordingCompleted, rec)
	w.waitState(t, "rot-1", events.JobVerified)
}
