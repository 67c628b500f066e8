package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// upload rotate-key in the middle of a 1 GiB archive, as the key-admin account
// alone, with tokens short-lived so that every stage needs one from the key in
// use again and again: the file goes on in its one Drive session and arrives
// whole, notify still mails, and upload's, fetch's and notify's accounts are each
// left with exactly one key, the new one, in use by its stage.
func TestGoogleKeyRotatedMidArchive(t *testing.T) {
	p := newPipeline(t, nil)
	p.token.TokenTTL = 3 * time.Second // a key deleted too soon would show at once
	p.zoom.SetRate(64 * mib)
	rec := p.recording(0, 1<<30)
	key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
	p.deliver(rec, 1)
	p.waitMidFile(key, time.Minute)

	const admin = "key-admin@standin-project.iam.gserviceaccount.com"
	notify, fetch := stagetest.GoogleAccount(events.IdentityNotify), stagetest.GoogleAccount(events.IdentityFetch)
	accounts := map[string]string{events.IdentityUpload: p.token.Email, events.IdentityNotify: notify, events.IdentityFetch: fetch}
	p.token.AllowKeyAdmin(admin, p.token.Email, notify, fetch)
	old := map[string][]string{}
	for stage, account := range accounts {
		old[stage] = p.token.KeysOf(account)
	}
	// The one-off command's alone: no running stage holds the admin's key.
	p.own["upload"] = stagetest.Merge(p.own["upload"], map[string]string{
		"GOOGLE_KEY_ADMIN_CREDENTIALS": stagetest.WriteFile(t, "key-admin.json", p.token.AddAccount(admin))})
	out, err := p.command("upload", "rotate-key", "--gmail-sender", p.env["GMAIL_SENDER"],
		"--key", "upload="+p.env["GOOGLE_APPLICATION_CREDENTIALS"], "--key", "notify="+p.own["notify"]["GOOGLE_APPLICATION_CREDENTIALS"],
		"--key", "fetch="+p.own["fetch"]["GOOGLE_APPLICATION_CREDENTIALS"])
	if err != nil || strings.Count(string(out), "Google key was rotated") != 3 {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	_, uploaded := p.progress(key)
	t.Logf("rotated with %d MiB of 1024 in Drive", uploaded>>20)
	kv, err := p.js.KeyValue(context.Background(), events.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	for stage, account := range accounts {
		keys := p.token.KeysOf(account)
		if len(keys) != 1 || slices.Contains(old[stage], keys[0]) {
			t.Fatalf("%s's keys at Google after the rotation: %v (before: %v), want one new key", stage, keys, old[stage])
		}
		hb, _, err := bus.Get[events.Heartbeat](context.Background(), kv, events.HeartbeatKey(stage))
		if got := hb.Credentials[events.CredentialGoogleKey].ID; err != nil || got != keys[0] {
			t.Errorf("%s uses key %q (%v), want %s", stage, got, err, keys[0])
		}
	}
	p.waitArchived(rec)
	p.check(rec)
	if n := p.drive.Sessions(); n != 1 {
		t.Errorf("%d Drive sessions; the file must go on in its first", n)
	}
}

// broker creds --renew upload in the middle of an archive: upload takes its new
// identity without a restart, the broker stops taking the old one after its grace,
// the other programs keep theirs, and the file arrives whole.
func TestBrokerIdentityRenewedMidArchive(t *testing.T) {
	p := newPipeline(t, map[string]string{"BROKER_REVOKE_GRACE": "3s"})
	p.zoom.SetRate(16 * mib)
	rec := p.recording(0, 160*mib)
	key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
	p.deliver(rec, 1)
	p.waitMidFile(key, time.Minute)

	credsFile := stagetest.Creds(t, p.env["NATS_URL"], "upload")
	old, err := os.ReadFile(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	oldCopy := filepath.Join(t.TempDir(), "old.creds")
	os.WriteFile(oldCopy, old, 0o600)
	out, err := exec.Command(filepath.Join(bins, "broker"), "creds", "--renew", "upload", filepath.Dir(credsFile)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "renewed upload") {
		t.Fatalf("broker creds --renew: %v\n%s", err, out)
	}
	p.procs["upload"].Signal(syscall.SIGHUP) // look now rather than within 5 s
	p.procs["upload"].WaitLog(t, "broker identity renewed")
	p.brokers[0].WaitLog(t, "account updated")
	connect := func(creds string) error {
		nc, err := nats.Connect(p.env["NATS_URL"], nats.UserCredentials(creds), nats.Timeout(2*time.Second), nats.NoReconnect())
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(oldCopy); !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthRevoked) {
		t.Errorf("the old identity after the grace: %v, want refused", err)
	}
	for _, id := range []string{"upload", "fetch"} {
		if err := connect(stagetest.Creds(t, p.env["NATS_URL"], id)); err != nil {
			t.Errorf("%s's identity: %v", id, err)
		}
	}
	p.waitArchived(rec)
	p.check(rec)
}
