package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// Refusals a retry does not cure: each is counted, reported once and stopped, and
// what can clear says so when it does.

func (w *world) alerts(t *testing.T, kind string) (raised, resolved []events.Alert) {
	return stagetest.Alerts(t, w.natsURL, kind)
}

// Drive full, from the start of a session or in the middle of a file: uploads wait
// (no loop of new sessions), the admins hear of it once, and when there is room
// again the files go on by themselves and the alert is resolved once.
func TestFullDriveAlertsOnceAndGoesOnWhenThereIsRoom(t *testing.T) {
	for name, midFile := range map[string]bool{"at the session's start": false, "in the middle of a file": true} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, map[string]string{"UPLOAD_RECHECK": "300ms"})
			s := w.startUpload(t)
			if midFile {
				w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "storageQuotaExceeded",
					Message: "The user's Drive storage quota has been exceeded.", Times: 1000})
			} else {
				w.drive.SetFull(true)
			}
			jobs := w.plan(t, board, spec{key: "full1", fileType: "MP4", ext: "MP4", size: 3 * mib}, spec{key: "full2", fileType: "M4A", ext: "M4A", size: mib / 2})
			w.feedAll(t, jobs)
			defer func() {
				if t.Failed() {
					t.Log(s.Logs.String())
				}
			}()
			waitFor(t, "the alert", func() bool { raised, _ := w.alerts(t, events.AlertDriveFull); return len(raised) == 1 })
			time.Sleep(2 * time.Second) // several rechecks
			raised, _ := w.alerts(t, events.AlertDriveFull)
			if len(raised) != 1 || !strings.Contains(raised[0].Message, "Free space") {
				t.Errorf("%d alerts (%+v), want one saying what to do", len(raised), raised)
			}
			sessions := metric(t, s, "zoomarchive_upload_sessions_total")
			if sessions > 2 {
				t.Errorf("%v sessions while Drive was full, want at most one a file", sessions)
			}
			for _, j := range jobs {
				if got := w.job(t, j.Key); got.State == events.JobFailed {
					t.Errorf("%s failed for want of room: %s", j.Key, got.LastError)
				}
			}

			w.drive.ClearFaults()
			w.drive.SetFull(false)
			for _, j := range jobs {
				w.waitVerified(t, j.Key)
				w.checkCopy(t, j.Key)
			}
			waitFor(t, "resolved", func() bool { _, resolved := w.alerts(t, events.AlertDriveFull); return len(resolved) == 1 })
			if got := metric(t, s, "zoomarchive_upload_sessions_total"); got != sessions && midFile {
				t.Errorf("a session refused for room was replaced (%v sessions, then %v), want it kept", sessions, got)
			}
		})
	}
}

// A refusal no new session cures (here: the account lost its right to the
// folder) fails the file after UPLOAD_MAX_REFUSALS sessions, with Drive's words,
// and nothing more is sent for it.
func TestRefusedForGoodFailsAfterBoundedSessions(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_MAX_REFUSALS": "3"})
	s := w.startUpload(t)
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "insufficientFilePermissions",
		Message: "The user does not have sufficient permissions for this file.", Times: 1000})
	jobs := w.plan(t, board, spec{key: "refused", fileType: "MP4", ext: "MP4", size: 2 * mib})
	w.feedAll(t, jobs)
	waitFor(t, "failed", func() bool { return w.job(t, "refused").State == events.JobFailed })
	waitFor(t, "failure announced", func() bool { return len(w.archiveEvents(t, "archive.file.failed.")) == 1 })
	var f events.FileFailed
	json.Unmarshal(w.archiveEvents(t, "archive.file.failed.")[0].Data, &f)
	if !strings.Contains(f.Reason, "insufficientFilePermissions") || f.Replay == "" {
		t.Errorf("failure %+v, want Drive's reason and the replay command", f)
	}
	sessions, received := metric(t, s, "zoomarchive_upload_sessions_total"), w.drive.Received()
	if sessions != 3 {
		t.Errorf("%v sessions, want 3", sessions)
	}
	time.Sleep(time.Second)
	if got := metric(t, s, "zoomarchive_upload_sessions_total"); got != sessions || w.drive.Received() != received {
		t.Errorf("went on after failing the file: %v sessions, %d more bytes", got, w.drive.Received()-received)
	}
}

// Drive's refusals of a file that no new session cures are kept in its resume
// record: a worker that takes the file over after a restart goes on counting
// where the stopped one was, instead of granting Drive UPLOAD_MAX_REFUSALS more.
func TestRefusalsAreCountedAcrossARestart(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_MAX_REFUSALS": "3"})
	w.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "insufficientFilePermissions",
		Message: "The user does not have sufficient permissions for this file.", Times: 1000})
	jobs := w.plan(t, board, spec{key: "refused", fileType: "MP4", ext: "MP4", size: 2 * mib})
	// A worker stopped after Drive had refused the file in one session.
	ctx := context.Background()
	up, _, err := bus.Claim[upState](ctx, w.kv, events.UploadProgressKey("refused"), "a-stopped-worker", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Save(ctx, func(u *upState) { *u = upState{Generation: jobs[0].Generation, Refusals: 1} }); err != nil {
		t.Fatal(err)
	}
	up.Release(ctx)
	s := w.startUpload(t)
	w.feedAll(t, jobs)
	waitFor(t, "failed", func() bool { return w.job(t, "refused").State == events.JobFailed })
	if n := w.drive.Sessions(); n != 2 {
		t.Errorf("%d sessions after the restart, want 2: one refusal was counted before it", n)
	}
	if n := metric(t, s, `zoomarchive_upload_sessions_dropped_total{reason="refused"}`); n != 1 {
		t.Errorf("%v sessions dropped as refused, want 1", n)
	}
}

