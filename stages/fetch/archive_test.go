package main

import (
	"strings"
	"testing"
	"time"

	"zoomarchive/shared/events"
)

// The trash decision, case by case: what the facts say, what decide answers.
func TestTrashDecision(t *testing.T) {
	now := time.Date(2026, 3, 14, 20, 0, 0, 0, time.UTC)
	video := events.RecordingFile{ID: "v1", FileType: "MP4", FileSize: 1000, Status: events.FileCompleted, DownloadURL: "https://zoom.us/rec/download/v1"}
	audio := events.RecordingFile{ID: "a1", FileType: "M4A", FileSize: 200, Status: events.FileCompleted, DownloadURL: "https://zoom.us/rec/download/a1"}
	transcript := events.RecordingFile{ID: "t1", FileType: "TRANSCRIPT", FileSize: 50, Status: events.FileCompleted, DownloadURL: "https://zoom.us/rec/download/t1"}
	uuid := "uuid=="
	read := func(f events.RecordingFile) events.FileFacts {
		return events.FileFacts{Key: f.ID, File: f, Planned: 1, Read: 1, Size: int64(f.FileSize), MD5: "md5-" + f.ID}
	}
	proven := func(f events.RecordingFile) driveProof {
		return driveProof{claimed: true, found: true, inside: true, size: int64(f.FileSize), md5: "md5-" + f.ID}
	}
	// base: two files verified, read by fetch, listed by Zoom as read, proven in Drive.
	base := func() trashFacts {
		return trashFacts{
			rec:    events.RecordingJob{Key: "k", Files: []string{"v1", "a1"}, State: events.RecArchiving},
			claims: map[string]events.FileJob{"v1": {State: events.JobVerified, DriveID: "d-v1"}, "a1": {State: events.JobVerified, DriveID: "d-a1"}},
			own:    map[string]events.FileFacts{"v1": read(video), "a1": read(audio)},
			zoom:   events.Recording{UUID: uuid, HostID: "h", RecordingFiles: []events.RecordingFile{video, audio}},
			proofs: map[string]driveProof{"v1": proven(video), "a1": proven(audio)},
			now:    now,
		}
	}
	trash := policy{action: "trash"}
	yes, no := true, false
	cases := []struct {
		name   string
		change func(*trashFacts)
		p      policy
		want   outcome
		reason string // for a hold: words the reason must hold
	}{
		{"everything proven", nil, trash, outcome{act: actTrash}, ""},
		{"delete", nil, policy{action: "delete"}, outcome{act: actDelete}, ""},
		{"keep: nothing leaves Zoom, nothing to prove", func(f *trashFacts) { f.proofs = nil }, policy{action: "keep"}, outcome{act: actKeep}, ""},
		{"archived already", func(f *trashFacts) { f.rec.State = events.RecArchived }, trash, outcome{act: actDone}, ""},
		{"a file not verified", func(f *trashFacts) { f.claims["a1"] = events.FileJob{State: events.JobFetched} }, trash, outcome{act: actPending}, ""},
		{"gone from Zoom: nothing to lose", func(f *trashFacts) { f.gone, f.zoom, f.proofs = true, events.Recording{}, nil }, trash, outcome{act: actTrash}, ""},
		{"Zoom still making a file", func(f *trashFacts) {
			f.zoom.RecordingFiles = append(f.zoom.RecordingFiles, events.RecordingFile{ID: "x", FileType: "MP4", Status: "processing"})
		}, trash, outcome{act: actWait, until: now.Add(zoomRecheck), reason: "Zoom is still making a MP4 file"}, ""},
		{"a file Zoom lists that no event announced", func(f *trashFacts) {
			f.zoom.RecordingFiles = append(f.zoom.RecordingFiles, transcript)
		}, trash, outcome{act: actPending}, ""},
		{"a file of a type not archived is not waited for", func(f *trashFacts) {
			f.zoom.RecordingFiles = append(f.zoom.RecordingFiles, transcript)
		}, policy{action: "trash", types: map[string]bool{"MP4": true, "M4A": true}}, outcome{act: actTrash}, ""},
		{"a file without a download link", func(f *trashFacts) {
			nolink := transcript
			nolink.DownloadURL = ""
			f.zoom.RecordingFiles = append(f.zoom.RecordingFiles, nolink)
		}, trash, outcome{act: actHold}, "without a download link"},
		{"Zoom lists another size than was planned", func(f *trashFacts) { f.zoom.RecordingFiles[0].FileSize = 999 }, trash, outcome{act: actHold}, "otherwise than it was archived"},
		{"Zoom lists another type than was planned", func(f *trashFacts) { f.zoom.RecordingFiles[1].FileType = "MP4" }, trash, outcome{act: actHold}, "otherwise than it was archived"},
		{"verified, but fetch has not read it", func(f *trashFacts) { own := f.own["a1"]; own.MD5 = ""; f.own["a1"] = own }, trash, outcome{act: actRefetch, keys: []string{"a1"}}, ""},
		{"read under an earlier plan", func(f *trashFacts) { own := f.own["v1"]; own.Planned = 2; f.own["v1"] = own }, trash, outcome{act: actRefetch, keys: []string{"v1"}}, ""},
		{"read fewer bytes than Zoom lists", func(f *trashFacts) { own := f.own["v1"]; own.Size = 10; f.own["v1"] = own }, trash, outcome{act: actRefetch, keys: []string{"v1"}}, ""},
		{"the retention hold begins", nil, policy{action: "trash", hold: 48 * time.Hour},
			outcome{act: actWait, until: now.Add(48 * time.Hour), reason: "the retention hold (ZOOM_TRASH_AFTER)", trashAt: now.Add(48 * time.Hour)}, ""},
		{"the retention hold goes on", func(f *trashFacts) { f.rec.TrashAt = now.Add(time.Hour) }, policy{action: "trash", hold: 48 * time.Hour},
			outcome{act: actWait, until: now.Add(time.Hour), reason: "the retention hold (ZOOM_TRASH_AFTER)"}, ""},
		{"the retention hold is over", func(f *trashFacts) { f.rec.TrashAt = now }, policy{action: "trash", hold: 48 * time.Hour}, outcome{act: actTrash}, ""},
		{"over, Drive not asked yet", func(f *trashFacts) { f.rec.TrashAt, f.proofs = now, nil }, policy{action: "trash", hold: time.Hour}, outcome{act: actAsk, ask: factProofs}, ""},
		{"Drive not asked yet", func(f *trashFacts) { f.proofs = nil }, trash, outcome{act: actAsk, ask: factProofs}, ""},
		{"no Drive copy named", func(f *trashFacts) { f.proofs["a1"] = driveProof{} }, trash, outcome{act: actHold}, "has no Drive copy"},
		{"no Drive copy", func(f *trashFacts) { f.proofs["a1"] = driveProof{claimed: true} }, trash, outcome{act: actHold}, "Drive has no copy of the M4A file"},
		{"the copy in Drive's trash", func(f *trashFacts) { p := f.proofs["v1"]; p.trashed = true; f.proofs["v1"] = p }, trash, outcome{act: actHold}, "in Drive's trash"},
		{"the copy outside the archive", func(f *trashFacts) { p := f.proofs["v1"]; p.inside = false; f.proofs["v1"] = p }, trash, outcome{act: actHold}, "not inside the archive folder"},
		{"other bytes in Drive", func(f *trashFacts) { p := f.proofs["v1"]; p.md5 = "other"; f.proofs["v1"] = p }, trash, outcome{act: actHold}, "is not what fetch read from Zoom"},
		{"another size in Drive", func(f *trashFacts) { p := f.proofs["v1"]; p.size--; f.proofs["v1"] = p }, trash, outcome{act: actHold}, "999 bytes"},
		{"a file no longer in Zoom, kept before fetch kept facts", func(f *trashFacts) {
			f.rec.Files = append(f.rec.Files, "old")
			f.claims["old"] = events.FileJob{State: events.JobVerified}
		}, trash, outcome{act: actTrash}, ""},
		// The transcript the host's settings promise.
		{"transcript: the host's setting not asked yet", nil, policy{action: "trash", transcriptWait: 24 * time.Hour}, outcome{act: actAsk, ask: factTranscribes}, ""},
		{"transcript: the host does not transcribe", func(f *trashFacts) { f.transcribes = &no }, policy{action: "trash", transcriptWait: 24 * time.Hour}, outcome{act: actTrash}, ""},
		{"transcript: the wait begins", func(f *trashFacts) { f.transcribes = &yes }, policy{action: "trash", transcriptWait: 24 * time.Hour},
			outcome{act: actWait, until: now.Add(zoomRecheck), reason: "the transcript Zoom is making", transcriptDue: now.Add(24 * time.Hour)}, ""},
		{"transcript: waiting", func(f *trashFacts) { f.rec.TranscriptDue = now.Add(time.Minute) }, policy{action: "trash", transcriptWait: 24 * time.Hour},
			outcome{act: actWait, until: now.Add(time.Minute), reason: "the transcript Zoom is making"}, ""},
		{"transcript: never came, then the retention hold", func(f *trashFacts) { f.rec.TranscriptDue = now }, policy{action: "trash", transcriptWait: 24 * time.Hour, hold: time.Hour},
			outcome{act: actWait, until: now.Add(time.Hour), reason: "the retention hold (ZOOM_TRASH_AFTER)", trashAt: now.Add(time.Hour), noTranscript: true}, ""},
		{"transcript: never came", func(f *trashFacts) { f.rec.TranscriptDue = now.Add(-time.Minute) }, policy{action: "trash", transcriptWait: 24 * time.Hour},
			outcome{act: actTrash, noTranscript: true}, ""},
		{"transcript: given up on before", func(f *trashFacts) { f.rec.NoTranscript = true }, policy{action: "trash", transcriptWait: 24 * time.Hour}, outcome{act: actTrash}, ""},
		{"transcript: not archived, not waited for", nil, policy{action: "trash", transcriptWait: 24 * time.Hour, types: map[string]bool{"MP4": true, "M4A": true}}, outcome{act: actTrash}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			if c.change != nil {
				c.change(&f)
			}
			got := decide(f, c.p)
			reason := got.reason
			if c.reason != "" {
				if !strings.Contains(got.reason, c.reason) {
					t.Errorf("reason %q, want it to say %q", got.reason, c.reason)
				}
				got.reason = ""
			}
			if got.act != c.want.act || !got.until.Equal(c.want.until) || got.reason != c.want.reason || got.ask != c.want.ask ||
				strings.Join(got.keys, ",") != strings.Join(c.want.keys, ",") || !got.trashAt.Equal(c.want.trashAt) ||
				!got.transcriptDue.Equal(c.want.transcriptDue) || got.noTranscript != c.want.noTranscript {
				got.reason = reason
				t.Errorf("decide = %+v\nwant     %+v", got, c.want)
			}
		})
	}
}
