package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
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
	stagetest.MainIfStage("fetch", main)
	os.Exit(m.Run())
}

// world is a broker with the topology, the Zoom and Drive stand-ins and fetch's
// settings.
type world struct {
	natsURL string
	zoom    *standins.Zoom
	drive   *standins.Drive
	root    string // DRIVE_FOLDER_ID
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	env     map[string]string
	once    sync.Once
	inRoot  string
}

func newWorld(t testing.TB, extra map[string]string) *world {
	t.Helper()
	w := &world{natsURL: stagetest.NewBroker(t), zoom: standins.NewZoom()}
	t.Cleanup(w.zoom.Close)
	token := standins.NewGoogleToken()
	t.Cleanup(token.Close)
	w.drive = standins.NewDrive(token)
	t.Cleanup(w.drive.Close)
	w.root = w.drive.AddFolder("Zoom archive", true)
	key := stagetest.GoogleKey(t, token, events.IdentityFetch) // fetch's own account: Drive's metadata, read only
	w.env = map[string]string{
		"GOOGLE_APPLICATION_CREDENTIALS": key, "DRIVE_FOLDER_ID": w.root, "GOOGLE_API_URL": w.drive.URL(),
		"NATS_CREDS": stagetest.Creds(t, w.natsURL, events.IdentityFetch), "NATS_URL": w.natsURL,
		"ZOOM_ACCOUNT_ID":     w.zoom.AccountID,
		"ZOOM_CLIENT_ID":      w.zoom.ClientID,
		"ZOOM_CLIENT_SECRET":  w.zoom.ClientSecret,
		"ZOOM_API_URL":        w.zoom.APIURL(),
		"ZOOM_OAUTH_URL":      w.zoom.OAuthURL(),
		"ZOOM_DOWNLOAD_HOSTS": "127.0.0.1",
		"METRICS_ADDR":        "127.0.0.1:0",
		"ZOOM_RETRY_BASE":     "20ms",
		"ZOOM_STALL_TIMEOUT":  "2s",
		"FETCH_RETRY_DELAYS":  "100ms",
		"FETCH_ACK_WAIT":      "2s",
		"FETCH_LEASE":         "3s",
		"CHUNK_WINDOW":        "16MiB",
	}
	w.env = stagetest.Merge(w.env, extra)
	w.js = stagetest.JetStream(t, w.natsURL)
	w.kv = stagetest.Topology(t, w.js, w.env["CHUNK_WINDOW"])
	return w
}

// startFetch runs fetch in-process and waits until it consumes; a failing test
// shows the end of its log.
func (w *world) startFetch(t testing.TB) *stagetest.Stage {
	t.Helper()
	s := stagetest.Start(t, "fetch", run, w.env)
	s.WaitLog(t, "ready")
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(s.Logs.String()), "\n")
			t.Logf("fetch log:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	return s
}

// meeting is a recording with the given files, registered with the stand-in.
func (w *world) meeting(uuid, topic string, files ...standins.FileSpec) events.Recording {
	return w.zoom.AddRecording(events.Recording{
		UUID: uuid, ID: 81234567890, HostID: "host1", HostEmail: "board@example.org", Topic: topic, Type: 8,
		StartTime: time.Date(2026, 3, 14, 17, 30, 0, 0, time.UTC), Timezone: "Europe/Helsinki", Duration: 95,
	}, files...)
}

// send publishes a recording event the way the hook stores it.
func (w *world) send(t testing.TB, event string, rec events.Recording) {
	t.Helper()
	w.publish(t, w.js, event, rec)
}

// publish stores a recording event on ZOOM_EVENTS through js (an identity of the
// test's choice).
func (w *world) publish(t testing.TB, js jetstream.JetStream, event string, rec events.Recording) {
	t.Helper()
	d, err := standins.NewDelivery(event, map[string]any{"account_id": w.zoom.AccountID, "object": rec}, "eyJ.download-token")
	if err != nil {
		t.Fatal(err)
	}
	subject, err := events.ZoomEventSubject(event)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = d.Body
	msg.Header.Set(events.HeaderZoomRequest, d.RequestID)
	if _, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(d.RequestID)); err != nil {
		t.Fatal(err)
	}
}

