package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// A board meeting paused once, with every kind of file Zoom makes.
func boardFiles() []spec {
	seg2 := board.StartTime.Add(50 * time.Minute)
	return []spec{
		{key: "f-mp4-1", fileType: "MP4", ext: "MP4", recType: "shared_screen_with_speaker_view", size: 3*mib + 12345},
		{key: "f-mp4-2", fileType: "MP4", ext: "MP4", recType: "shared_screen_with_speaker_view", size: 2*mib + 1, start: seg2},
		{key: "f-m4a", fileType: "M4A", ext: "M4A", recType: "audio_only", size: mib / 2},
		{key: "f-vtt", fileType: "TRANSCRIPT", ext: "VTT", recType: "audio_transcript", size: 20000},
		{key: "f-chat", fileType: "CHAT", ext: "TXT", recType: "chat_file", size: 1500},
		{key: "f-timeline", fileType: "TIMELINE", ext: "JSON", recType: "timeline", size: 4096},
		{key: "hcc0000", fileType: "CC", ext: "VTT", size: 3000},
		{key: "f-holo", fileType: "HOLOGRAM", ext: "H3D", recType: "volumetric_view", size: 777},
		{key: "f-p1", fileType: "M4A", ext: "M4A", participant: "Aino Virtanen", size: 300000},
		{key: "f-empty", fileType: "CSV", ext: "CSV", recType: "poll", size: 0},
	}
}

func TestEveryFileTypeFiledTaggedVerified(t *testing.T) {
	w := newWorld(t, nil)
	s := w.startUpload(t)
	jobs := w.plan(t, board, boardFiles()...)
	w.feedAll(t, jobs)
	folder := "Zoom archive/2026/2026-03/2026-03-14 19.30 Hallitus – kokous (812 3456 7890)"
	want := map[string]string{
		"f-mp4-1":    "2026-03-14 19.30 Hallitus – kokous - shared screen with speaker view (part 1).mp4",
		"f-mp4-2":    "2026-03-14 19.30 Hallitus – kokous - shared screen with speaker view (part 2).mp4",
		"f-m4a":      "2026-03-14 19.30 Hallitus – kokous - audio only.m4a",
		"f-vtt":      "2026-03-14 19.30 Hallitus – kokous - transcript.vtt",
		"f-chat":     "2026-03-14 19.30 Hallitus – kokous - chat.txt",
		"f-timeline": "2026-03-14 19.30 Hallitus – kokous - timeline.json",
		"hcc0000":    "2026-03-14 19.30 Hallitus – kokous - closed captions.vtt",
		"f-holo":     "2026-03-14 19.30 Hallitus – kokous - volumetric view.h3d",
		"f-p1":       "2026-03-14 19.30 Hallitus – kokous - audio - Aino Virtanen.m4a",
		"f-empty":    "2026-03-14 19.30 Hallitus – kokous - poll.csv",
	}
	mimes := map[string]string{"f-mp4-1": "video/mp4", "f-m4a": "audio/mp4", "f-vtt": "text/vtt", "f-chat": "text/plain", "f-timeline": "application/json", "f-holo": "application/octet-stream"}
	for _, j := range jobs {
		got := w.waitVerified(t, j.Key)
		f := w.checkCopy(t, j.Key)
		if path := w.drive.Path(f.ID); path != folder+"/"+want[j.Key] {
			t.Errorf("%s filed as %q", j.Key, path)
		}
		if m := mimes[j.Key]; m != "" && f.MimeType != m {
			t.Errorf("%s: MIME %s, want %s", j.Key, f.MimeType, m)
		}
		if got.DriveID != f.ID || !strings.Contains(got.DriveLink, f.ID) || got.FolderLink == "" {
			t.Errorf("%s: job %+v", j.Key, got)
		}
		for k, v := range f.AppProperties {
			if len(k)+len(v) > 124 {
				t.Errorf("%s: property %s over 124 bytes", j.Key, k)
			}
		}
		if f.AppProperties["zoomMeetingUuid"] != board.UUID || f.AppProperties["zoomFileType"] != j.File.FileType || !strings.Contains(f.Description, "Hallitus") {
			t.Errorf("%s: tags %v, description %q", j.Key, f.AppProperties, f.Description)
		}
	}
	// One folder per level, tagged like the files.
	folders := map[string]int{}
	for _, f := range w.drive.Files() {
		if f.MimeType == folderMime {
			folders[w.drive.Path(f.ID)]++
			if strings.HasSuffix(w.drive.Path(f.ID), "(812 3456 7890)") && f.AppProperties["zoomMeetingId"] != "81234567890" {
				t.Errorf("recording folder tags %v", f.AppProperties)
			}
		}
	}
	for path, n := range folders {
		if n != 1 {
			t.Errorf("%d folders %q", n, path)
		}
	}
	if len(folders) != 4 {
		t.Errorf("folders %v", folders)
	}
	verified := w.archiveEvents(t, "archive.file.verified.")
	if len(verified) != len(jobs) {
		t.Fatalf("%d verified events, want %d", len(verified), len(jobs))
	}
	var v events.FileVerified
	json.Unmarshal(verified[0].Data, &v)
	if v.DriveLink == "" || v.FolderLink == "" || v.MD5 == "" || v.MeetingUUID != board.UUID {
		t.Errorf("verified event %+v", v)
	}
	// Nothing left in flight; the token asked for Drive, nothing else.
	st, _ := w.js.Stream(context.Background(), events.StreamChunks)
	if info, _ := st.Info(context.Background()); info.State.Msgs != 0 {
		t.Errorf("%d chunk messages left", info.State.Msgs)
	}
	if metric(t, s, "zoomarchive_upload_files_verified_total") != float64(len(jobs)) {
		t.Error("verified files not counted")
	}
}

