package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

func TestMain(m *testing.M) {
	stagetest.MainIfStage("upload", main)
	os.Exit(m.Run())
}

const mib = 1 << 20

// world is a broker with the topology, Google's token endpoint and Drive stand-ins
// with a shared-drive root folder, and upload's settings.
type world struct {
	natsURL string
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	token   *standins.GoogleToken
	drive   *standins.Drive
	root    string
	env     map[string]string

	mu       sync.Mutex
	contents map[string]standins.Content // by file key, for the fetch stand-in
	stages   []*stagetest.Stage
}

func newWorld(t testing.TB, extra map[string]string) *world {
	t.Helper()
	w := &world{natsURL: stagetest.NewBroker(t), token: standins.NewGoogleToken(), contents: map[string]standins.Content{}}
	t.Cleanup(w.token.Close)
	w.drive = standins.NewDrive(w.token)
	t.Cleanup(w.drive.Close)
	w.root = w.drive.AddFolder("Zoom archive", true)
	keyFile := filepath.Join(t.TempDir(), "sa.json")
	os.WriteFile(keyFile, w.token.KeyJSON(), 0o600)
	w.env = map[string]string{
		"NATS_CREDS": stagetest.Creds(t, w.natsURL, events.IdentityUpload), "NATS_URL": w.natsURL,
		"GOOGLE_APPLICATION_CREDENTIALS": keyFile,
		"DRIVE_FOLDER_ID":                w.root,
		"GOOGLE_API_URL":                 w.drive.URL(),
		"METRICS_ADDR":                   "127.0.0.1:0",
		"DRIVE_CHUNK_SIZE":               "1MiB",
		"UPLOAD_RETRY_BASE":              "10ms",
		"UPLOAD_LEASE":                   "2s",
		"CHUNK_WINDOW":                   "16MiB",
	}
	w.env = stagetest.Merge(w.env, extra)
	w.js = stagetest.JetStream(t, w.natsURL)
	w.kv = stagetest.Topology(t, w.js, w.env["CHUNK_WINDOW"])
	return w
}

func (w *world) startUpload(t testing.TB) *stagetest.Stage {
	t.Helper()
	s := stagetest.Start(t, "upload", run, w.env)
	s.WaitLog(t, "ready")
	w.stages = append(w.stages, s)
	return s
}

var board = events.RecordingInfo{
	UUID: "/ajXp+112QmS7gqgP//3ep==", MeetingID: 81234567890, HostEmail: "board@example.org", Topic: "Hallitus – kokous",
	Type: 8, StartTime: time.Date(2026, 3, 14, 17, 30, 0, 0, time.UTC), Timezone: "Europe/Helsinki", Duration: 95,
}

// spec is one file of a test recording.
type spec struct {
	key, fileType, ext, recType, participant string
	size                                     int64
	start                                    time.Time
	text                                     string // the bytes, for a transcript; size is its length
}