// Refusals count in a row: a new session Drive takes bytes from cures the ones
// before, and a later refusal starts the count again instead of failing the file.
func TestRefusalCuredByANewSessionIsNotCountedAgain(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_MAX_REFUSALS": "2"})
	refetches := w.refetcher(t)
	refuse := standins.DriveFault{Kind: "chunk", Status: 403, Reason: "insufficientFilePermissions",
		Message: "The user does not have sufficient permissions for this file."}
	w.drive.Inject(refuse)
	w.drive.Inject(standins.DriveFault{Kind: "chunk"}) // taken: a new session's first chunk
	w.drive.Inject(refuse)
	w.startUpload(t)
	jobs := w.plan(t, board, spec{key: "cured", fileType: "MP4", ext: "MP4", size: 3 * mib})
	w.feedAll(t, jobs)
	w.waitVerified(t, "cured")
	w.checkCopy(t, "cured")
	if *refetches != 1 {
		t.Errorf("fetch asked %d times, want once: the second refusal came after bytes were confirmed", *refetches)
	}
}

// Google refuses the key (deleted): uploads wait, /readyz fails so compose shows
// it, one alert; the key back, the file goes through and the alert is resolved.
func TestRevokedKeyFailsReadinessAndAlertsOnce(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_RECHECK": "300ms"})
	w.token.TokenTTL = 11 * time.Second // renewed a second after it is issued
	s := w.startUpload(t)
	addr := s.WaitLog(t, "ready")["metrics"].(string)
	defer func() {
		if t.Failed() {
			t.Log(s.Logs.String())
		}
	}()
	w.token.Revoke(true)
	jobs := w.plan(t, board, spec{key: "revoked", fileType: "MP4", ext: "MP4", size: mib})
	w.feedAll(t, jobs)
	waitFor(t, "the alert", func() bool { raised, _ := w.alerts(t, events.AlertDriveRefused); return len(raised) == 1 })
	if err := obs.Probe(context.Background(), addr, "/readyz"); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("readyz with the key refused: %v, want a failure naming it", err)
	}
	time.Sleep(2 * time.Second)
	if raised, _ := w.alerts(t, events.AlertDriveRefused); len(raised) != 1 {
		t.Errorf("%d alerts, want 1", len(raised))
	}
	if j := w.job(t, "revoked"); j.State == events.JobFailed {
		t.Errorf("failed for a refused key: %s", j.LastError)
	}

	w.token.Revoke(false)
	w.waitVerified(t, "revoked")
	waitFor(t, "resolved", func() bool { _, resolved := w.alerts(t, events.AlertDriveRefused); return len(resolved) == 1 })
	if err := obs.Probe(context.Background(), addr, "/readyz"); err != nil {
		t.Errorf("readyz after the key came back: %v", err)
	}
}

// Every answer of Drive's means one thing, wherever it comes (a session's start,
// a chunk, a status query, a metadata call): decided on status and reason, and on
// the message only where Drive's reason is shared by two limits.
func TestClassifyDrivesAnswers(t *testing.T) {
	drive := func(status int, reason, message string) error {
		return fmt.Errorf("drive session start: %w", &googleapi.Error{Code: status, Errors: []googleapi.ErrorItem{{Reason: reason, Message: message}}})
	}
	for _, c := range []struct {
		name string
		err  error
		want driveAnswer
	}{
		{"the daily upload cap", drive(403, "userRateLimitExceeded", "User rate limit exceeded."), driveDailyCap},
		{"the per-user rate limit", drive(403, "userRateLimitExceeded", "User Rate Limit Exceeded"), driveRetry},
		{"the project's rate limit", drive(403, "rateLimitExceeded", "Rate Limit Exceeded"), driveRetry},
		{"too many requests", drive(429, "rateLimitExceeded", ""), driveRetry},
		{"backend error", drive(503, "backendError", ""), driveRetry},
		{"request timeout", drive(408, "", ""), driveRetry},
		{"a full Drive", drive(403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded."), driveFull},
		{"no right to the folder", drive(403, "insufficientFilePermissions", "The user does not have sufficient permissions for this file."), driveRefused},
		{"no such parent", drive(404, "notFound", "File not found."), driveRefused},
		{"a bad request", drive(400, "badRequest", ""), driveRefused},
		{"the key refused", &url.Error{Op: "Post", URL: "https://oauth2.example/token", Err: &oauth2.RetrieveError{ErrorCode: "invalid_grant"}}, driveKeyRefused},
		{"the session gone", fmt.Errorf("resume: %w", errSessionGone), driveSessionGone},
		{"a cut connection", io.ErrUnexpectedEOF, driveRetry},
		{"words are not a reason", errors.New("User rate limit exceeded."), driveRetry},
	} {
		if got := classifyDrive(c.err); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
