package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

const mib = 1 << 20

// Several recordings at once, each delivered three times, then the whole of
// ZOOM_EVENTS replayed: every file once in Drive, byte-identical, each recording
// trashed once, one mail each.
func TestRecordingsDuplicatesAndReplay(t *testing.T) {
	p := newPipeline(t, nil)
	var recs []events.Recording
	for i := range 4 {
		recs = append(recs, p.recording(i, 6*mib+int64(i), 2*mib, 40000, 2000, 5000))
	}
	for _, rec := range recs {
		go p.deliver(rec, 3)
	}
	p.waitArchived(recs...)
	p.check(recs...)

	served, received := p.zoom.BytesServed(), p.drive.Received()
	planned := func() float64 {
		return stagetest.Metric(t, p.procs["fetch"].WaitLog(t, "ready")["metrics"].(string),
			`zoomarchive_fetch_events_total{event="recording.completed",outcome="planned"}`)
	}
	before := planned()
	cmd := exec.Command("sh", "-c", "nats consumer reset ZOOM_EVENTS fetch --sequence 1 -f")
	cmd.Env = append(os.Environ(), "NATS_URL="+p.env["NATS_URL"], "NATS_CREDS="+stagetest.Creds(t, p.env["NATS_URL"], events.IdentityOperator), "PATH="+natsCLIDir(t)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	stagetest.WaitFor(t, "the replay read by fetch", 30*time.Second, func() bool { return planned() >= before+float64(len(recs)) })
	time.Sleep(2 * time.Second)
	if p.zoom.BytesServed() != served || p.drive.Received() != received {
		t.Errorf("the replay moved bytes again: Zoom %d, Drive %d", p.zoom.BytesServed()-served, p.drive.Received()-received)
	}
	p.check(recs...)
}

// Each stage, and the broker, killed in the middle of a file: the archive completes
// with the same guarantees.
func TestKilledMidFile(t *testing.T) {
	for _, victim := range []string{"fetch", "upload", "notify", "broker"} {
		t.Run(victim, func(t *testing.T) {
			p := newPipeline(t, nil)
			p.zoom.SetRate(40 * mib) // about a second and a half for the big file
			rec := p.recording(0, 60*mib, 3*mib, 20000)
			key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
			p.deliver(rec, 1)
			p.waitMidFile(key, 30*time.Second)
			switch victim {
			case "broker":
				p.restartBroker(0)
			default:
				p.killAndRestart(victim)
			}
			p.waitArchived(rec)
			p.check(rec)
		})
	}
}

// Drive and Zoom misbehaving in each documented way, each in its own case: the same
// guarantees hold.
func TestFaults(t *testing.T) {
	retryAfter := func() string { return time.Now().Add(time.Second).UTC().Format(time.RFC3339) }
	cases := []struct {
		name   string
		inject func(p *pipeline)
		during func(p *pipeline, key string) // once the big file is under way
	}{
		{name: "drive 5xx storm", inject: func(p *pipeline) { p.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 503, Times: 6}) }},
		{name: "drive 429", inject: func(p *pipeline) { p.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 429, Times: 3}) }},
		{name: "drive 403 rate limits", inject: func(p *pipeline) {
			p.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "rateLimitExceeded", Message: "Rate Limit Exceeded"})
			p.drive.Inject(standins.DriveFault{Kind: "chunk", Status: 403, Reason: "userRateLimitExceeded", Message: "User Rate Limit Exceeded"})
		}},
		{name: "drive 308 without Range", inject: func(p *pipeline) { p.drive.Inject(standins.DriveFault{Kind: "chunk", Drop: true}) }},
		{name: "drive partial chunk and cut", inject: func(p *pipeline) {
			p.drive.Inject(standins.DriveFault{Kind: "chunk", Accept: 256 << 10})
			p.drive.Inject(standins.DriveFault{Kind: "chunk", Cut: true})
		}},
		{name: "drive session expiry", during: func(p *pipeline, key string) { p.drive.ExpireSessions() }},
		{name: "zoom 5xx", inject: func(p *pipeline) {
			p.zoom.Inject(standins.Fault{Path: "/file/", Status: 503, Times: 3})
			p.zoom.Inject(standins.Fault{Path: "/rec/download/", Status: 500})
		}},
		{name: "zoom 429", inject: func(p *pipeline) {
			p.zoom.Inject(standins.Fault{Path: "/rec/download/", Status: 429, RetryAfter: retryAfter()})
			p.zoom.Inject(standins.Fault{Path: "/v2/meetings/", Status: 429, RetryAfter: retryAfter()})
		}},
		{name: "zoom cut connections", inject: func(p *pipeline) {
			p.zoom.Inject(standins.Fault{Path: "/file/", CutAfter: mib + 5})
			p.zoom.Inject(standins.Fault{Path: "/file/", CutAfter: 100})
		}},
		{name: "zoom expired tokens", during: func(p *pipeline, key string) { p.zoom.ExpireTokens() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPipeline(t, nil)
			if c.inject != nil {
				c.inject(p)
			}
			rec := p.recording(0, 9*mib, 2*mib, 3000)
			p.deliver(rec, 2)
			if c.during != nil {
				p.zoom.SetRate(20 * mib)
				key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
				stagetest.WaitFor(t, "under way", 30*time.Second, func() bool { _, u := p.progress(key); return u >= 2*mib })
				c.during(p, key)
				p.zoom.SetRate(0)
			}
			p.waitArchived(rec)
			p.check(rec)
		})
	}
}