// plan writes the jobs fetch would write for rec's files.
func (w *world) plan(t testing.TB, rec events.RecordingInfo, files ...spec) []events.FileJob {
	t.Helper()
	ctx := context.Background()
	var jobs []events.FileJob
	var keys []string
	for i, s := range files {
		if s.text != "" {
			s.size = int64(len(s.text))
		}
		start := s.start
		if start.IsZero() {
			start = rec.StartTime.Add(time.Minute)
		}
		end := start.Add(40 * time.Minute)
		f := events.RecordingFile{ID: s.key, MeetingUUID: rec.UUID, FileType: s.fileType, FileExtension: s.ext, RecordingType: s.recType,
			FileSize: events.Int64(s.size), FileName: s.participant, RecordingStart: &start, RecordingEnd: &end, Status: "completed"}
		job := events.FileJob{Key: s.key, Recording: rec, File: f, Participant: s.participant != "", State: events.JobFetching, EventSeq: 1}
		if _, err := bus.Update(ctx, w.kv, events.FileJobKey(s.key), func(j *events.FileJob, _ bool) error { *j = job; return nil }); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		w.contents[s.key] = standins.Content{Seed: int64(i+1) * 31, Size: s.size}
		if s.text != "" {
			w.contents[s.key] = standins.Content{Text: []byte(s.text), Size: s.size}
		}
		w.mu.Unlock()
		jobs, keys = append(jobs, job), append(keys, s.key)
	}
	_, err := bus.Update(ctx, w.kv, events.RecordingJobKey(events.MeetingKey(rec.UUID)), func(r *events.RecordingJob, _ bool) error {
		*r = events.RecordingJob{Key: events.MeetingKey(rec.UUID), Recording: rec, Files: keys, State: events.RecArchiving}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func (w *world) content(key string) standins.Content {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.contents[key]
}

// feed publishes a file's bytes [from, to) as fetch does, waiting while the window
// is full; with final, the closing message follows.
func (w *world) feed(t testing.TB, key string, gen int, from, to int64, final bool) {
	t.Helper()
	c := w.content(key)
	buf := make([]byte, mib)
	for off := from; off < to; {
		n := int(min(int64(len(buf)), to-off))
		c.ReadAt(buf[:n], off)
		msg := events.Chunk{File: key, Generation: gen, Offset: off}.Msg(buf[:n])
		w.publish(t, msg)
		off += int64(n)
	}
	if final {
		msg := events.Chunk{File: key, Generation: gen, Offset: c.Size, Final: true, Size: c.Size, MD5: c.MD5()}.Msg(nil)
		w.publish(t, msg)
	}
}

func (w *world) publish(t testing.TB, msg *nats.Msg) {
	for deadline := time.Now().Add(60 * time.Second); ; {
		_, err := w.js.PublishMsg(context.Background(), msg)
		var apiErr *jetstream.APIError
		if err == nil {
			return
		}
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 || time.Now().After(deadline) {
			t.Errorf("publish chunk: %v", err)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// feedAll sends every file whole, in generation 0.
func (w *world) feedAll(t testing.TB, jobs []events.FileJob) {
	for _, j := range jobs {
		w.feed(t, j.Key, 0, 0, int64(j.File.FileSize), true)
	}
}

// refetcher stands in for fetch's answer to a restart request: the file again, in
// the next generation.
func (w *world) refetcher(t testing.TB) *int {
	t.Helper()
	n := new(int)
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := w.js.CreateOrUpdateConsumer(ctx, events.StreamFetchJobs, jetstream.ConsumerConfig{Durable: "test-refetch", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		m.Ack()
		if m.Headers().Get(events.HeaderRestart) != "true" {
			return
		}
		key := events.FileKeyOf(m.Subject())
		job, _ := bus.Update(ctx, w.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error { j.Generation++; return nil })
		mu.Lock()
		*n++
		mu.Unlock()
		go w.feed(t, key, job.Generation, 0, w.content(key).Size, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Stop(); cancel() })
	return n
}

// waitConfirmed waits until Drive has confirmed at least n bytes of the file.
func (w *world) waitConfirmed(t testing.TB, key string, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d bytes of %s in Drive", n, key), func() bool {
		u, _, _ := bus.Peek[upState](context.Background(), w.kv, events.UploadProgressKey(key))
		return u.Offset >= n
	})
}

func (w *world) job(t testing.TB, key string) events.FileJob {
	t.Helper()
	j, _, err := bus.Get[events.FileJob](context.Background(), w.kv, events.FileJobKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	stagetest.WaitFor(t, what, 45*time.Second, cond)
}

func (w *world) waitVerified(t testing.TB, key string) events.FileJob {
	t.Helper()
	var j events.FileJob
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range w.stages {
				t.Log(s.Logs.String())
			}
		}
	})
	waitFor(t, key+" verified", func() bool { j = w.job(t, key); return j.State == events.JobVerified })
	return j
}

// checkCopy asserts Drive holds the file once, byte-identical to Zoom's.
func (w *world) checkCopy(t testing.TB, key string) standins.DriveFile {
	t.Helper()
	var found []standins.DriveFile
	for _, f := range w.drive.Files() {
		if f.AppProperties["zoomFileKey"] == key {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d copies in Drive, want 1", key, len(found))
	}
	wantMD5 := w.content(key).MD5()
	if found[0].Size != w.content(key).Size || found[0].MD5 != wantMD5 {
		t.Errorf("%s: Drive holds %d bytes md5 %s, Zoom %d bytes md5 %s", key, found[0].Size, found[0].MD5, w.content(key).Size, wantMD5)
	}
	return found[0]
}

func (w *world) archiveEvents(t testing.TB, prefix string) []*jetstream.RawStreamMsg {
	var out []*jetstream.RawStreamMsg
	for _, m := range stagetest.StreamMsgs(t, w.natsURL, events.StreamArchive) {
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func metric(t testing.TB, s *stagetest.Stage, sample string) float64 {
	t.Helper()
	return stagetest.Metric(t, s.WaitLog(t, "ready")["metrics"].(string), sample)
}
