package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// The chaos soak: a stream of recordings of mixed sizes and file types, late
// transcripts and duplicate deliveries, while a seeded random schedule kills any
// program (the broker too) with SIGKILL and starts it again, and injects Zoom and
// Drive faults. Then an invariant checker reads the stand-ins and the broker.
// SOAK_DURATION sets its length (2m in make test; make soak runs 30m), SOAK_SEED
// replays a run: the seed is printed at the start and with every failure.

type soak struct {
	p     *pipeline
	rng   *rand.Rand
	mu    sync.Mutex // guards rng and the counts
	recs  []soakRec
	bytes int64
	late  int // transcripts made after their recording
	dups  int // recordings delivered twice
	kills map[string]int
	fault map[string]int
	deliv sync.WaitGroup
}

// soakRec is a recording and every file it will have, late ones included.
type soakRec struct {
	rec   events.Recording
	files []events.RecordingFile
}

func TestSoak(t *testing.T) {
	duration := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("SOAK_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("soak: seed %d (SOAK_SEED=%d replays it), %s", seed, seed, duration)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("soak failed: replay with SOAK_SEED=%d SOAK_DURATION=%s", seed, duration)
		}
	})
	p := newPipeline(t, map[string]string{
		"CHUNK_WINDOW": "32MiB", "FETCH_LEASE": "3s", "FETCH_MAX_ATTEMPTS": "20", "FETCH_RETRY_DELAYS": "300ms,1s,2s",
		"ZOOM_TRANSCRIPT_WAIT": "90s", "FETCH_RECONCILE_AT": "off", "UPLOAD_AUDIT_AT": "off", "UPLOAD_RECHECK": "2s",
		"NOTIFY_MAX_PER_HOUR": "1000",
	})
	p.zoom.SetRate(40 << 20) // downloads take a while: kills land mid-file
	p.zoom.SetTranscription("host-tr", true)
	s := &soak{p: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kills: map[string]int{}, fault: map[string]int{}}

	end := time.Now().Add(duration)
	nextRec, nextKill, nextFault := time.Now(), time.Now().Add(3*time.Second), time.Now().Add(time.Second)
	for time.Now().Before(end) {
		now := time.Now()
		if now.After(nextRec) {
			s.addRecording(t)
			nextRec = now.Add(s.between(500*time.Millisecond, 3*time.Second))
		}
		if now.After(nextKill) {
			s.killOne(t)
			nextKill = time.Now().Add(s.between(5*time.Second, 15*time.Second))
		}
		if now.After(nextFault) {
			s.injectFault()
			nextFault = now.Add(s.between(time.Second, 4*time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.zoom.ClearFaults()
	p.drive.ClearFaults()
	s.deliv.Wait()
	s.settle(t)
	s.check(t)
	if t.Failed() {
		for name, proc := range p.procs {
			t.Logf("%s:\n%s", name, lastLines(proc.Logs.String(), 20))
		}
	}
	var kills, faults []string
	for k, n := range s.kills {
		kills = append(kills, fmt.Sprintf("%s %d", k, n))
	}
	for k, n := range s.fault {
		faults = append(faults, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kills)
	sort.Strings(faults)
	t.Logf("soak: seed %d, %s: %d recordings (%d with a late transcript, %d delivered twice), %d files, %.1f MiB; kills: %s; faults: %s; invariants held: %v",
		seed, duration, len(s.recs), s.late, s.dups, s.files(), float64(s.bytes)/(1<<20), strings.Join(kills, ", "), strings.Join(faults, ", "), !t.Failed())
}

func (s *soak) between(lo, hi time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *soak) intn(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(n)
}

func (s *soak) files() (n int) {
	for _, r := range s.recs {
		n += len(r.files)
	}
	return n
}

// addRecording makes a recording of 1 to 4 files of mixed kinds and sizes, one
// in four from a host who transcribes to the cloud (its transcript comes seconds
// later, with its own event), and delivers it, one in four twice.
func (s *soak) addRecording(t *testing.T) {
	i := len(s.recs)
	kinds := []standins.FileSpec{{FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view"},
		{FileType: "M4A", Extension: "M4A", RecordingType: "audio_only"}, {FileType: "CHAT", Extension: "TXT", RecordingType: "chat_file"},
		{FileType: "TIMELINE", Extension: "JSON", RecordingType: "timeline"}, {FileType: "MP4", Extension: "MP4", RecordingType: "gallery_view"}}
	var specs []standins.FileSpec
	for j := range 1 + s.intn(4) {
		f := kinds[s.intn(len(kinds))]
		f.ID = fmt.Sprintf("soak%d-f%d", i, j)
		switch s.intn(10) {
		case 0:
			f.Size = int64(20<<20 + s.intn(40<<20)) // long enough to be killed in
		case 1, 2, 3:
			f.Size = int64(1<<20 + s.intn(8<<20))
		default:
			f.Size = int64(1 + s.intn(300<<10))
		}
		specs = append(specs, f)
	}
	host := "host-plain"
	transcribed := s.intn(4) == 0
	if transcribed {
		host = "host-tr"
	}
	rec := s.p.zoom.AddRecording(events.Recording{UUID: fmt.Sprintf("soak-%d==", i), ID: events.Int64(82000000000 + i), HostID: host,
		HostEmail: host + "@example.org", Topic: fmt.Sprintf("Soak %d", i), Type: 8,
		StartTime: time.Now().UTC().Add(-time.Hour), Timezone: "Europe/Helsinki", Duration: 60}, specs...)
	r := soakRec{rec: rec, files: rec.Files()}
	for _, f := range specs {
		s.bytes += f.Size
	}
	if transcribed {
		delay := s.between(2*time.Second, 60*time.Second)
		tr := s.p.zoom.AddLateFile(rec.UUID, standins.FileSpec{ID: fmt.Sprintf("soak%d-tr", i), FileType: "TRANSCRIPT", Extension: "VTT",
			RecordingType: "audio_transcript", Size: int64(1000 + s.intn(50000)), Unlisted: s.intn(2) == 0}, delay)
		r.files = append(r.files, tr.RecordingFiles...)
		s.late++
		s.bytes += int64(tr.RecordingFiles[0].FileSize)
		s.deliver(t, events.EventTranscriptCompleted, tr, delay)
	}
	s.recs = append(s.recs, r)
	s.deliver(t, events.EventRecordingCompleted, rec, 0)
	if s.intn(4) == 0 {
		s.dups++
		s.deliver(t, events.EventRecordingCompleted, rec, s.between(0, 5*time.Second)) // Zoom's retry: same body, same id
	}
}

// deliver sends an event after a while and, like Zoom, again until the hook
// takes it (compressed from Zoom's minutes to a fraction of a second).
func (s *soak) deliver(t *testing.T, event string, rec events.Recording, after time.Duration) {
	d, err := standins.NewDelivery(event, map[string]any{"account_id": s.p.zoom.AccountID, "object": rec}, "")
	if err != nil {
		t.Fatal(err)
	}
	s.deliv.Add(1)
	go func() {
		defer s.deliv.Done()
		time.Sleep(after)
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			if status, _, err := s.p.hook.Send(context.Background(), d); err == nil && status == 200 {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Errorf("%s of %s: the hook took no delivery for 5 minutes", event, rec.UUID)
	}()
}

// killOne kills one program, the broker among them, and starts it again at once.
func (s *soak) killOne(t *testing.T) {
	which := []string{"hook", "fetch", "upload", "notify", "broker"}[s.intn(5)]
	s.kills[which]++
	if which == "broker" {
		s.p.restartBroker(0)
		return
	}
	s.p.killAndRestart(which)
}

// injectFault queues one fault of Zoom's or Drive's.
func (s *soak) injectFault() {
	z, d := s.p.zoom, s.p.drive
	faults := []struct {
		name   string
		inject func()
	}{
		{"zoom-5xx", func() { z.Inject(standins.Fault{Path: "/file/", Status: 503, Times: 1 + s.intn(2)}) }},
		{"zoom-cut", func() { z.Inject(standins.Fault{Path: "/file/", CutAfter: int64(1 + s.intn(4<<20))}) }},
		{"zoom-429", func() {
			z.Inject(standins.Fault{Path: "/v2/meetings/", Status: 429, RetryAfter: time.Now().Add(time.Second).UTC().Format(time.RFC3339)})
		}},
		{"zoom-token-expired", z.ExpireTokens},
		{"drive-5xx", func() {
			d.Inject(standins.DriveFault{Kind: "chunk", Status: 503, Reason: "backendError", Message: "Backend Error"})
		}},
		{"drive-429", func() {
			d.Inject(standins.DriveFault{Kind: "chunk", Status: 429, Reason: "rateLimitExceeded", Message: "Rate Limit Exceeded"})
		}},
		{"drive-sessions-expired", d.ExpireSessions},
		{"drive-refusal", func() {
			d.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "insufficientFilePermissions", Message: "The user does not have sufficient permissions for this file."})
		}},
	}
	f := faults[s.intn(len(faults))]
	s.fault[f.name]++
	f.inject()
}

// states reads the job state of each of r's files ("" when it has no job yet).
func (s *soak) states(r soakRec) map[string]events.FileJob {
	ctx := context.Background()
	out := map[string]events.FileJob{}
	kv, err := s.p.js.KeyValue(ctx, events.BucketJobs)
	if err != nil {
		return out
	}
	for _, f := range r.files {
		key := events.FileKey(r.rec.UUID, f)
		if j, found, err := bus.Get[events.FileJob](ctx, kv, events.FileJobKey(key)); err == nil && found {
			out[key] = j
		}
	}
	return out
}

// settled: every file of r is verified or failed, and r is trashed and announced,
// or its failure mailed. The mail may come minutes after the trash: a fetch killed
// between the trash call and the announcement leaves it to another worker once the
// call is stale, and a notify killed while sending has its event again after its
// AckWait.
func (s *soak) settled(r soakRec) bool {
	jobs := s.states(r)
	failed := false
	for _, f := range r.files {
		switch jobs[events.FileKey(r.rec.UUID, f)].State {
		case events.JobVerified:
		case events.JobFailed:
			failed = true
		default:
			return false
		}
	}
	if failed {
		return s.mailsAbout("Not archived:", r.rec.Topic) > 0
	}
	trashed, _ := s.p.zoom.Trashed(r.rec.UUID)
	return trashed && s.mailsAbout("Archived:", r.rec.Topic) > 0
}

// mailsAbout counts the mails sent whose subject starts with prefix and names topic.
func (s *soak) mailsAbout(prefix, topic string) (n int) {
	for _, m := range s.p.gmail.Sent() {
		if strings.HasPrefix(m.Subject, prefix) && strings.Contains(m.Subject, topic+" (") {
			n++
		}
	}
	return n
}

// settle waits until every recording has settled, then a little more for the
// mails and for anything that would happen twice.
func (s *soak) settle(t *testing.T) {
	stagetest.WaitFor(t, "every recording settled", 10*time.Minute, func() bool {
		for _, r := range s.recs {
			if !s.settled(r) {
				return false
			}
		}
		return true
	})
	time.Sleep(5 * time.Second)
}

// check: every recording is archived (each file once in Drive with Zoom's bytes)
// and trashed once, never before its last file was verified; or it is whole in
// Zoom with a failure mail. No job is stuck, no mail went twice. No genuine
// event is taken for a forged one, and no proof before the trash fails: the
// trust checks raise no alert when nobody attacks.
func (s *soak) check(t *testing.T) {
	copies := map[string][]standins.DriveFile{}
	for _, f := range s.p.drive.Files() {
		if k := f.AppProperties["zoomFileKey"]; k != "" && !f.Trashed {
			copies[k] = append(copies[k], f)
		}
	}
	mails := map[string]int{}
	for _, m := range s.p.gmail.Sent() {
		mails[m.Subject]++
		if mails[m.Subject] > 1 && (strings.HasPrefix(m.Subject, "Archived") || strings.HasPrefix(m.Subject, "Not archived")) {
			t.Errorf("mail sent twice: %q", m.Subject)
		}
	}

	for _, r := range s.recs {
		jobs := s.states(r)
		var deletes []time.Time
		for _, c := range s.p.zoom.Calls() {
			if c.Method == "DELETE" && c.Status == 204 && strings.Contains(c.Path, "/meetings/"+r.rec.UUID+"/") {
				deletes = append(deletes, c.At)
			}
		}
		failed := 0
		for _, f := range r.files {
			key := events.FileKey(r.rec.UUID, f)
			j := jobs[key]
			switch j.State {
			case events.JobFailed:
				failed++
				continue
			case events.JobVerified:
			default:
				t.Errorf("%s of %s stuck in %q", f.FileType, r.rec.Topic, j.State)
				continue
			}
			want := s.p.zoom.Content(f.ID).MD5()
			if c := copies[key]; len(c) != 1 || c[0].MD5 != want || c[0].Size != s.p.zoom.Content(f.ID).Size {
				t.Errorf("%s of %s: %d copies in Drive (%+v), want one with md5 %s", f.FileType, r.rec.Topic, len(c), c, want)
			}
			for _, at := range deletes {
				if at.Before(j.Updated) {
					t.Errorf("%s trashed at %s, before its %s was verified at %s", r.rec.Topic, at.Format(time.StampMilli), f.FileType, j.Updated.Format(time.StampMilli))
				}
			}
		}
		switch {
		case failed > 0:
			if len(deletes) != 0 {
				t.Errorf("%s trashed with %d files failed", r.rec.Topic, failed)
			}
			if n := s.mailsAbout("Not archived:", r.rec.Topic); n == 0 || n > failed {
				t.Errorf("%s: %d failure mails for %d failed files", r.rec.Topic, n, failed)
			}
		case len(deletes) != 1:
			t.Errorf("%s trashed %d times, want once", r.rec.Topic, len(deletes))
		case s.mailsAbout("Archived:", r.rec.Topic) != 1:
			t.Errorf("%s: %d archived mails, want 1", r.rec.Topic, s.mailsAbout("Archived:", r.rec.Topic))
		}
	}
	for _, m := range stagetest.StreamMsgs(t, s.p.env["NATS_URL"], events.StreamArchive) {
		for _, kind := range []string{events.AlertEventMismatchPrefix, events.AlertTrashHeldPrefix} {
			if strings.HasPrefix(m.Subject, events.AlertSubject(kind)) {
				t.Errorf("alert %s with no attack: %s", m.Subject, m.Data)
			}
		}
	}
	if info, err := s.p.js.Stream(context.Background(), events.StreamChunks); err != nil || info.CachedInfo().State.Msgs != 0 {
		t.Errorf("chunks left in the stream: %v %+v", err, info.CachedInfo().State)
	}
}
