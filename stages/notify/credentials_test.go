package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// The digest tells each credential's age, notify's Google key's from the IAM API,
// the other stages' keys' from their heartbeats; a key past KEY_MAX_AGE (notify's
// at Google, upload's in its file) and a credential file a stage cannot use each raise one
// alert, and each is over once a new key is in use and the file is fixed.
func TestCredentialAgesAndAlerts(t *testing.T) {
	const day = 24 * time.Hour
	at := time.Now().UTC().Add(3 * time.Second).Format("15:04:05")
	w := newWorld(t, map[string]string{"NOTIFY_DIGEST_AT": at, "KEY_MAX_AGE": "2160h"})
	w.token.AllowKeyViewer(w.token.Email, w.token.Email) // notify's account may read its own keys
	w.token.SetKeyCreated("standin-key-1", time.Now().Add(-100*day))
	ctx := context.Background()
	beat := func(stage string, creds map[string]events.Credential) {
		b, _ := json.Marshal(events.Heartbeat{Stage: stage, At: time.Now(), Credentials: creds})
		w.kv.Put(ctx, events.HeartbeatKey(stage), b)
	}
	changed := time.Now().Add(-41 * day)
	beat("fetch", map[string]events.Credential{events.CredentialZoomClient: {Since: changed}})
	beat("upload", map[string]events.Credential{events.CredentialGoogleKey: {ID: "upload-key-7", Since: time.Now().Add(-120 * day)}})
	beat("hook", map[string]events.Credential{events.CredentialWebhookSecret: {Since: changed,
		Problem: "ZOOM_WEBHOOK_SECRET_FILE cannot be used (the earlier secrets stay in use): it holds no secret"}})
	s := w.startNotify(t)

	mails := w.waitMails(t, 3)
	text := map[string]string{}
	for _, m := range mails {
		text[m.Subject] = m.Text
	}
	if got := text["zoomarchive alert: the Google key is due for rotation"]; !strings.Contains(got, "notify's key standin-key-1 was made at Google on") ||
		!strings.Contains(got, "100 days ago") || !strings.Contains(got, "upload's key upload-key-7 has been in its file since") || !strings.Contains(got, "120 days ago") {
		t.Errorf("key alert:\n%s", got)
	}
	if got := text["zoomarchive alert: stage hook cannot use its new credential file"]; !strings.Contains(got, "it holds no secret") {
		t.Errorf("credential file alert:\n%s", got)
	}
	var digest string
	for subject, body := range text {
		if strings.Contains(subject, "daily digest") {
			digest = body
		}
	}
	for _, want := range []string{"Google key standin-key-1: made", "(100 days ago)", "Zoom client secret: its file changed", "(41 days ago)",
		"Zoom webhook secret: its file changed", "Broker identities issued: notify", "upload's Google key upload-key-7: in its file since"} {
		if !strings.Contains(digest, want) {
			t.Errorf("digest lacks %q:\n%s", want, digest)
		}
	}

	beat("hook", map[string]events.Credential{events.CredentialWebhookSecret: {Since: time.Now()}})
	beat("upload", map[string]events.Credential{events.CredentialGoogleKey: {ID: "upload-key-8", Since: time.Now()}})
	_, key := w.token.NewKey()
	stagetest.Rewrite(t, w.env["GOOGLE_APPLICATION_CREDENTIALS"], string(key))
	s.WaitLog(t, "the new Google key is in use")
	mails = w.waitMails(t, 5)
	got := mails[3].Subject + "|" + mails[4].Subject
	for _, want := range []string{"over: the Google key is due for rotation", "over: stage hook cannot use its new credential file"} {
		if !strings.Contains(got, want) {
			t.Errorf("no notice %q in %q", want, got)
		}
	}
}
