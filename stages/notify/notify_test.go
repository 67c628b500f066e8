package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

var update = flag.Bool("update", false, "rewrite the golden mails in testdata/golden")

const sender = "archive@example.org"

type world struct {
	natsURL string
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	token   *standins.GoogleToken
	gmail   *standins.Gmail
	env     map[string]string
}

func newWorld(t testing.TB, extra map[string]string) *world {
	t.Helper()
	w := &world{natsURL: stagetest.NewBroker(t), token: standins.NewGoogleToken()}
	t.Cleanup(w.token.Close)
	w.token.AllowedSubjects = []string{sender}
	w.token.Delegate(w.token.Email, serviceaccount.GmailSendScope) // notify's own key: gmail.send only
	w.gmail = standins.NewGmail(w.token)
	t.Cleanup(w.gmail.Close)
	key := filepath.Join(t.TempDir(), "sa.json")
	os.WriteFile(key, w.token.KeyJSON(), 0o600)
	w.env = map[string]string{
		"NATS_CREDS": stagetest.Creds(t, w.natsURL, events.IdentityNotify), "NATS_URL": w.natsURL, "GOOGLE_APPLICATION_CREDENTIALS": key, "GMAIL_SENDER": sender,
		"NOTIFY_TO": "admin1@example.org, admin2@example.org", "GMAIL_API_URL": w.gmail.URL(),
		"METRICS_ADDR": "127.0.0.1:0", "NOTIFY_DIGEST_AT": "off", "NOTIFY_CHECK_EVERY": "200ms",
		"NOTIFY_RETRY_DELAY": "300ms", "NOTIFY_WINDOW_FULL_FOR": "1s", "CHUNK_WINDOW": "8MiB", "GOOGLE_IAM_URL": w.token.IAMURL(),
	}
	w.env = stagetest.Merge(w.env, extra)
	w.js = stagetest.JetStream(t, w.natsURL)
	w.kv = stagetest.Topology(t, w.js, w.env["CHUNK_WINDOW"])
	return w
}

func (w *world) startNotify(t testing.TB) *stagetest.Stage {
	t.Helper()
	s := stagetest.Start(t, "notify", run, w.env)
	s.WaitLog(t, "ready")
	return s
}

