// Package e2e runs the pipeline as production does: the broker and the four stages
// as separate processes built from this repository, against the stand-ins of Zoom
// and Google, with processes killed and faults injected.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

var bins string // the programs, built once

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zoomarchive-e2e")
	if err != nil {
		panic(err)
	}
	for name, pkg := range map[string]string{"broker": "./nats/cmd/broker", "hook": "./stages/hook", "fetch": "./stages/fetch",
		"upload": "./stages/upload", "notify": "./stages/notify"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", name, err, out)
			os.Exit(1)
		}
	}
	bins = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const secret = "e2e-webhook-secret"

// pipeline is the stand-ins, a broker process and one process per stage.
type pipeline struct {
	t         testing.TB
	zoom      *standins.Zoom
	token     *standins.GoogleToken
	drive     *standins.Drive
	gmail     *standins.Gmail
	env       map[string]string
	own       map[string]map[string]string // extra's "PROGRAM:NAME" settings, by program
	brokers   []*stagetest.Process
	brokerEnv []map[string]string
	procs     map[string]*stagetest.Process
	metrics   map[string]string // each program's metrics address, the first broker's as "broker"
	hook      *standins.ZoomWebhooks
	js        jetstream.JetStream
}

func newPipeline(t testing.TB, extra map[string]string) *pipeline {
	t.Helper()
	return newPipelineOn(t, extra, 1)
}

// newPipelineOn runs the pipeline on a broker of nodes servers: one, or a cluster
// with streams replicated on three.
func newPipelineOn(t testing.TB, extra map[string]string, nodes int) *pipeline {
	t.Helper()
	p := &pipeline{t: t, zoom: standins.NewZoom(), token: standins.NewGoogleToken(), procs: map[string]*stagetest.Process{}, metrics: map[string]string{}}
	t.Cleanup(p.zoom.Close)
	t.Cleanup(p.token.Close)
	p.drive, p.gmail = standins.NewDrive(p.token), standins.NewGmail(p.token)
	t.Cleanup(p.drive.Close)
	t.Cleanup(p.gmail.Close)
	// One Google identity per job: upload's key is the stand-in's first account,
	// delegated Drive alone; fetch and notify get their own.
	p.token.Delegate(p.token.Email, serviceaccount.DriveScope)
	key := stagetest.WriteFile(t, "upload-key.json", p.token.KeyJSON())
	hookAddr := stagetest.FreeAddr(t)
	var urls, clients, routes []string
	for range nodes {
		clients, routes = append(clients, stagetest.FreeAddr(t)), append(routes, stagetest.FreeAddr(t))
		urls = append(urls, "nats://"+clients[len(clients)-1])
	}
	p.env = map[string]string{
		"NATS_URL": strings.Join(urls, ","), "NATS_REPLICAS": fmt.Sprint(min(nodes, 3)),
		"CHUNK_WINDOW": "16MiB", "METRICS_ADDR": "127.0.0.1:0",
		"ZOOM_WEBHOOK_SECRET": secret, "HOOK_ADDR": hookAddr,
		"ZOOM_ACCOUNT_ID": p.zoom.AccountID, "ZOOM_CLIENT_ID": p.zoom.ClientID, "ZOOM_CLIENT_SECRET": p.zoom.ClientSecret,
		"ZOOM_API_URL": p.zoom.APIURL(), "ZOOM_OAUTH_URL": p.zoom.OAuthURL(), "ZOOM_DOWNLOAD_HOSTS": "127.0.0.1",
		"ZOOM_RETRY_BASE": "20ms", "ZOOM_STALL_TIMEOUT": "2s", "FETCH_RETRY_DELAYS": "300ms", "FETCH_ACK_WAIT": "2s", "FETCH_LEASE": "3s",
		"GOOGLE_APPLICATION_CREDENTIALS": key, "DRIVE_FOLDER_ID": p.drive.AddFolder("Zoom archive", true), "GOOGLE_API_URL": p.drive.URL(), "GOOGLE_IAM_URL": p.token.IAMURL(),
		"DRIVE_CHUNK_SIZE": "1MiB", "UPLOAD_RETRY_BASE": "20ms", "UPLOAD_LEASE": "2s", "UPLOAD_IDLE": "5s",
		"GMAIL_SENDER": "archive@example.org", "NOTIFY_TO": "admins@example.org", "GMAIL_API_URL": p.gmail.URL(),
		"NOTIFY_DIGEST_AT": "off", "NOTIFY_RETRY_DELAY": "500ms",
	}
	p.own = map[string]map[string]string{}
	for _, stage := range []string{events.IdentityFetch, events.IdentityNotify} {
		p.own[stage] = map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": stagetest.GoogleKey(t, p.token, stage)}
	}
	for k, v := range extra {
		if prog, name, ok := strings.Cut(k, ":"); ok { // one program's alone: "broker:GOGC"
			p.own[prog] = stagetest.Merge(p.own[prog], map[string]string{name: v})
		} else {
			p.env[k] = v
		}
	}
	auth := stagetest.Auth(t, t.TempDir()) // one set for every node, as on one host
	stagetest.UseAuth(urls[0], auth)
	for i := range nodes {
		env := map[string]string{"BROKER_LISTEN": clients[i], "BROKER_MONITOR": "off", "BROKER_METRICS": "127.0.0.1:0", "BROKER_STORE_DIR": t.TempDir(),
			"BROKER_AUTH_DIR": auth, "CHUNK_WINDOW": p.env["CHUNK_WINDOW"], "NATS_REPLICAS": p.env["NATS_REPLICAS"]}
		for k, v := range p.env {
			if strings.HasPrefix(k, "BROKER_") || strings.HasPrefix(k, "GO") { // the broker's and the Go runtime's among extra's
				env[k] = v
			}
		}
		env = stagetest.Merge(env, p.own["broker"])
		if nodes > 1 {
			var others []string
			for j, r := range routes {
				if j != i {
					others = append(others, "nats-route://"+r)
				}
			}
			env["BROKER_NAME"], env["BROKER_CLUSTER"], env["BROKER_ROUTES"] = fmt.Sprintf("node%d", i), routes[i], strings.Join(others, ",")
		}
		p.brokers = append(p.brokers, stagetest.StartBinary(t, filepath.Join(bins, "broker"), env))
		p.brokerEnv = append(p.brokerEnv, env)
	}
	for i, b := range p.brokers { // a cluster node is ready only once it sees the others
		if line := b.WaitLog(t, "broker ready"); i == 0 {
			p.metrics["broker"], _ = line["metrics"].(string)
		}
	}
	p.js = stagetest.JetStream(t, p.env["NATS_URL"])
	for _, s := range []string{"hook", "fetch", "upload", "notify"} {
		p.start(s)
	}
	p.hook = &standins.ZoomWebhooks{URL: "http://" + hookAddr + "/zoom/webhook", Secret: secret}
	return p
}