// A file Zoom never serves: the job gives up, the admins get a failed-file mail, and
// the recording stays in Zoom; the mail's command, once Zoom serves the file again,
// archives it.
func TestFailedFileMailAndNothingTrashed(t *testing.T) {
	p := newPipeline(t, map[string]string{"FETCH_MAX_ATTEMPTS": "2"})
	rec := p.recording(0, 2*mib, 3000)
	p.zoom.Inject(standins.Fault{Path: "/file/" + rec.RecordingFiles[1].ID, Status: 500, Times: 1000})
	p.deliver(rec, 1)
	key := events.FileKey(rec.UUID, rec.RecordingFiles[1])
	stagetest.WaitFor(t, "failed mail", 60*time.Second, func() bool {
		for _, m := range p.gmail.Sent() {
			if strings.HasPrefix(m.Subject, "Not archived:") && strings.Contains(m.Text, events.RetryCommand(key)) {
				return true
			}
		}
		return false
	})
	if trashed, _ := p.zoom.Trashed(rec.UUID); trashed || p.archivedMails() != 0 {
		t.Error("a recording with a failed file was trashed or announced as archived")
	}
	p.zoom.ClearFaults()
	_, args, _ := strings.Cut(events.RetryCommand(key), "docker compose run --rm --no-deps fetch ")
	if out, err := p.command("fetch", strings.Fields(args)...); err != nil {
		t.Fatalf("the mail's command: %v\n%s", err, out)
	}
	p.waitArchived(rec)
	p.check(rec)
}

func natsCLIDir(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NATS_CLI"); p != "" {
		return filepath.Dir(p)
	}
	if abs, err := filepath.Abs("../.tools/nats"); err == nil {
		if _, err := os.Stat(abs); err == nil {
			return filepath.Dir(abs)
		}
	}
	if p, err := exec.LookPath("nats"); err == nil {
		return filepath.Dir(p)
	}
	t.Fatal("natscli v0.5.0 not found: run 'make tools' or set NATS_CLI")
	return ""
}

// A three-node JetStream cluster with the streams on three replicas: one node killed
// mid-transfer, the archive completes. Only NATS_URL (and NATS_REPLICAS) differ from
// the one-broker setup.
func TestClusterNodeKilledMidTransfer(t *testing.T) {
	p := newPipelineOn(t, nil, 3)
	p.zoom.SetRate(40 * mib)
	rec := p.recording(0, 60*mib, 3*mib, 20000)
	key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
	p.deliver(rec, 1)
	p.waitMidFile(key, 60*time.Second)
	info, err := p.js.Stream(context.Background(), events.StreamChunks)
	if err != nil || info.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("the chunk stream is not on three replicas: %v", err)
	}
	p.brokers[1].Kill()
	p.waitArchived(rec)
	p.check(rec)
}