func TestDriveFaultsAreRetriedFromWhatDriveHolds(t *testing.T) {
	w := newWorld(t, nil)
	// A first chunk not stored (a 308 without Range); only part of a chunk kept; a
	// 5xx storm; 429; 403 rate limits; a connection cut after Drive stored the chunk.
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Drop: true})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Accept: 256 << 10})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Drop: true})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 503, Times: 5})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 429})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "rateLimitExceeded", Message: "Rate Limit Exceeded"})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "userRateLimitExceeded", Message: "User Rate Limit Exceeded"})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Cut: true})
	w.drive.Inject(standins.DriveFault{Kind: "status", Status: 500})
	s := w.startUpload(t)
	jobs := w.plan(t, board, spec{key: "storm", fileType: "MP4", ext: "MP4", recType: "active_speaker", size: 12*mib + 5})
	w.feedAll(t, jobs)
	w.waitVerified(t, "storm")
	w.checkCopy(t, "storm")
	if w.drive.Sessions() != 1 {
		t.Errorf("%d sessions; retries must continue the same one", w.drive.Sessions())
	}
	if n := metric(t, s, `zoomarchive_upload_retries_total{reason="backendError"}`); n < 5 {
		t.Errorf("%v 5xx retries counted", n)
	}
}

// upload killed with SIGKILL mid-file: the next one (with the production
// UPLOAD_LEASE) takes the file over within seconds, asks the session where it
// stands and sends at most one Drive chunk again.
func TestKilledUploadResumesMidFile(t *testing.T) {
	w := newWorld(t, nil)
	delete(w.env, "UPLOAD_LEASE")
	const size = 24*mib + 777
	w.plan(t, board, spec{key: "kill", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: size})
	p := stagetest.StartProcess(t, "upload", w.env)
	p.WaitLog(t, "ready")
	w.feed(t, "kill", 0, 0, 12*mib, false)
	w.waitConfirmed(t, "kill", 10*mib)
	p.Kill()
	before, restarted := w.drive.Received(), time.Now()
	s := w.startUpload(t)
	w.feed(t, "kill", 0, 12*mib, size, true)
	waitFor(t, "Drive takes bytes again", func() bool { return w.drive.Received() > before })
	if took := time.Since(restarted); took > 10*time.Second {
		t.Errorf("Drive stored the next byte %s after the restart, want within 10s", took.Round(time.Millisecond))
	}
	w.waitVerified(t, "kill")
	w.checkCopy(t, "kill")
	twice := w.drive.Received() - size
	if twice > mib {
		t.Errorf("%d bytes sent to Drive twice; want at most one Drive chunk (%d)", twice, mib)
	}
	if w.drive.Sessions() != 1 || metric(t, s, "zoomarchive_upload_resumed_total") != 1 {
		t.Errorf("sessions %d: the restart must resume the session", w.drive.Sessions())
	}
}