// restartBroker kills broker i with SIGKILL and starts it again on its data.
func (p *pipeline) restartBroker(i int) {
	p.brokers[i].Kill()
	p.brokers[i] = stagetest.StartBinary(p.t, filepath.Join(bins, "broker"), p.brokerEnv[i])
	p.brokers[i].WaitLog(p.t, "broker ready")
}

// stageEnv is stage's settings: the pipeline's, its own, and its credentials.
func (p *pipeline) stageEnv(stage string) map[string]string {
	return stagetest.Merge(p.env, p.own[stage], map[string]string{"NATS_CREDS": stagetest.Creds(p.t, p.env["NATS_URL"], stage)})
}

// command runs a one-off command of stage's program (fetch retry, upload
// rotate-key) with the stage's settings, and returns what it printed.
func (p *pipeline) command(stage string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(bins, stage), args...)
	for k, v := range p.stageEnv(stage) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd.CombinedOutput()
}

// start runs a stage and waits until it says it is ready.
func (p *pipeline) start(stage string) {
	proc := stagetest.StartBinary(p.t, filepath.Join(bins, stage), p.stageEnv(stage))
	line := proc.WaitLog(p.t, "ready")
	p.procs[stage] = proc
	p.metrics[stage], _ = line["metrics"].(string)
}

// kill ends a stage with SIGKILL and starts it again.
func (p *pipeline) killAndRestart(stage string) {
	p.procs[stage].Kill()
	p.start(stage)
}

// recording is a meeting in the Zoom stand-in with n files of about size bytes.
func (p *pipeline) recording(i int, sizes ...int64) events.Recording {
	var files []standins.FileSpec
	kinds := []struct{ typ, ext, rec string }{{"MP4", "MP4", "shared_screen_with_speaker_view"}, {"M4A", "M4A", "audio_only"},
		{"TRANSCRIPT", "VTT", "audio_transcript"}, {"CHAT", "TXT", "chat_file"}, {"TIMELINE", "JSON", "timeline"}}
	for j, size := range sizes {
		k := kinds[j%len(kinds)]
		files = append(files, standins.FileSpec{ID: fmt.Sprintf("r%d-f%d", i, j), FileType: k.typ, Extension: k.ext, RecordingType: k.rec, Size: size})
	}
	uuid := fmt.Sprintf("/e2e%d//uuid+%d==", i, i)
	return p.zoom.AddRecording(events.Recording{UUID: uuid, ID: events.Int64(81234567000 + i), HostEmail: "host@example.org",
		Topic: fmt.Sprintf("Rehearsal %d", i), Type: 8, StartTime: time.Date(2026, 3, 14, 17, i, 0, 0, time.UTC),
		Timezone: "Europe/Helsinki", Duration: 60}, files...)
}

