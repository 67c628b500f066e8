package main

import (
	"context"
	"crypto/md5"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// fetch killed with SIGKILL in the middle of a file: the next fetch continues from
// the checkpoint with a Range request within seconds of its start (the production
// FETCH_ACK_WAIT and FETCH_LEASE), and upload receives every byte once.
func TestKilledFetchResumesWithoutDuplicates(t *testing.T) {
	w := newWorld(t, map[string]string{"CHUNK_WINDOW": "8MiB", "FETCH_ACK_WAIT": "60s", "FETCH_LEASE": "6s"})
	rec := w.meeting("uuid-kill", "Kill", standins.FileSpec{ID: "kill-1", FileType: "MP4", Extension: "MP4", Size: 24 * mib})
	p := stagetest.StartProcess(t, "fetch", w.env)
	p.WaitLog(t, "ready")
	w.send(t, events.EventRecordingCompleted, rec)
	// No upload yet: fetch fills the 8 MiB window and waits, mid-file.
	var at int64
	waitFor(t, "fetch mid-file", func() bool {
		pr, found, _ := bus.Peek[progress](context.Background(), w.kv, events.FetchProgressKey("kill-1"))
		at = pr.Offset
		return found && pr.Offset >= 6*mib
	})
	p.Kill()
	// What the CDN wrote before the kill includes what sat in socket buffers; the
	// resume is judged by what it asks for after.
	servedBefore := w.zoom.BytesServed()
	waitFor(t, "the cut download to end", func() bool {
		time.Sleep(100 * time.Millisecond)
		n := w.zoom.BytesServed()
		defer func() { servedBefore = n }()
		return n == servedBefore
	})

	up := w.startUploader(t)
	restarted := time.Now()
	w.startFetch(t)
	f := up.whole(t, "kill-1", w.zoom.Content("kill-1"))
	if f.gen != 0 {
		t.Errorf("generation %d: the file started over instead of resuming", f.gen)
	}
	var resumed bool
	for _, c := range w.zoom.Calls() {
		var from int64
		if strings.HasPrefix(c.Path, "/file/") && c.Range != "" {
			fmt.Sscanf(c.Range, "bytes=%d-", &from)
			resumed = resumed || from >= at
			if took := c.At.Sub(restarted); from >= at && took > 10*time.Second {
				t.Errorf("the file was taken over %s after the restart, want within 10s", took.Round(time.Millisecond))
			}
		}
	}
	if !resumed {
		t.Errorf("no Range request from the checkpoint (%d); calls: %+v", at, w.zoom.Calls())
	}
	if again := w.zoom.BytesServed() - servedBefore; again > 24*mib-at+mib {
		t.Errorf("Zoom served %d bytes after the restart, the checkpoint at %d of %d: the resume re-downloaded too much", again, at, 24*mib)
	}
}

// Several fetch workers and several recordings: each file fetched once, each
// recording trashed once, and only after all its files are verified.
func TestTwoFetchProcessesTrashEachRecordingOnce(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_CONCURRENCY": "2"})
	w.startFetch(t)
	w.startFetch(t)
	up := w.startUploader(t)
	var recs []events.Recording
	for i := range 4 {
		uuid := fmt.Sprintf("/multi%d//x+y==", i) // encoded twice in paths
		if i%2 == 1 {
			uuid = fmt.Sprintf("mid%d/dle+x==", i) // once
		}
		var files []standins.FileSpec
		for j, f := range boardMeetingFiles()[:4] {
			f.ID = fmt.Sprintf("m%d-f%d", i, j)
			files = append(files, f)
		}
		recs = append(recs, w.meeting(uuid, fmt.Sprintf("Meeting %d", i), files...))
	}
	for _, rec := range recs {
		w.send(t, events.EventRecordingCompleted, rec)
		w.send(t, events.EventRecordingCompleted, rec) // Zoom's retry, stored twice by mistake
	}
	for _, rec := range recs {
		for _, key := range keys(rec) {
			up.whole(t, key, contentOf(w, rec, key))
		}
	}
	waitFor(t, "all archived", func() bool { return len(w.archiveEvents(t, "archive.recording.archived.")) == len(recs) })
	time.Sleep(300 * time.Millisecond)
	for _, rec := range recs {
		n := 0
		seg, _ := url.PathUnescape(strings.TrimPrefix(meetingPath(rec.UUID), "/meetings/")) // as the server logs it
		for _, c := range w.zoom.Calls() {
			if c.Method == "DELETE" && c.Path == "/v2/meetings/"+seg+"/recordings" {
				n++
			}
		}
		if trashed, _ := w.zoom.Trashed(rec.UUID); !trashed || n != 1 {
			t.Errorf("%s: trashed %v after %d calls, want once", rec.UUID, trashed, n)
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for key, f := range up.files {
		if f.dups > 0 || f.gen != 0 {
			t.Errorf("%s fetched more than once: %d duplicate chunks, generation %d", key, f.dups, f.gen)
		}
	}
}

// Two work messages for one file (a replay, or a plan redone after a crash) reach
// two workers of one process: the one holding the lease downloads, the other waits.
func TestSecondMessageForAFileWaitsForTheLease(t *testing.T) {
	w := newWorld(t, map[string]string{"FETCH_CONCURRENCY": "2"})
	w.zoom.Inject(standins.Fault{Path: "/file/", Stall: 1500 * time.Millisecond})
	s := w.startFetch(t)
	up := w.startUploader(t)
	rec := w.meeting("uuid-twice", "Twice", standins.FileSpec{ID: "twice-1", FileType: "MP4", Extension: "MP4", Size: 3 * mib})
	w.send(t, events.EventRecordingCompleted, rec)
	w.waitState(t, "twice-1", events.JobFetching)
	if _, err := w.js.PublishMsg(context.Background(), nats.NewMsg(events.FetchJobSubject("twice-1"))); err != nil {
		t.Fatal(err)
	}
	f := up.whole(t, "twice-1", w.zoom.Content("twice-1"))
	waitFor(t, "both messages settled", func() bool {
		i, err := w.js.Consumer(context.Background(), events.StreamFetchJobs, events.ConsumerFetchJobs)
		if err != nil {
			return false
		}
		info, err := i.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	if n := w.zoom.CallsTo("GET", "/file/"); n != 1 || f.dups != 0 || f.gen != 0 {
		t.Errorf("%d downloads, %d duplicate chunks, generation %d; want one download", n, f.dups, f.gen)
	}
	if strings.Contains(s.Logs.String(), "another worker took the file over") {
		t.Error("two workers held the file at once")
	}
}

// fetch stopped after publishing the last chunk but before recording the file as
// fetched: the next worker finishes it from the checkpoint, without asking Zoom for
// bytes past the end; when Zoom gave no file_size, its 416 to that ask says the
// same.
func TestEveryBytePublishedButNotRecordedIsFinished(t *testing.T) {
	for name, noSize := range map[string]bool{"file_size": false, "no file_size": true} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, nil)
			up := w.startUploader(t, "tail-1")
			rec := w.meeting("uuid-tail", "Tail", standins.FileSpec{ID: "tail-1", FileType: "TRANSCRIPT", Extension: "VTT", Size: 20000, NoSize: noSize})
			first := w.startFetch(t)
			w.send(t, events.EventRecordingCompleted, rec)
			done := w.waitState(t, "tail-1", events.JobFetched)
			up.whole(t, "tail-1", w.zoom.Content("tail-1"))
			first.Stop()

			// Put the records back as they were between the last chunk and the job update.
			ctx := context.Background()
			md := md5.New()
			io.Copy(md, w.zoom.Content("tail-1").Reader(0))
			w.stoppedAt(t, "tail-1", func(p *progress) { p.Offset, p.MD5 = 20000, md5State(t, md) })

			second := w.startFetch(t)
			waitFor(t, "fetched again", func() bool { return w.job(t, "tail-1").State == events.JobFetched })
			if j := w.job(t, "tail-1"); j.Size != done.Size || j.MD5 != done.MD5 || j.Attempts != 0 {
				t.Errorf("recorded %+v, want size and digests as %+v", j, done)
			}
			var asked []string
			for _, c := range w.zoom.Calls() {
				if strings.HasPrefix(c.Path, "/file/") {
					asked = append(asked, fmt.Sprintf("%q %d", c.Range, c.Status))
				}
			}
			want := []string{`"" 200`}
			if noSize {
				want = append(want, `"bytes=20000-" 416`)
			}
			if fmt.Sprint(asked) != fmt.Sprint(want) {
				t.Errorf("Zoom was asked for %v, want %v", asked, want)
			}
			waitFor(t, "checkpoint dropped", func() bool {
				_, found, _ := bus.Peek[progress](ctx, w.kv, events.FetchProgressKey("tail-1"))
				return !found
			})
			if strings.Contains(second.Logs.String(), "attempt failed") {
				t.Errorf("the finished file failed an attempt:\n%s", second.Logs.String())
			}
		})
	}
}

// stoppedAt makes the records of a fetched file look as a worker left them that
// stopped before it recorded the file fetched, with the checkpoint set, and sends
// the file's work message.
func (w *world) stoppedAt(t *testing.T, key string, set func(*progress)) {
	t.Helper()
	ctx := context.Background()
	if _, err := bus.Update(ctx, w.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
		j.State, j.Size, j.MD5 = events.JobFetching, 0, ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cp, _, err := bus.Claim[progress](ctx, w.kv, events.FetchProgressKey(key), "a-stopped-worker", time.Minute)
	if err != nil || cp == nil {
		t.Fatalf("claim: %v", err)
	}
	if err := cp.Save(ctx, set); err != nil {
		t.Fatal(err)
	}
	cp.Release(ctx)
	if _, err := w.js.PublishMsg(ctx, nats.NewMsg(events.FetchJobSubject(key))); err != nil {
		t.Fatal(err)
	}
}

func md5State(t *testing.T, h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A checkpoint whose hash state does not read back cannot be resumed: its digests
// would cover only the bytes after it. The file starts over, mid-way or at its end.
func TestUnreadableHashStateStartsTheFileOver(t *testing.T) {
	for _, at := range []int64{10000, 20000} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			w := newWorld(t, nil)
			up := w.startUploader(t, "bad-1")
			rec := w.meeting("uuid-bad", "Bad", standins.FileSpec{ID: "bad-1", FileType: "TRANSCRIPT", Extension: "VTT", Size: 20000})
			first := w.startFetch(t)
			w.send(t, events.EventRecordingCompleted, rec)
			done := w.waitState(t, "bad-1", events.JobFetched)
			first.Stop()

			w.stoppedAt(t, "bad-1", func(p *progress) { p.Offset, p.MD5 = at, []byte("damaged") })
			w.startFetch(t)
			waitFor(t, "fetched again", func() bool {
				j := w.job(t, "bad-1")
				return j.State == events.JobFetched && j.Generation > done.Generation
			})
			if j := w.job(t, "bad-1"); j.Size != done.Size || j.MD5 != done.MD5 {
				t.Errorf("recorded %+v, want size and digests as %+v", j, done)
			}
			up.whole(t, "bad-1", w.zoom.Content("bad-1"))
		})
	}
}