// A session that expired while its first bytes were already acknowledged: the file
// comes again from Zoom (fetch is asked) into a new session.
func TestExpiredSessionStartsOver(t *testing.T) {
	w := newWorld(t, nil)
	refetches := w.refetcher(t)
	w.plan(t, board, spec{key: "exp", fileType: "MP4", ext: "MP4", size: 6*mib + 3})
	s := w.startUpload(t)
	w.feed(t, "exp", 0, 0, 3*mib, false)
	w.waitConfirmed(t, "exp", 2*mib)
	s.Stop()
	w.drive.ExpireSessions()
	w.startUpload(t)
	w.feed(t, "exp", 0, 3*mib, 6*mib+3, true)
	w.waitVerified(t, "exp")
	w.checkCopy(t, "exp")
	if *refetches != 1 || w.drive.Sessions() != 2 {
		t.Errorf("refetches %d, sessions %d; want 1 and 2", *refetches, w.drive.Sessions())
	}
}

// fetch started a file over while upload was stopped mid-file: the new generation
// goes into a new session from byte 0 and verifies.
func TestFileStartedOverWhileStoppedVerifies(t *testing.T) {
	w := newWorld(t, nil)
	const size = 6*mib + 5
	w.plan(t, board, spec{key: "over", fileType: "MP4", ext: "MP4", size: size})
	s := w.startUpload(t)
	w.feed(t, "over", 0, 0, 3*mib, false)
	w.waitConfirmed(t, "over", 2*mib)
	s.Stop()
	ctx := context.Background()
	if _, err := bus.Update(ctx, w.kv, events.FileJobKey("over"), func(j *events.FileJob, _ bool) error { j.Generation = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	chunks, err := w.js.Stream(ctx, events.StreamChunks)
	if err != nil {
		t.Fatal(err)
	}
	if err := chunks.Purge(ctx, jetstream.WithPurgeSubject(events.ChunkSubject("over"))); err != nil {
		t.Fatal(err)
	}
	w.startUpload(t)
	w.feed(t, "over", 1, 0, size, true)
	if j := w.waitVerified(t, "over"); j.Mismatches != 0 {
		t.Errorf("%d copies did not verify", j.Mismatches)
	}
	w.checkCopy(t, "over")
}

// Bytes missing from the chunk stream on a consumer reused from an earlier worker:
// first a fresh consumer reads the chunks again (an earlier worker's may still be
// pending on the old one); when they are truly gone, the file comes again from Zoom,
// once.
func TestMissingChunksAreReadAgainThenFetchedAgain(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_IDLE": "1s"})
	refetches := w.refetcher(t)
	const size = 4*mib + 5
	w.plan(t, board, spec{key: "gap", fileType: "MP4", ext: "MP4", size: size})
	s := w.startUpload(t)
	w.feed(t, "gap", 0, 0, mib, false)
	s.WaitLog(t, "no chunk for a while; the place goes to another file")
	w.feed(t, "gap", 0, 2*mib, size, true) // [1 MiB, 2 MiB) never comes
	w.waitVerified(t, "gap")
	w.checkCopy(t, "gap")
	again := 0
	for _, l := range s.Logs.Lines() {
		if l["msg"] == "the consumer withholds chunks; reading them again with a new one" {
			again++
		}
	}
	if again != 1 || *refetches != 1 {
		t.Errorf("read again %d times, fetched again %d times; want once each", again, *refetches)
	}
}

// A reused consumer that hands out nothing although the file's chunks wait (here
// paused; a broker that lost track of it does the same) is replaced by a fresh one.
func TestSilentConsumerIsReplaced(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_IDLE": "1s"})
	const size = 3*mib + 9
	w.plan(t, board, spec{key: "mute", fileType: "MP4", ext: "MP4", size: size})
	ctx := context.Background()
	if _, err := w.js.CreateOrUpdateConsumer(ctx, events.StreamChunks, chunkConsumer("mute")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.js.PauseConsumer(ctx, events.StreamChunks, chunkConsumer("mute").Durable, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w.feed(t, "mute", 0, 0, size, true)
	s := w.startUpload(t)
	w.waitVerified(t, "mute")
	w.checkCopy(t, "mute")
	if !strings.Contains(s.Logs.String(), "it delivered nothing for UPLOAD_IDLE") {
		t.Error("the paused consumer was not the one replaced")
	}
}

// A request for the file from byte 0 that a worker noted but could not send before
// it stopped goes out when upload starts again.
func TestNotedRefetchIsSentAfterARestart(t *testing.T) {
	w := newWorld(t, nil)
	refetches := w.refetcher(t)
	w.plan(t, board, spec{key: "noted", fileType: "MP4", ext: "MP4", size: 2*mib + 1})
	ctx := context.Background()
	up, _, err := bus.Claim[upState](ctx, w.kv, events.UploadProgressKey("noted"), "a-stopped-worker", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Save(ctx, func(u *upState) { *u = upState{Generation: 1, Refetch: true} }); err != nil {
		t.Fatal(err)
	}
	up.Release(ctx)
	w.startUpload(t)
	j := w.waitVerified(t, "noted")
	w.checkCopy(t, "noted")
	if *refetches != 1 || j.Generation != 1 {
		t.Errorf("fetch asked %d times, generation %d; want once, 1", *refetches, j.Generation)
	}
}

// The broker failed after the job was recorded verified and before the
// announcement went out: the final chunk is still there, and the next worker
// announces the file from its job, then drops the chunks.
func TestVerifiedButUnannouncedIsAnnounced(t *testing.T) {
	w := newWorld(t, nil)
	jobs := w.plan(t, board, spec{key: "quiet", fileType: "MP4", ext: "MP4", size: 2 * mib})
	ctx := context.Background()
	_, err := bus.Update(ctx, w.kv, events.FileJobKey("quiet"), func(j *events.FileJob, _ bool) error {
		j.State, j.Size, j.MD5 = events.JobVerified, 2*mib, "0123456789abcdef0123456789abcdef"
		j.DriveID, j.DriveLink = "1Drive", "https://drive.google.com/file/d/1Drive/view"
		j.FolderID, j.FolderLink = "1Folder", "https://drive.google.com/drive/folders/1Folder"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.feed(t, "quiet", 0, 2*mib, 2*mib, true)
	w.startUpload(t)
	var got []*jetstream.RawStreamMsg
	waitFor(t, "the announcement", func() bool {
		got = w.archiveEvents(t, events.FileVerifiedSubject("quiet"))
		return len(got) > 0
	})
	var v events.FileVerified
	json.Unmarshal(got[0].Data, &v)
	want := events.FileVerified{Key: "quiet", MeetingUUID: jobs[0].Recording.UUID, FileID: "quiet", Size: 2 * mib,
		MD5: "0123456789abcdef0123456789abcdef", DriveID: "1Drive", DriveLink: "https://drive.google.com/file/d/1Drive/view",
		FolderID: "1Folder", FolderLink: "https://drive.google.com/drive/folders/1Folder"}
	if len(got) != 1 || v != want {
		t.Errorf("%d announcements, %+v; want one, %+v", len(got), v, want)
	}
	waitFor(t, "the chunks dropped", func() bool {
		s, _ := w.js.Stream(ctx, events.StreamChunks)
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

// A replay after the job record was lost: the copy in Drive is found by its tag
// and compared; no second copy.
func TestReplayNeverMakesASecondCopy(t *testing.T) {
	w := newWorld(t, nil)
	w.startUpload(t)
	jobs := w.plan(t, board, spec{key: "dup", fileType: "MP4", ext: "MP4", size: 2*mib + 9})
	w.feedAll(t, jobs)
	first := w.waitVerified(t, "dup")
	received := w.drive.Received()

	w.plan(t, board, spec{key: "dup", fileType: "MP4", ext: "MP4", size: 2*mib + 9})
	w.feedAll(t, jobs)
	again := w.waitVerified(t, "dup")
	w.checkCopy(t, "dup")
	if again.DriveID != first.DriveID || w.drive.Received() != received || w.drive.Sessions() != 1 {
		t.Errorf("replay uploaded again: drive id %s then %s, %d more bytes", first.DriveID, again.DriveID, w.drive.Received()-received)
	}
}

// Drive holds other bytes than were sent: the copy is deleted and the file comes
// again; after UPLOAD_MAX_MISMATCHES the job fails and notify is told.
func TestMD5MismatchDeletesAndRetriesThenFails(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_MAX_MISMATCHES": "2"})
	refetches := w.refetcher(t)
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Corrupt: true})
	w.startUpload(t)
	jobs := w.plan(t, board, spec{key: "bad", fileType: "MP4", ext: "MP4", size: 2*mib + 1}, spec{key: "worse", fileType: "M4A", ext: "M4A", size: 300000}) // one request per copy
	w.feedAll(t, jobs[:1])
	j := w.waitVerified(t, "bad")
	w.checkCopy(t, "bad")
	if j.Mismatches != 1 || *refetches != 1 || !strings.Contains(j.LastError, "verification failed") {
		t.Errorf("job %+v after one bad copy, refetches %d", j, *refetches)
	}

	w.drive.Inject(standins.DriveFault{Kind: "chunk", Corrupt: true, Times: 2})
	w.feedAll(t, jobs[1:])
	waitFor(t, "job failed", func() bool { return w.job(t, "worse").State == events.JobFailed })
	waitFor(t, "failure event", func() bool { return len(w.archiveEvents(t, "archive.file.failed.")) == 1 })
	for _, f := range w.drive.Files() {
		if f.AppProperties["zoomFileKey"] == "worse" {
			t.Error("a copy that did not verify is still in Drive")
		}
	}
}

// A chunk corrupted between fetch and upload (in the broker, on a disk) is caught:
// Drive's MD5 of what it stored is not fetch's of what Zoom served. The copy is
// deleted and the file comes again from Zoom; it was never verified, so fetch
// never trashed the recording for it.
func TestCorruptedChunkIsCaughtAndFetchedAgain(t *testing.T) {
	w := newWorld(t, nil)
	refetches := w.refetcher(t)
	const size = 3*mib + 11
	w.plan(t, board, spec{key: "flip", fileType: "MP4", ext: "MP4", size: size})
	w.startUpload(t)
	w.feed(t, "flip", 0, 0, mib, false)
	bad := make([]byte, mib)
	w.content("flip").ReadAt(bad, mib)
	bad[1234] ^= 0x40
	w.publish(t, events.Chunk{File: "flip", Offset: mib}.Msg(bad))
	w.feed(t, "flip", 0, 2*mib, size, true)
	j := w.waitVerified(t, "flip")
	w.checkCopy(t, "flip")
	if j.Mismatches != 1 || *refetches != 1 || j.Generation != 1 {
		t.Errorf("job %+v, refetches %d; want one bad copy and the file again from Zoom", j, *refetches)
	}
	if n := len(w.archiveEvents(t, "archive.file.verified.")); n != 1 {
		t.Errorf("%d verified events; the bad copy must not count", n)
	}
}

// Two upload processes, six files of one recording at once: every folder once.
func TestFolderRaceMakesNoTwins(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_CONCURRENCY": "3"})
	w.startUpload(t)
	w.startUpload(t)
	var files []spec
	for i := range 6 {
		files = append(files, spec{key: "race-" + string(rune('a'+i)), fileType: "M4A", ext: "M4A", participant: "P" + string(rune('a'+i)), size: 300000})
	}
	jobs := w.plan(t, board, files...)
	w.feedAll(t, jobs)
	for _, j := range jobs {
		w.waitVerified(t, j.Key)
	}
	var names []string
	for _, f := range w.drive.Files() {
		if f.MimeType == folderMime {
			names = append(names, w.drive.Path(f.ID))
		}
	}
	sort.Strings(names)
	if len(names) != 4 {
		t.Errorf("folders: %q", names)
	}
}

// Drive's daily upload cap pauses uploads and alerts once wherever Drive says it:
// where a new upload starts (Drive's way: an upload under way finishes), or on a
// chunk. Nothing more is started or sent while paused, and the file keeps its
// attempts.
func TestDailyCapPausesAndAlerts(t *testing.T) {
	for _, where := range []string{"init", "chunk"} {
		t.Run("refused at "+where, func(t *testing.T) {
			w := newWorld(t, nil)
			w.drive.Inject(standins.DriveFault{Kind: where, Status: 403, Reason: "userRateLimitExceeded", Message: "User rate limit exceeded.", Times: 100})
			s := w.startUpload(t)
			jobs := w.plan(t, board, spec{key: "cap", fileType: "MP4", ext: "MP4", size: 3 * mib})
			w.feedAll(t, jobs)
			waitFor(t, "alert", func() bool { return len(w.archiveEvents(t, "archive.alert.drive_daily_cap")) == 1 })
			if metric(t, s, "zoomarchive_upload_paused") != 1 {
				t.Error("pause not shown in metrics")
			}
			// Drive would take uploads now: a stage that did not pause goes on.
			w.drive.ClearFaults()
			sessions, received := w.drive.Sessions(), w.drive.Received()
			time.Sleep(time.Second)
			if w.drive.Sessions() != sessions || w.drive.Received() != received {
				t.Errorf("uploads went on during the pause: %d sessions, %d bytes, then %d, %d",
					sessions, received, w.drive.Sessions(), w.drive.Received())
			}
			if n := strings.Count(s.Logs.String(), "upload interrupted"); n != 0 {
				t.Errorf("the cap was taken for an interruption %d times", n)
			}
			var a events.Alert
			json.Unmarshal(w.archiveEvents(t, "archive.alert.")[0].Data, &a)
			if a.Until.Before(time.Now()) || !strings.Contains(a.Message, "750 GB") {
				t.Errorf("alert %+v", a)
			}
			if j := w.job(t, "cap"); j.State == events.JobFailed || j.Mismatches != 0 {
				t.Errorf("the cap must not count against the job: %+v", j)
			}
		})
	}
}

func TestStartupChecksSayWhatToFix(t *testing.T) {
	w := newWorld(t, nil)
	try := func(env map[string]string) error {
		e := stagetest.Merge(w.env, env)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return run(ctx, []string{"upload"}, func(k string) string { return e[k] }, os.Stdout, os.Stderr)
	}
	myDrive := w.drive.AddFolder("My Drive folder", false)
	w.token.AllowedSubjects = []string{"archive@example.org"}
	// A key whose token_uri answers something other than Google's error JSON.
	otherTokenURI := filepath.Join(t.TempDir(), "key.json")
	os.WriteFile(otherTokenURI, standins.KeyJSON(w.token.Key, w.token.Email, w.drive.URL()+"no-token"), 0o600)
	cases := map[string]struct {
		env  map[string]string
		want string
	}{
		"no such folder":          {map[string]string{"DRIVE_FOLDER_ID": "nope"}, "no such folder visible to the service account"},
		"no storage":              {map[string]string{"DRIVE_FOLDER_ID": myDrive}, "service accounts have no storage"},
		"delegation refused":      {map[string]string{"DRIVE_IMPERSONATE": "someone@example.org"}, "unauthorized_client"},
		"not a token endpoint":    {map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": otherTokenURI}, "google refused the token: HTTP 4"},
		"not a key":               {map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": "/etc/hostname"}, "not a service account key"},
		"missing and invalid":     {map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": "", "DRIVE_FOLDER_ID": "", "DRIVE_CHUNK_SIZE": "1000000"}, "3 setting(s)"},
		"sharing without domains": {map[string]string{"DRIVE_SHARE_HOST": "commenter"}, "DRIVE_SHARE_DOMAINS: DRIVE_SHARE_HOST shares with hosts of these domains only"},
		"sharing as an editor":    {map[string]string{"DRIVE_SHARE_HOST": "writer", "DRIVE_SHARE_DOMAINS": "theatre.example"}, `"writer" is not off, reader or commenter`},
	}
	for name, c := range cases {
		err := try(c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// Acting as a delegated user in that user's My Drive is fine, and the token
	// asked for is Drive's scope only, for that user.
	w.startUploadWith(t, map[string]string{"DRIVE_FOLDER_ID": myDrive, "DRIVE_IMPERSONATE": "archive@example.org"})
	grants := w.token.Grants()
	last := grants[len(grants)-1]
	if last.Subject != "archive@example.org" || len(last.Scopes) != 1 || last.Scopes[0] != "https://www.googleapis.com/auth/drive" {
		t.Errorf("token granted for %+v", last)
	}
}

func (w *world) startUploadWith(t *testing.T, extra map[string]string) *stagetest.Stage {
	s := stagetest.Start(t, "upload", run, stagetest.Merge(w.env, extra))
	s.WaitLog(t, "ready")
	return s
}

func TestNamesAndTags(t *testing.T) {
	job := events.FileJob{Key: "k", Recording: events.RecordingInfo{Topic: "Line\nbreak / slash\x00 " + strings.Repeat("ä", 200),
		StartTime: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), MeetingID: 1234567890, UUID: strings.Repeat("u", 200)},
		File: events.RecordingFile{FileType: "MP4", FileExtension: "MP4", RecordingType: "speaker_view_new"}}
	name := fileName(job, 0, time.UTC)
	if strings.ContainsAny(name, "\n\x00/") || utf8.RuneCountInString(name) > 160 || !strings.HasSuffix(name, ".mp4") {
		t.Errorf("name %q", name)
	}
	def, _ := parseTemplate(defaultLayout)
	if got := (layout{tmpl: def}).place(job.Recording, time.UTC).folders[2]; !strings.HasSuffix(got, "(123 456 7890)") {
		t.Errorf("folder %q", got)
	}
	for k, v := range tags(job, true) {
		if len(k)+len(v) > 124 || !utf8.ValidString(v) {
			t.Errorf("tag %s=%q", k, v)
		}
	}
	if q := escapeQ(`it's a \ test`); q != `it\'s a \\ test` {
		t.Errorf("escaped %q", q)
	}
}

// upload check proves the broker and a file written into the Drive folder as the
// configured identity, and names the folder that is not there.
func TestCheckWritesToTheFolder(t *testing.T) {
	w := newWorld(t, nil)
	out, err := stagetest.Command(run, w.env, "upload", "check")
	if err != nil || strings.Count(out, "upload: ok ") != 2 {
		t.Fatalf("a good deployment: %v\n%s", err, out)
	}
	if n := len(w.drive.Files()); n != 1 { // the folder alone: the probe is deleted
		t.Errorf("Drive holds %d files after the check, want the folder alone", n)
	}
	out, err = stagetest.Command(run, stagetest.Merge(w.env, map[string]string{"DRIVE_FOLDER_ID": "1NoSuchFolder"}), "upload", "check")
	if err == nil || !strings.Contains(out, "upload: FAIL Drive") || !strings.Contains(out, "no such folder") {
		t.Errorf("a folder that is not there: %v\n%s", err, out)
	}
}