// deliver sends the recording's recording.completed to the hook, as Zoom does,
// times times (Zoom's retries: same body and id, new signature).
func (p *pipeline) deliver(rec events.Recording, times int) {
	p.t.Helper()
	d, err := standins.NewDelivery(events.EventRecordingCompleted, map[string]any{"account_id": p.zoom.AccountID, "object": rec}, "")
	if err != nil {
		p.t.Fatal(err)
	}
	for range times {
		if status, _, err := p.hook.Send(context.Background(), d); err != nil || status != 200 {
			p.t.Fatalf("delivery: %d %v", status, err)
		}
	}
}

// archivedMails counts the "Archived:" mails.
func (p *pipeline) archivedMails() int {
	n := 0
	for _, m := range p.gmail.Sent() {
		if strings.HasPrefix(m.Subject, "Archived:") {
			n++
		}
	}
	return n
}

// waitArchived waits until every recording's archived mail went out.
func (p *pipeline) waitArchived(recs ...events.Recording) {
	p.t.Helper()
	defer func() {
		if p.t.Failed() {
			for name, proc := range p.procs {
				p.t.Logf("%s:\n%s", name, lastLines(proc.Logs.String(), 15))
			}
		}
	}()
	stagetest.WaitFor(p.t, "archived mails", 90*time.Second, func() bool { return p.archivedMails() >= len(recs) })
}

// check asserts the invariants after the archive: each file once in Drive, byte for
// byte Zoom's; each recording trashed once, only after all its files were in Drive;
// one archived mail per recording.
func (p *pipeline) check(recs ...events.Recording) {
	p.t.Helper()
	time.Sleep(500 * time.Millisecond) // anything that would happen twice, happens now
	copies := map[string][]standins.DriveFile{}
	for _, f := range p.drive.Files() {
		if k := f.AppProperties["zoomFileKey"]; k != "" {
			copies[k] = append(copies[k], f)
		}
	}
	for _, rec := range recs {
		for _, f := range rec.RecordingFiles {
			key := events.FileKey(rec.UUID, f)
			want := p.zoom.Content(f.ID).MD5()
			if c := copies[key]; len(c) != 1 || c[0].MD5 != want || c[0].Size != int64(f.FileSize) {
				p.t.Errorf("%s: Drive copies %+v, want one with md5 %s", key, c, want)
			}
		}
		if trashed, _ := p.zoom.Trashed(rec.UUID); !trashed {
			p.t.Errorf("%s not trashed", rec.UUID)
		}
	}
	deletes := map[string]int{}
	for _, c := range p.zoom.Calls() {
		if c.Method == "DELETE" && c.Status == 204 {
			deletes[c.Path]++
		}
	}
	for path, n := range deletes {
		if n != 1 {
			p.t.Errorf("%s trashed %d times", path, n)
		}
	}
	if len(deletes) != len(recs) {
		p.t.Errorf("%d recordings trashed, want %d", len(deletes), len(recs))
	}
	if n := p.archivedMails(); n != len(recs) {
		p.t.Errorf("%d archived mails, want %d", n, len(recs))
	}
}

// progress is how far fetch and upload are with a file (from their resume records).
func (p *pipeline) progress(key string) (fetched, uploaded int64) {
	ctx := context.Background()
	kv, err := p.js.KeyValue(ctx, events.BucketJobs)
	if err != nil {
		return 0, 0
	}
	type offset struct {
		Offset int64 `json:"offset"`
	}
	f, _, _ := bus.Peek[offset](ctx, kv, events.FetchProgressKey(key))
	u, _, _ := bus.Peek[offset](ctx, kv, events.UploadProgressKey(key))
	return f.Offset, u.Offset
}

// waitMidFile waits until fetch has put more than 20 MiB of the file into the
// chunk stream and upload more than 5 MiB into Drive.
func (p *pipeline) waitMidFile(key string, timeout time.Duration) {
	p.t.Helper()
	stagetest.WaitFor(p.t, "mid-file", timeout, func() bool {
		f, u := p.progress(key)
		return f > 20<<20 && u > 5<<20
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