func (w *world) publish(t testing.TB, subject, id string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if _, err := w.js.Publish(context.Background(), subject, b, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	stagetest.WaitFor(t, what, 20*time.Second, cond)
}

func (w *world) waitMails(t testing.TB, n int) []standins.Mail {
	t.Helper()
	waitFor(t, "mails", func() bool { return len(w.gmail.Sent()) >= n })
	time.Sleep(300 * time.Millisecond) // and no more than n
	if got := w.gmail.Sent(); len(got) != n {
		var subjects []string
		for _, m := range got {
			subjects = append(subjects, m.Subject)
		}
		t.Fatalf("%d mails, want %d: %q", len(got), n, subjects)
	}
	return w.gmail.Sent()
}

var rehearsal = events.RecordingInfo{UUID: "/ajXp+112QmS7gqgP//3ep==", MeetingID: 81234567890, HostEmail: "board@example.org",
	Topic: "Hallitus – kokous", Type: 8, StartTime: time.Date(2026, 3, 14, 17, 30, 0, 0, time.UTC), Timezone: "Europe/Helsinki", Duration: 95}

func archivedEvent(rec events.RecordingInfo) events.RecordingArchived {
	return events.RecordingArchived{Key: events.MeetingKey(rec.UUID), Recording: rec, ZoomAction: events.ZoomTrashed,
		FolderLink: "https://drive.google.com/drive/folders/1Folder",
		Files: []events.ArchivedFile{
			{Key: "f1", FileType: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 734003200, DriveLink: "https://drive.google.com/file/d/1A/view"},
			{Key: "f2", FileType: "M4A", Participant: "Aino Virtanen", Size: 5242880, DriveLink: "https://drive.google.com/file/d/1B/view"},
			{Key: "f3", FileType: "TRANSCRIPT", RecordingType: "audio_transcript", Size: 20480, DriveLink: "https://drive.google.com/file/d/1C/view"},
		}}
}

// lateTranscript is a's announcement after its transcript came late.
func lateTranscript(a events.RecordingArchived) events.RecordingArchived {
	a.Files = append([]events.ArchivedFile(nil), a.Files...)
	a.Files[2].Late = true
	return a
}

func failedEvent(rec events.RecordingInfo) events.FileFailed {
	return events.FileFailed{Key: "f9", Recording: rec, FileType: "MP4", FileID: "f9", Size: 104857600, Attempts: 8,
		Reason: "zoom answered 503 to the download",
		Replay: events.RetryCommand("f9")}
}

func TestEachKindOfMailRenderedAndParsedBack(t *testing.T) {
	w := newWorld(t, nil)
	w.startNotify(t)
	w.publish(t, events.RecordingArchivedSubject("m1"), "archived-m1", archivedEvent(rehearsal))
	w.publish(t, events.FileFailedSubject("f9"), events.FetchFailedID("f9", 8), failedEvent(rehearsal))
	w.publish(t, events.AlertSubject(events.AlertDriveDailyCap), "alert-cap", events.Alert{Kind: events.AlertDriveDailyCap,
		Message: "Google Drive's daily upload cap (750 GB per user) is reached.", At: time.Now().UTC(), Until: time.Now().Add(5 * time.Hour)})
	mails := w.waitMails(t, 3)
	wantSubjects := []string{"Archived: Hallitus – kokous (Sat 14 Mar 2026, 19:30 EET)", "Not archived: mp4 of Hallitus – kokous (Sat 14 Mar 2026, 19:30 EET)",
		"zoomarchive alert: Google Drive's daily upload cap reached"}
	for i, m := range mails {
		if m.Subject != wantSubjects[i] {
			t.Errorf("subject %q, want %q", m.Subject, wantSubjects[i])
		}
		if _, err := m.Header.Date(); err != nil || m.Header.Get("Message-ID") == "" || m.User != sender {
			t.Errorf("headers %v", m.Header)
		}
		if m.Header.Get("To") != "admin1@example.org, admin2@example.org" || !strings.Contains(m.Header.Get("From"), sender) {
			t.Errorf("from %q to %q", m.Header.Get("From"), m.Header.Get("To"))
		}
		if m.Text == "" || !strings.Contains(m.HTML, "<html>") || !strings.Contains(m.HTML, "viewport") {
			t.Errorf("mail %d lacks a part", i)
		}
	}
	for _, link := range []string{"https://drive.google.com/drive/folders/1Folder", "https://drive.google.com/file/d/1B/view"} {
		if !strings.Contains(mails[0].Text, link) || !strings.Contains(mails[0].HTML, link) {
			t.Errorf("archived mail lacks %s", link)
		}
	}
	if !strings.Contains(mails[0].Text, "moved to Zoom's trash") || !strings.Contains(mails[0].Text, "700.0 MiB") {
		t.Errorf("archived mail:\n%s", mails[0].Text)
	}
	if !strings.Contains(mails[1].Text, events.RetryCommand("f9")) || !strings.Contains(mails[1].Text, "Attempts: 8") {
		t.Errorf("failed mail:\n%s", mails[1].Text)
	}
}

// Restarted, and with its consumer replayed from the start, notify mails nothing twice.
func TestNeverTwoMailsForOneEvent(t *testing.T) {
	w := newWorld(t, nil)
	s := w.startNotify(t)
	w.publish(t, events.RecordingArchivedSubject("m1"), "archived-m1", archivedEvent(rehearsal))
	w.waitMails(t, 1)
	s.Stop()
	if err := w.js.DeleteConsumer(context.Background(), events.StreamArchive, events.ConsumerNotify); err != nil {
		t.Fatal(err)
	}
	w.startNotify(t)
	w.publish(t, events.FileFailedSubject("f9"), events.FetchFailedID("f9", 8), failedEvent(rehearsal))
	w.waitMails(t, 2)
}

func TestHourlyCapRollsIntoTheDigest(t *testing.T) {
	at := time.Now().UTC().Add(3 * time.Second).Format("15:04:05")
	w := newWorld(t, map[string]string{"NOTIFY_MAX_PER_HOUR": "2", "NOTIFY_DIGEST_AT": at})
	s := w.startNotify(t)
	for i := range 5 {
		rec := rehearsal
		rec.UUID, rec.Topic = rec.UUID+string(rune('a'+i)), "Meeting "+string(rune('A'+i))
		w.publish(t, events.RecordingArchivedSubject(events.MeetingKey(rec.UUID)), "archived-"+events.MeetingKey(rec.UUID), archivedEvent(rec))
	}
	w.publish(t, events.SubjectReconcileReport, "reconcile-1", events.ReconcileReport{Days: 30, Missing: []string{"Forgotten meeting"}, Enqueued: 1})
	mails := w.waitMails(t, 3) // two mails, then the digest
	digest := mails[2]
	if !strings.Contains(digest.Subject, "daily digest") || !strings.Contains(digest.Text, "Recordings archived: 5") {
		t.Fatalf("digest %q:\n%s", digest.Subject, digest.Text)
	}
	for _, topic := range []string{"Meeting C", "Meeting D", "Meeting E", "Forgotten meeting"} {
		if !strings.Contains(digest.Text, topic) {
			t.Errorf("digest does not carry the mail held back for %s:\n%s", topic, digest.Text)
		}
	}
	if n := stagetest.Metric(t, s.WaitLog(t, "ready")["metrics"].(string), "zoomarchive_notify_mails_over_cap_total"); n != 3 {
		t.Errorf("%v mails over the cap counted, want 3", n)
	}
}

// Gmail down, then back: nothing lost, the other mail not held up, and a refusal
// that means a setting is wrong says which.
func TestGmailOutageThenRecovery(t *testing.T) {
	w := newWorld(t, nil)
	w.gmail.Inject(standins.DriveFault{Status: 503, Times: 8})
	w.gmail.Inject(standins.DriveFault{Status: 400, Reason: "failedPrecondition", Message: "Precondition check failed."})
	s := w.startNotify(t)
	w.publish(t, events.RecordingArchivedSubject("m1"), "archived-m1", archivedEvent(rehearsal))
	w.publish(t, events.FileFailedSubject("f9"), events.FetchFailedID("f9", 8), failedEvent(rehearsal))
	w.waitMails(t, 2)
	if !strings.Contains(s.Logs.String(), "domain-wide delegation") {
		t.Error("failedPrecondition not explained in the log")
	}
}

func TestHostileTopicsAreSafe(t *testing.T) {
	w := newWorld(t, nil)
	w.startNotify(t)
	topics := []string{
		"<script>alert('x')</script> & <b>bold</b>",
		"Evil\r\nBcc: victim@example.com\r\nX-Injected: yes",
		strings.Repeat("Very long topic ", 150),
		"Генеральная репетиция — 彩排 🎭",
	}
	for i, topic := range topics {
		rec := rehearsal
		rec.UUID, rec.Topic = rec.UUID+string(rune('a'+i)), topic
		w.publish(t, events.RecordingArchivedSubject(events.MeetingKey(rec.UUID)), "archived-"+events.MeetingKey(rec.UUID), archivedEvent(rec))
	}
	mails := w.waitMails(t, 4)
	if strings.Contains(mails[0].HTML, "<script>") || !strings.Contains(mails[0].HTML, "&lt;script&gt;") {
		t.Errorf("HTML not escaped:\n%s", mails[0].HTML)
	}
	if mails[1].Header.Get("Bcc") != "" || mails[1].Header.Get("X-Injected") != "" || strings.ContainsAny(mails[1].Subject, "\r\n") {
		t.Errorf("header injection: %v", mails[1].Header)
	}
	if !strings.Contains(mails[3].Subject, "Генеральная репетиция — 彩排 🎭") || !strings.Contains(mails[3].Text, "彩排") {
		t.Errorf("non-Latin topic lost: %q", mails[3].Subject)
	}
	for _, m := range mails {
		for _, line := range strings.Split(string(m.Raw), "\r\n") {
			if len(line) > 998 {
				t.Errorf("a line of %d characters (RFC 5322 allows 998)", len(line))
			}
		}
	}
}

// Alerts notify raises itself, each mailed once an hour at most.
func TestAlertsFromWatchingThePipeline(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	beat := func(stage string, at time.Time, rejected int64) {
		b, _ := json.Marshal(events.Heartbeat{Stage: stage, At: at, Stats: map[string]int64{"rejected": rejected}})
		w.kv.Put(ctx, events.HeartbeatKey(stage), b)
	}
	beat("fetch", time.Now().Add(-10*time.Minute), 0) // silent for longer than NOTIFY_STAGE_SILENT
	beat("hook", time.Now(), 3)
	w.startNotify(t)
	beat("hook", time.Now(), 40) // 37 rejected since the first look
	// Fill the chunk stream past 95% of its window.
	for i := 0; i < 8; i++ {
		msg := nats.NewMsg(events.ChunkSubject("stuck"))
		msg.Data = bytes.Repeat([]byte{1}, 1<<20-200)
		if _, err := w.js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	mails := w.waitMails(t, 3)
	var subjects []string
	for _, m := range mails {
		subjects = append(subjects, m.Subject)
	}
	got := strings.Join(subjects, "|")
	for _, want := range []string{"stage fetch stopped reporting", "many rejected webhooks", "uploads are not keeping up"} {
		if !strings.Contains(got, want) {
			t.Errorf("no alert %q in %q", want, got)
		}
	}
	time.Sleep(time.Second) // more looks: no more mails while the conditions last
	w.waitMails(t, 3)

	// Two conditions end: fetch reports again, the stream drains. One mail each
	// says so.
	beat("fetch", time.Now(), 0)
	chunks, _ := w.js.Stream(ctx, events.StreamChunks)
	chunks.Purge(ctx)
	mails = w.waitMails(t, 5)
	got = mails[3].Subject + "|" + mails[4].Subject
	for _, want := range []string{"over: stage fetch stopped reporting", "over: uploads are not keeping up"} {
		if !strings.Contains(got, want) {
			t.Errorf("no notice %q in %q", want, got)
		}
	}
}

// A stream that refuses new messages at its limit, 90% full, makes one alert;
// it ends when the stream has room again.
func TestBrokerFullAlert(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	topo := stagetest.DefaultTopology // a small broker: ZOOM_EVENTS holds 2 MiB
	topo.ChunkWindow, topo.Storage = 8<<20, 16<<20
	if err := topo.Ensure(ctx, w.js); err != nil {
		t.Fatal(err)
	}
	w.startNotify(t)
	for i := range 2 {
		if _, err := w.js.Publish(ctx, "zoom.event.recording.completed", bytes.Repeat([]byte{'z'}, 950_000), jetstream.WithMsgID(fmt.Sprint("flood-", i))); err != nil {
			t.Fatal(err)
		}
	}
	mails := w.waitMails(t, 1)
	if !strings.Contains(mails[0].Subject, "the broker is nearly full") || !strings.Contains(mails[0].Text, events.StreamZoomEvents+" holds") {
		t.Fatalf("mail %q:\n%s", mails[0].Subject, mails[0].Text)
	}
	stored, _ := w.js.Stream(ctx, events.StreamZoomEvents)
	if err := stored.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}
	mails = w.waitMails(t, 2)
	if !strings.Contains(mails[1].Subject, "over: the broker is nearly full") {
		t.Fatalf("second mail %q, want the alert's end", mails[1].Subject)
	}
}

func TestStartupSaysWhatToFix(t *testing.T) {
	w := newWorld(t, nil)
	try := func(env map[string]string) error {
		e := stagetest.Merge(w.env, env)
		return run(context.Background(), []string{"notify"}, func(k string) string { return e[k] }, os.Stdout, os.Stderr)
	}
	// A key whose token_uri answers something other than Google's error JSON.
	otherTokenURI := filepath.Join(t.TempDir(), "key.json")
	os.WriteFile(otherTokenURI, standins.KeyJSON(w.token.Key, w.token.Email, w.gmail.URL()+"no-token"), 0o600)
	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"nothing set":          {map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": "", "GMAIL_SENDER": "", "NOTIFY_TO": ""}, "3 setting(s)"},
		"bad address":          {map[string]string{"NOTIFY_TO": "admin1@example.org, not an address"}, `NOTIFY_TO: "not an address"`},
		"bad digest time":      {map[string]string{"NOTIFY_DIGEST_AT": "25:00"}, "NOTIFY_DIGEST_AT"},
		"delegation refused":   {map[string]string{"GMAIL_SENDER": "someone@example.org"}, "unauthorized_client"},
		"not a token endpoint": {map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": otherTokenURI}, "google refused the token: HTTP 4"},
		"key unreadable":       {map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent.json"}, "cannot read the key file"},
	} {
		if err := try(c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	w.startNotify(t)
	stagetest.Eventually(t, "the first look at the key's age", 10*time.Second, 100*time.Millisecond, func() error {
		if n := len(w.token.Grants()); n < 2 {
			return fmt.Errorf("%d tokens", n)
		}
		return nil
	})
	grants := w.token.Grants()
	if len(grants) == 0 || grants[0].Subject != sender || !slices.Equal(grants[0].Scopes, []string{"https://www.googleapis.com/auth/gmail.send"}) {
		t.Errorf("tokens %+v, want the first for %s with gmail.send only", grants, sender)
	}
	for _, g := range grants[1:] { // the key's age, asked of the IAM API as the account itself
		if g.Subject != "" || !slices.Equal(g.Scopes, []string{"https://www.googleapis.com/auth/iam"}) {
			t.Errorf("token %+v: only gmail.send as %s, and the iam scope as the account itself", g, sender)
		}
	}
}

// Golden examples: what admins get, committed for a reviewer to read.
func TestGoldenMails(t *testing.T) {
	now := time.Date(2026, 3, 15, 8, 0, 0, 0, time.UTC)
	hel, _ := time.LoadLocation("Europe/Helsinki")
	cases := map[string]mail{
		"archived":      archivedMail(archivedEvent(rehearsal), nil, time.UTC),
		"failed":        failedMail(failedEvent(rehearsal), time.UTC),
		"archived-late": archivedMail(lateTranscript(archivedEvent(rehearsal)), nil, time.UTC),
		"archived-shared": archivedMail(archivedEvent(rehearsal), &events.FolderShare{Shared: true,
			With: []events.Grant{{Email: "director@theatre.example", Type: "user", Role: "commenter"}}}, time.UTC),
		"archived-share-refused": archivedMail(archivedEvent(rehearsal), &events.FolderShare{GaveUp: true, Attempts: 5,
			LastError: "Sharing outside the domain is not allowed.",
			With:      []events.Grant{{Email: "director@theatre.example", Type: "user", Role: "reader"}}}, time.UTC),
		"archived-no-transcript": func() mail {
			a := archivedEvent(rehearsal)
			a.Files, a.NoTranscript = a.Files[:2], true
			return archivedMail(a, nil, time.UTC)
		}(),
		"alert": alertMail(events.Alert{Kind: events.AlertDriveDailyCap, At: now, Since: now, Until: now.Add(15 * time.Hour),
			Message: "Google Drive's daily upload cap (750 GB per user) is reached; uploads wait for it to reset at midnight Pacific time. Nothing is lost meanwhile."}, hel),
		"alert-resolved": alertMail(events.Alert{Kind: events.AlertDriveFull, At: now, Since: now.Add(-26 * time.Hour), Resolved: true,
			Message: "Uploads to Drive go through again."}, hel),
		"digest": digestMail(digest{Day: "Sun 15 Mar 2026", Recordings: 3, Files: 11, Bytes: 3 << 30, Freed: 3 << 30, FailedToday: 1,
			OpenFailures: []string{"MP4 of Hallitus – kokous (Sat 14 Mar 2026, 19:30 EET): zoom answered 503 to the download"},
			Alerts:       []string{"02:14 Google Drive's daily upload cap reached"},
			NoTranscript: []string{"Rehearsal, act 2 (Fri 13 Mar 2026, 18:00 EET)"},
			Late:         []string{"audio transcript of Hallitus – kokous (Sat 14 Mar 2026, 19:30 EET)"},
			SharedToday:  2,
			ZoomStorage:  storageLine(events.ZoomStorage{Date: "2026-03-15", Used: "412.5 GB", Plan: "1 TB", Percent: 40.3, Change: 12 << 30, ChangeKnown: true}),
			NotShared: []string{"Rehearsal, act 2 (Fri 13 Mar 2026, 18:00 EET): not shared yet with director@theatre.example (can comment): " +
				"Google Drive refused 2 times so far (Backend Error); zoomarchive keeps trying."},
			DriveGone: []string{"MP4 of Hallitus – kokous (2026-03-14 17:30 UTC, Zoom file aaaa1111)"},
			Reconcile: &events.ReconcileReport{Days: 30, Missing: []string{"Board meeting (2026-03-02 16:00 UTC, abc==)"}, Enqueued: 1,
				Stuck: []string{"MP4 of Rehearsal: fetching since 2026-03-14T02:00:00Z"}},
			Credentials: []string{"Google key 3f2a9c0d1e: made 14 Dec 2025 (91 days ago)", "Zoom client secret: its file changed 2 Feb 2026 (41 days ago)",
				"Zoom webhook secret: its file changed 2 Feb 2026 (41 days ago)", "Broker identities issued: hook 30 Nov 2025, fetch 30 Nov 2025, upload 30 Nov 2025, notify 30 Nov 2025"},
			Short:        []string{"Test, please ignore (Fri 13 Mar 2026, 17:58 EET), host board@tuta.fi, 0:40 long"},
			ShortTrashed: []string{"New meeting (Sat 14 Mar 2026, 09:02 EET), host director@tuta.fi, 0:12 long"},
			Version:      "1.0.0+f838158"}),
		"alert-trash-held": alertMail(events.Alert{Kind: events.AlertTrashHeldPrefix + "0a1b2c", At: now, Since: now,
			Message: "The recording \"Rehearsal, act 2\" of 2026-03-13 18:00 EET stays in Zoom: the Drive copy of the MP4 file (3158073 bytes, MD5 ede3d3b685b4e137ba4cb2521329a75e) is not what fetch read from Zoom (3158073 bytes, MD5 993c6f44bbde7f315412e92ca7a461b0). " +
				"zoomarchive removes a recording from Zoom only once Drive itself shows each of its files with the bytes fetch read from Zoom. It looks again every 30 minutes, and says so when the recording goes; until then nothing is lost. fetch status lists it (meeting abc==)."}, hel),
		"digest-zoom-storage-not-known": digestMail(digest{Day: "Sun 15 Mar 2026", Recordings: 1, Files: 3, Bytes: 700 << 20, Freed: 700 << 20,
			ZoomStorage: storageLine(events.ZoomStorage{NotKnown: "add the scope report:read:cloud_recording:admin to the Zoom app (Marketplace, Scopes)"})}),
		"alert-key-old": alertMail(events.Alert{Kind: events.AlertGoogleKeyOld, At: now, Since: now,
			Message: "The Google service-account key 3f2a9c0d1e was made at Google on 14 Dec 2025, 91 days ago; KEY_MAX_AGE is 90 days. Rotate it: on the server, sudo docker compose run --rm rotate-key (docs/operating.md, Rotating credentials); this alert is over once the new key is in use."}, hel),
		"alert-key-rotation": alertMail(events.Alert{Kind: events.AlertGoogleKeyRotation, At: now, Since: now,
			Message: "upload rotate-key could not rotate the Google key, and the key in use stays in use: the service account may not manage its own keys (iam.serviceAccountKeys.list refused): grant the service account roles/iam.serviceAccountKeyAdmin on itself (docs/operating.md, Rotating credentials)"}, hel),
	}
	// Each mail as sent (.eml) and, decoded for reading, its two parts.
	for name, m := range cases {
		raw := render(m, sender, []string{"admin1@example.org"}, now, "golden-"+name)
		parsed, err := standins.ParseMail(raw)
		if err != nil {
			t.Errorf("%s does not parse: %v", name, err)
		}
		lf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\r\n", "\n")) }
		for ext, got := range map[string][]byte{".eml": raw, ".txt": lf("Subject: " + parsed.Subject + "\n\n" + parsed.Text), ".html": lf(parsed.HTML)} {
			file := filepath.Join("testdata", "golden", name+ext)
			if *update {
				os.MkdirAll(filepath.Dir(file), 0o755)
				os.WriteFile(file, got, 0o644)
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%s: %v (run go test ./stages/notify -run TestGoldenMails -args -update)", file, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs; if the change is meant, run go test ./stages/notify -run TestGoldenMails -args -update and read the diff", file)
			}
		}
	}
}

// notify check proves the broker and a token to send as GMAIL_SENDER, and says
// when the delegation does not cover the sender; it proves Google refuses the key
// every other scope as GMAIL_SENDER, and warns, naming the fix, when it does not.
func TestCheckSaysWhetherGmailSendIsAllowed(t *testing.T) {
	w := newWorld(t, nil)
	out, err := stagetest.Command(run, w.env, "notify", "check")
	if err != nil || strings.Count(out, "notify: ok ") != 2+len(serviceaccount.Outside(events.IdentityNotify)) || strings.Contains(out, "WARN") {
		t.Fatalf("a good deployment: %v\n%s", err, out)
	}
	for _, scope := range serviceaccount.Outside(events.IdentityNotify) {
		if !strings.Contains(out, "notify: ok   Google refuses key standin-key-1 a token for "+scope+" as "+sender) {
			t.Errorf("no pass for %s:\n%s", scope, out)
		}
	}
	out, err = stagetest.Command(run, stagetest.Merge(w.env, map[string]string{"GMAIL_SENDER": "nobody@example.org"}), "notify", "check")
	if err == nil || !strings.Contains(out, "notify: FAIL Gmail") || !strings.Contains(out, "GMAIL_SENDER") || strings.Contains(out, "Google refuses key") {
		t.Errorf("a sender the delegation does not cover: %v\n%s", err, out)
	}
	w.token.Delegate(w.token.Email, serviceaccount.GmailSendScope, serviceaccount.DriveScope)
	out, err = stagetest.Command(run, w.env, "notify", "check")
	if err != nil || !strings.Contains(out, "notify: WARN google gave key standin-key-1 a token for "+serviceaccount.DriveScope+" as "+sender) {
		t.Errorf("a key delegated Drive too: %v\n%s", err, out)
	}
}

// notify's key can get only a gmail.send token: Google refuses it a Drive token
// as GMAIL_SENDER, and Drive refuses a call with the token it does get.
func TestNotifysKeyIsRefusedDrive(t *testing.T) {
	w := newWorld(t, nil)
	d := standins.NewDrive(w.token)
	defer d.Close()
	root := d.AddFolder("Zoom archive", true)
	key, err := os.ReadFile(w.env["GOOGLE_APPLICATION_CREDENTIALS"])
	if err != nil {
		t.Fatal(err)
	}
	dk, err := serviceaccount.FromJSON(key, serviceaccount.DriveScope, sender)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dk.Token(); serviceaccount.ErrorCode(err) != "unauthorized_client" {
		t.Fatalf("a Drive token for notify's key: %v, want unauthorized_client", err)
	}
	gk, err := serviceaccount.FromJSON(key, serviceaccount.GmailSendScope, sender)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := drive.NewService(context.Background(), option.WithTokenSource(gk), option.WithEndpoint(d.URL()+"drive/v3/"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Files.Get(root).SupportsAllDrives(true).Do()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != http.StatusForbidden {
		t.Fatalf("Drive with notify's gmail.send token: %v, want 403", err)
	}
}

// The archived mail says with whom upload shared the recording's folder; the
// digest counts the folders shared and lists those Drive refused.
func TestSharingInTheArchivedMailAndTheDigest(t *testing.T) {
	at := time.Now().UTC().Add(3 * time.Second).Format("15:04:05")
	w := newWorld(t, map[string]string{"NOTIFY_DIGEST_AT": at})
	refused := rehearsal
	refused.UUID, refused.Topic = "refused==", "Cherry Orchard, act 3"
	now := time.Now().UTC()
	for rec, s := range map[events.RecordingInfo]events.FolderShare{
		rehearsal: {Recording: rehearsal, Shared: true, Updated: now, With: []events.Grant{{Email: "board@example.org", Type: "user", Role: "reader"}}},
		refused: {Recording: refused, Attempts: 2, LastError: "Backend Error", Updated: now,
			With: []events.Grant{{Email: "director@theatre.example", Type: "user", Role: "commenter"}}},
	} {
		if _, err := bus.Update(context.Background(), w.kv, events.ShareKey(events.MeetingKey(rec.UUID)), func(r *events.FolderShare, _ bool) error {
			*r = s
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	w.startNotify(t)
	w.publish(t, events.RecordingArchivedSubject(events.MeetingKey(rehearsal.UUID)), "archived-m1", archivedEvent(rehearsal))
	mails := w.waitMails(t, 2)
	if !strings.Contains(mails[0].Text, "shared with board@example.org (can view), without a mail from Google Drive.") {
		t.Errorf("the archived mail:\n%s", mails[0].Text)
	}
	if d := mails[1].Text; !strings.Contains(d, "Folders shared:      1 with their hosts, 1 not (below)") ||
		!strings.Contains(d, "Folder not shared: Cherry Orchard, act 3 (Sat 14 Mar 2026, 19:30 EET): not shared yet with director@theatre.example (can comment): Google Drive refused 2 times so far (Backend Error)") {
		t.Errorf("the digest:\n%s", d)
	}
}

// The digest says Zoom's storage from the day's reconciliation and, past
// NOTIFY_ZOOM_STORAGE_ALERT, raises one alert that recordings are not leaving Zoom.
func TestZoomStorageInTheDigestAlertsPastTheThreshold(t *testing.T) {
	at := time.Now().UTC().Add(3 * time.Second).Format("15:04:05")
	w := newWorld(t, map[string]string{"NOTIFY_DIGEST_AT": at, "NOTIFY_ZOOM_STORAGE_ALERT": "85"})
	w.startNotify(t)
	w.publish(t, events.SubjectReconcileReport, "reconcile-1", events.ReconcileReport{Days: 30,
		Storage: &events.ZoomStorage{Date: "2026-03-15", Used: "870 GB", Plan: "1 TB", Percent: 85.0, Change: 10 << 30, ChangeKnown: true}})
	mails := w.waitMails(t, 2) // the alert, then the digest
	var digest, alert standins.Mail
	for _, m := range mails {
		if strings.Contains(m.Subject, "daily digest") {
			digest = m
		} else {
			alert = m
		}
	}
	if !strings.Contains(digest.Text, "Zoom cloud storage:  870 GB used of 1 TB (85%), 10.0 GiB more than the day before") {
		t.Errorf("the digest:\n%s", digest.Text)
	}
	if !strings.Contains(alert.Subject, "Zoom's cloud recording storage is filling up") || !strings.Contains(alert.Text, "85% full (870 GB of 1 TB)") {
		t.Errorf("the alert %q:\n%s", alert.Subject, alert.Text)
	}
	if raised, _ := stagetest.Alerts(t, w.natsURL, events.AlertZoomStorage); len(raised) != 1 {
		t.Errorf("%d alerts", len(raised))
	}
}

// The digest lists the recordings fetch left alone for being shorter than
// ARCHIVE_MIN_LENGTH, each with its host and length, apart from those it moved to
// Zoom's trash unarchived; a short one of an earlier day is not listed again.
func TestShortRecordingsInTheDigest(t *testing.T) {
	at := time.Now().UTC().Add(3 * time.Second).Format("15:04:05")
	w := newWorld(t, map[string]string{"NOTIFY_DIGEST_AT": at})
	now := time.Now().UTC()
	left, trashed, old := rehearsal, rehearsal, rehearsal
	left.UUID, left.Topic = "short-left==", "Test, please ignore"
	trashed.UUID, trashed.Topic = "short-trashed==", "New meeting"
	old.UUID, old.Topic = "short-old==", "Yesterday's test"
	for _, r := range []events.RecordingJob{
		{Recording: left, State: events.RecShort, Length: 40 * time.Second, ZoomAction: events.ZoomKept, Updated: now},
		{Recording: trashed, State: events.RecShort, Length: 12 * time.Second, ZoomAction: events.ZoomTrashed, Updated: now},
		{Recording: old, State: events.RecShort, Length: 30 * time.Second, ZoomAction: events.ZoomKept, Updated: now.Add(-48 * time.Hour)},
	} {
		r.Key = events.MeetingKey(r.Recording.UUID)
		if _, err := bus.Update(context.Background(), w.kv, events.RecordingJobKey(r.Key), func(x *events.RecordingJob, _ bool) error {
			*x = r
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	w.startNotify(t)
	d := w.waitMails(t, 1)[0].Text
	if !strings.Contains(d, "left in Zoom for you to decide: Test, please ignore (Sat 14 Mar 2026, 19:30 EET), host "+rehearsal.HostEmail+", 0:40 long") ||
		!strings.Contains(d, "moved to Zoom's trash WITHOUT being archived (recoverable there for 30 days): New meeting (Sat 14 Mar 2026, 19:30 EET), host "+rehearsal.HostEmail+", 0:12 long") ||
		strings.Contains(d, "Yesterday's test") {
		t.Errorf("the digest:\n%s", d)
	}
}