func (w *world) job(t testing.TB, key string) events.FileJob {
	t.Helper()
	j, _, err := bus.Get[events.FileJob](context.Background(), w.kv, events.FileJobKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitFor polls cond for up to 60 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	stagetest.WaitFor(t, what, 60*time.Second, cond)
}

func (w *world) waitState(t testing.TB, key, state string) events.FileJob {
	t.Helper()
	var j events.FileJob
	waitFor(t, key+" "+state, func() bool { j = w.job(t, key); return j.State == state })
	return j
}

// keys are the file keys of a recording, in Zoom's order.
func keys(rec events.Recording) []string {
	var out []string
	for _, f := range rec.Files() {
		out = append(out, events.FileKey(rec.UUID, f))
	}
	return out
}

// archiveEvents reads the ARCHIVE stream's messages on a subject prefix.
func (w *world) archiveEvents(t testing.TB, prefix string) []*jetstream.RawStreamMsg {
	var out []*jetstream.RawStreamMsg
	for _, m := range stagetest.StreamMsgs(t, w.natsURL, events.StreamArchive) {
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// uploader stands in for the upload stage: it reads CHUNKS in order, checks what
// fetch promised (no gaps, the final size and digests), and, unless held, puts the
// bytes in Drive, marks the file verified and says so on ARCHIVE as upload does.
type uploader struct {
	t     testing.TB
	w     *world
	mu    sync.Mutex
	files map[string]*received
	hold  map[string]bool
	stop  context.CancelFunc
	done  chan struct{}
}

type received struct {
	gen      int
	data     bytes.Buffer
	final    bool
	dups     int
	problems []string
	verified bool
}

func (w *world) startUploader(t testing.TB, hold ...string) *uploader {
	t.Helper()
	u := &uploader{t: t, w: w, files: map[string]*received{}, hold: map[string]bool{}, done: make(chan struct{})}
	for _, k := range hold {
		u.hold[k] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.stop = cancel
	cons, err := w.js.CreateOrUpdateConsumer(ctx, events.StreamChunks, jetstream.ConsumerConfig{
		Durable: "test-upload", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000, AckWait: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(u.done)
		for ctx.Err() == nil {
			msgs, err := cons.Fetch(64, jetstream.FetchMaxWait(200*time.Millisecond))
			if err != nil {
				continue
			}
			for m := range msgs.Messages() {
				if u.take(ctx, m) {
					m.Ack()
				} else {
					m.NakWithDelay(50 * time.Millisecond)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-u.done })
	return u
}

// take reads one chunk message; false hands it back for later.
func (u *uploader) take(ctx context.Context, m jetstream.Msg) bool {
	c, err := events.ParseChunk(m.Headers())
	if err != nil {
		u.t.Errorf("%s: %v", m.Subject(), err)
		return true
	}
	key, gen, off := c.File, c.Generation, c.Offset
	u.mu.Lock()
	f := u.files[key]
	if f == nil || gen > f.gen {
		f = &received{gen: gen}
		u.files[key] = f
	}
	u.mu.Unlock()
	switch {
	case gen < f.gen:
		return true // an older generation: dropped, as upload drops it
	case off > int64(f.data.Len()):
		// A chunk sent to a pull that had just expired comes again only after
		// AckWait; those after it are handed back until it does, as upload reads
		// them again. A chunk truly lost never comes, and whole() times out.
		return false
	case c.Final:
		md := md5.Sum(f.data.Bytes())
		if c.Size != int64(f.data.Len()) || c.MD5 != hex.EncodeToString(md[:]) {
			f.problems = append(f.problems, fmt.Sprintf("final says %d bytes %s, got %d", c.Size, c.MD5, f.data.Len()))
		}
		u.mu.Lock()
		f.final = true
		held := u.hold[key]
		u.mu.Unlock()
		if !held {
			u.verify(ctx, key)
		}
	case off < int64(f.data.Len()):
		f.dups++ // below what we have: acknowledged and dropped
	default:
		f.data.Write(m.Data())
	}
	return true
}

// verify does what upload does: the bytes go to Drive, then the job says so.
func (u *uploader) verify(ctx context.Context, key string) {
	u.mu.Lock()
	data := u.files[key].data.Bytes()
	u.mu.Unlock()
	id := u.w.drive.Put(u.w.folder(), key, data)
	job, err := bus.Update(ctx, u.w.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
		j.State, j.DriveID, j.DriveLink = events.JobVerified, id, "https://drive.example/file/d/"+id
		return nil
	})
	if err != nil {
		if ctx.Err() == nil { // not the uploader stopping at the test's end
			u.t.Errorf("verify %s: %v", key, err)
		}
		return
	}
	b, _ := json.Marshal(events.FileVerified{Key: key, MeetingUUID: job.Recording.UUID, FileID: job.File.ID, Size: job.Size,
		MD5: job.MD5, DriveID: job.DriveID, DriveLink: job.DriveLink, FolderLink: "https://drive.example/drive/folders/f1"})
	if _, err := u.w.js.Publish(ctx, events.FileVerifiedSubject(key), b, jetstream.WithMsgID(events.VerifiedID(key, job.Generation))); err != nil && ctx.Err() == nil {
		u.t.Errorf("publish verified %s: %v", key, err)
	}
	u.mu.Lock()
	u.files[key].verified = true
	u.mu.Unlock()
}

// folder is the Drive folder the test uploader files into, under the archive's root.
func (w *world) folder() string {
	w.once.Do(func() { w.inRoot = w.drive.Put(w.root, "2026", nil) })
	return w.inRoot
}

// release verifies a held file.
func (u *uploader) release(key string) {
	u.mu.Lock()
	delete(u.hold, key)
	final := u.files[key] != nil && u.files[key].final
	u.mu.Unlock()
	if final {
		u.verify(context.Background(), key)
	}
}

// whole waits until the file arrived complete and checks it against Zoom's bytes.
func (u *uploader) whole(t testing.TB, key string, want standins.Content) *received {
	t.Helper()
	var f *received
	waitFor(t, "file "+key+" complete", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		f = u.files[key]
		return f != nil && f.final
	})
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(f.problems) > 0 {
		t.Errorf("%s: %v", key, f.problems)
	}
	wantMD5 := want.MD5()
	got := md5.Sum(f.data.Bytes())
	if int64(f.data.Len()) != want.Size || hex.EncodeToString(got[:]) != wantMD5 {
		t.Errorf("%s: got %d bytes md5 %x, Zoom has %d bytes md5 %s", key, f.data.Len(), got, want.Size, wantMD5)
	}
	return f
}

// metric reads one sample of fetch's /metrics.
func metric(t testing.TB, s *stagetest.Stage, sample string) float64 {
	t.Helper()
	return stagetest.Metric(t, s.WaitLog(t, "ready")["metrics"].(string), sample)
}
