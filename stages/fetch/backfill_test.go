package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// An account with four users (one inactive, one without recordings) and 240
// recordings over 14 months, plus some outside the range asked for.
func backfillAccount(w *world) (inRange map[string]events.Recording, files int, bytes int64) {
	users := []standins.ZoomUser{{ID: "u1", Email: "anna@example.org", Status: "active"}, {ID: "u2", Email: "bert@example.org", Status: "active"},
		{ID: "u3", Email: "cleo@example.org", Status: "inactive"}, {ID: "u4", Email: "dan@example.org", Status: "active"}}
	for _, u := range users {
		w.zoom.AddUser(u)
	}
	inRange = map[string]events.Recording{}
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 2, 28, 23, 59, 0, 0, time.UTC)
	for i := range 260 {
		u := users[i%3]
		start := from.Add(time.Duration(i) * 41 * time.Hour) // about every two days, past the end for the last ones
		if i%50 == 7 {
			start = from.AddDate(0, 0, -3) // before the range
		}
		rec := w.zoom.AddRecording(events.Recording{UUID: fmt.Sprintf("bf%03d/x==", i), ID: events.Int64(80000000000 + i), HostID: u.ID,
			HostEmail: u.Email, Topic: fmt.Sprintf("Meeting %d", i), Type: 2, StartTime: start, Duration: 30},
			standins.FileSpec{ID: fmt.Sprintf("bf%03d-mp4", i), FileType: "MP4", Extension: "MP4", RecordingType: "active_speaker", Size: int64(1000 + i)},
			standins.FileSpec{ID: fmt.Sprintf("bf%03d-vtt", i), FileType: "TRANSCRIPT", Extension: "VTT", RecordingType: "audio_transcript", Size: 10})
		if !start.Before(from) && !start.After(to) {
			inRange[rec.UUID] = rec
			files += 2
			bytes += int64(1000+i) + 10
		}
	}
	w.zoom.RaggedPages = true
	return inRange, files, bytes
}

func (w *world) backfill(ctx context.Context, args ...string) (string, error) {
	out := &stagetest.Logs{} // written by the log and the progress lines at once
	err := run(ctx, append([]string{"fetch", "backfill", "--page-size", "7", "--rate", "0"}, args...),
		func(k string) string { return w.env[k] }, out, out)
	return out.String(), err
}

// queuedUUIDs are the recordings backfill put on ZOOM_EVENTS, with how often.
func (w *world) queuedUUIDs(t *testing.T) map[string]int {
	got := map[string]int{}
	for _, m := range stagetest.StreamMsgs(t, w.natsURL, events.StreamZoomEvents) {
		var env events.Envelope
		var p events.RecordingPayload
		json.Unmarshal(m.Data, &env)
		json.Unmarshal(env.Payload, &p)
		if m.Header.Get(events.HeaderBackfill) != "true" {
			t.Errorf("%s not marked as backfill", p.Object.UUID)
		}
		got[p.Object.UUID]++
	}
	return got
}

func TestBackfillQueuesExactlyTheRange(t *testing.T) {
	w := newWorld(t, nil)
	want, _, _ := backfillAccount(w)
	out, err := w.backfill(context.Background(), "--from", "2025-01-01", "--to", "2026-02-28")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := w.queuedUUIDs(t)
	if len(got) != len(want) {
		t.Errorf("queued %d recordings, want %d", len(got), len(want))
	}
	for uuid := range want {
		if got[uuid] != 1 {
			t.Errorf("%s queued %d times", uuid, got[uuid])
		}
	}
	if !strings.Contains(out, fmt.Sprintf("%d recordings queued", len(want))) {
		t.Errorf("output:\n%s", out)
	}
	// Windows of a month at most, following every page (the stand-in refuses more).
	pages := 0
	for _, c := range w.zoom.Calls() {
		if strings.HasSuffix(c.Path, "/recordings") && strings.HasPrefix(c.Path, "/v2/users/") {
			pages++
			if c.Status != 200 {
				t.Fatalf("%s?%s answered %d", c.Path, c.Query, c.Status)
			}
		}
	}
	if pages < 14*4 {
		t.Errorf("only %d list requests for 4 users over 14 months", pages)
	}

	// A second run queues nothing new.
	if out, err := w.backfill(context.Background(), "--from", "2025-01-01", "--to", "2026-02-28"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := len(stagetest.StreamMsgs(t, w.natsURL, events.StreamZoomEvents)); n != len(want) {
		t.Errorf("after a second run %d events, want %d", n, len(want))
	}
}

// Interrupted, then run again: it goes on from its cursor and the set is complete.
func TestBackfillResumesAfterInterruption(t *testing.T) {
	w := newWorld(t, nil)
	want, _, _ := backfillAccount(w)
	// A dry run lists every page once: what a whole run costs.
	if _, err := w.backfill(context.Background(), "--from", "2025-01-01", "--to", "2026-02-28", "--dry-run"); err != nil {
		t.Fatal(err)
	}
	whole := w.zoom.CallsTo("GET", "/v2/users/")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for len(stagetest.StreamMsgs(t, w.natsURL, events.StreamZoomEvents)) < 60 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := w.backfill(ctx, "--from", "2025-01-01", "--to", "2026-02-28"); err == nil {
		t.Fatal("the interrupted run reported success")
	}
	wg.Wait()
	first := w.zoom.CallsTo("GET", "/v2/users/") - whole
	out, err := w.backfill(context.Background(), "--from", "2025-01-01", "--to", "2026-02-28")
	if err != nil || !strings.Contains(out, "going on from an interrupted backfill") {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := w.queuedUUIDs(t); len(got) != len(want) {
		t.Errorf("queued %d distinct recordings, want %d", len(got), len(want))
	}
	// Going on from the cursor, only the window under way is listed twice.
	if second := w.zoom.CallsTo("GET", "/v2/users/") - whole - first; first+second > whole+6 {
		t.Errorf("the two runs listed %d+%d pages, a whole run %d: the second did not go on from the cursor", first, second, whole)
	}
}

func TestBackfillDryRunTotals(t *testing.T) {
	w := newWorld(t, nil)
	want, files, size := backfillAccount(w)
	out, err := w.backfill(context.Background(), "--from", "2025-01-01", "--to", "2026-02-28", "--dry-run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	total := fmt.Sprintf("%-36s %10d %6d %14d %9d", "total", len(want), files, size, 0)
	if !strings.Contains(out, total) || !strings.Contains(out, "cleo@example.org (inactive)") {
		t.Errorf("dry run says:\n%s\nwant the line %q", out, total)
	}
	if n := len(stagetest.StreamMsgs(t, w.natsURL, events.StreamZoomEvents)); n != 0 {
		t.Errorf("a dry run queued %d events", n)
	}
}

// Zoom's rate limit slows the backfill down instead of failing it.
func TestBackfillWaitsOutRateLimits(t *testing.T) {
	w := newWorld(t, nil)
	want, _, _ := backfillAccount(w)
	w.zoom.Inject(standins.Fault{Path: "/v2/users/", Status: 429, RetryAfter: time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339), Times: 3})
	start := time.Now()
	out, err := w.backfill(context.Background(), "--from", "2025-01-01", "--to", "2026-02-28", "--user", "bert@example.org")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	n := 0
	for _, rec := range want {
		if rec.HostID == "u2" {
			n++
		}
	}
	if got := len(w.queuedUUIDs(t)); got != n {
		t.Errorf("queued %d of bert's %d recordings", got, n)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Error("the 429s were not waited out")
	}
}