func TestDefaultRetriesSpanTwelveHours(t *testing.T) {
	var delays string
	for _, s := range settings {
		if s.Name == "FETCH_RETRY_DELAYS" {
			delays = s.Default
		}
	}
	var total time.Duration
	for _, d := range strings.Split(delays, ",") {
		dur, _ := time.ParseDuration(d)
		total += dur
	}
	// 8 attempts wait 7 times.
	if n := len(strings.Split(delays, ",")); n != 7 || total < 12*time.Hour {
		t.Errorf("default delays %s: %d waits, %s in all; want 7 waits over at least 12h", delays, n, total)
	}
}

// What a quick retry is counted as follows the error's type, never its words: a
// message that happens to say 429 is a connection problem like any other.
func TestRetryReasonIsDecidedOnTypes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{downloadStatus(429), "rate_limited"},
		{fmt.Errorf("attempt: %w", downloadStatus(503)), "server_error"},
		{&zoomError{Status: 429, answer: answerPerSecond}, "rate_limited"},
		{&zoomError{Status: 502, answer: answerTransient}, "server_error"},
		{errStalled, "stalled"},
		{io.ErrUnexpectedEOF, "connection"},
		{fmt.Errorf("proxy said 429, zoom answered 500"), "connection"},
	} {
		if got := retryReason(c.err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
	// A redirect off ZOOM_DOWNLOAD_HOSTS is refused as such, whatever it says.
	err := hostList{"zoom.us"}.allows(&url.URL{Scheme: "https", Host: "evil.example"})
	if !errors.As(fmt.Errorf("download: %w", err), new(hostRefused)) {
		t.Errorf("%v is not a refused host", err)
	}
}
