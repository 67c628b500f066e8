package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/stagetest"
)

// rotate runs upload rotate-key in w.
func (w *world) rotate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	env := stagetest.Merge(w.env, map[string]string{"GOOGLE_IAM_URL": w.token.IAMURL()})
	return stagetest.Command(run, env, append([]string{"upload", "rotate-key"}, args...)...)
}

// keyAdmin is the key-admin account, its key in GOOGLE_KEY_ADMIN_CREDENTIALS; it
// holds no role yet.
func (w *world) keyAdmin(t *testing.T) string {
	t.Helper()
	const admin = "key-admin@standin-project.iam.gserviceaccount.com"
	w.env["GOOGLE_KEY_ADMIN_CREDENTIALS"] = stagetest.WriteFile(t, "key-admin.json", w.token.AddAccount(admin))
	return admin
}

// keyIn is the private_key_id of the key file at path.
func keyIn(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := serviceaccount.ReadKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// keyInFile is the private_key_id of the key file upload reads.
func (w *world) keyInFile(t *testing.T) string {
	t.Helper()
	return keyIn(t, w.env["GOOGLE_APPLICATION_CREDENTIALS"])
}

// Keys are rotated by the key-admin account alone: without its key rotate-key
// refuses, even where upload's account could manage its own keys. Without the role
// on upload's account the admin may not manage its keys: rotate-key says which
// role to grant, changes nothing, and raises one alert; once the role is granted,
// it rotates and resolves the alert. The upload running meanwhile takes the new
// key from its file before the old one is deleted.
func TestRotateKeyNeedsItsRoleThenRotates(t *testing.T) {
	w := newWorld(t, nil)
	s := w.startUpload(t)
	w.token.KeyAdmin = true
	if out, err := w.rotate(t); err == nil || !strings.Contains(err.Error(), "GOOGLE_KEY_ADMIN_CREDENTIALS: required") {
		t.Fatalf("without the key-admin account's key: %v\n%s", err, out)
	}
	w.token.KeyAdmin = false
	admin := w.keyAdmin(t)
	out, err := w.rotate(t)
	if err == nil || !strings.Contains(err.Error(), serviceaccount.KeyAdminRole) {
		t.Fatalf("without the role: %v\n%s", err, out)
	}
	if keys := w.token.Keys(); !slices.Equal(keys, []string{"standin-key-1"}) || w.keyInFile(t) != "standin-key-1" {
		t.Fatalf("a refused rotation changed keys %v or the file (%s)", keys, w.keyInFile(t))
	}
	w.rotate(t) // refused again: still one alert
	if raised, _ := stagetest.Alerts(t, w.natsURL, events.AlertGoogleKeyRotation); len(raised) != 1 {
		t.Fatalf("%d alerts raised, want 1", len(raised))
	}

	w.token.AllowKeyAdmin(admin, w.token.Email)
	if out, err := w.rotate(t, "--dry-run"); err != nil || !strings.Contains(out, "would make a new key") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if keys := w.token.Keys(); len(keys) != 1 || w.keyInFile(t) != "standin-key-1" {
		t.Fatalf("a dry run changed keys %v or the file", keys)
	}
	out, err = w.rotate(t)
	if err != nil {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	keys := w.token.Keys()
	if len(keys) != 1 || keys[0] == "standin-key-1" || w.keyInFile(t) != keys[0] {
		t.Fatalf("after the rotation: keys %v, file %s; want one new key in the file", keys, w.keyInFile(t))
	}
	s.WaitLog(t, "the new Google key is in use")
	if _, resolved := stagetest.Alerts(t, w.natsURL, events.AlertGoogleKeyRotation); len(resolved) != 1 {
		t.Errorf("%d resolved notices, want 1", len(resolved))
	}
	for _, f := range []string{".new", ".new.replaces"} {
		if _, err := os.Stat(w.env["GOOGLE_APPLICATION_CREDENTIALS"] + f); !os.IsNotExist(err) {
			t.Errorf("the run's %s file is left: %v", f, err)
		}
	}
}

// A new key Gmail will not take (notify's account is not delegated gmail.send)
// is deleted again: the old key stays in its file and at Google.
func TestRotateKeyThatDoesNotWorkIsUndone(t *testing.T) {
	w := newWorld(t, nil)
	admin := w.keyAdmin(t)
	notify := stagetest.GoogleAccount(events.IdentityNotify)
	notifyKey := stagetest.WriteFile(t, "notify.json", w.token.AddAccount(notify, serviceaccount.DriveScope))
	w.token.AllowKeyAdmin(admin, notify)
	first := keyIn(t, notifyKey)
	out, err := w.rotate(t, "--key", "notify="+notifyKey, "--gmail-sender", "archive@example.org")
	if err == nil || !strings.Contains(err.Error(), "unauthorized_client") {
		t.Fatalf("want Gmail's refusal: %v\n%s", err, out)
	}
	if keys := w.token.KeysOf(notify); !slices.Equal(keys, []string{first}) || keyIn(t, notifyKey) != first {
		t.Fatalf("an undone rotation left keys %v, file %s", keys, keyIn(t, notifyKey))
	}
}

// Each stage's key is rotated by the key-admin account in one run: each account
// ends with one new key, in its stage's file, proven with that stage's scope as
// the stage acts; the admin's own key is untouched. upload, running, takes its
// new key before its old one is deleted; fetch and notify, not running, read
// theirs when they start.
func TestRotateKeyRotatesEachStagesKey(t *testing.T) {
	const user = "archive@example.org"
	w := newWorld(t, map[string]string{"DRIVE_IMPERSONATE": user})
	w.token.Delegate(w.token.Email, serviceaccount.DriveScope)
	admin := w.keyAdmin(t)
	fetch, notify := stagetest.GoogleAccount(events.IdentityFetch), stagetest.GoogleAccount(events.IdentityNotify)
	files := map[string]string{
		events.IdentityUpload: w.env["GOOGLE_APPLICATION_CREDENTIALS"],
		events.IdentityFetch:  stagetest.GoogleKey(t, w.token, events.IdentityFetch),
		events.IdentityNotify: stagetest.GoogleKey(t, w.token, events.IdentityNotify),
	}
	accounts := map[string]string{events.IdentityUpload: w.token.Email, events.IdentityFetch: fetch, events.IdentityNotify: notify}
	w.token.AllowKeyAdmin(admin, w.token.Email, fetch, notify)
	old := map[string]string{}
	for stage, f := range files {
		old[stage] = keyIn(t, f)
	}
	adminKeys := w.token.KeysOf(admin)
	s := w.startUpload(t)
	pending := t.TempDir()
	var args []string
	for _, stage := range events.GoogleKeyHolders {
		args = append(args, "--key", stage+"="+files[stage])
	}
	out, err := w.rotate(t, append(args, "--gmail-sender", user, "--pending", pending)...)
	if err != nil {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	for stage, f := range files {
		keys := w.token.KeysOf(accounts[stage])
		if len(keys) != 1 || keys[0] == old[stage] || keyIn(t, f) != keys[0] {
			t.Errorf("%s: keys %v, file %s; want one new key in the file", stage, keys, keyIn(t, f))
		}
	}
	if !slices.Equal(w.token.KeysOf(admin), adminKeys) {
		t.Errorf("the admin's keys %v, want %v untouched", w.token.KeysOf(admin), adminKeys)
	}
	if !strings.Contains(out, "upload uses key") || !strings.Contains(out, "notify is not running") {
		t.Errorf("rotate-key did not wait for upload, or waited for notify:\n%s", out)
	}
	s.WaitLog(t, "the new Google key is in use")
	if left, _ := os.ReadDir(pending); len(left) != 0 {
		t.Errorf("left in --pending: %v", left)
	}
}

// A run stopped after Google made the key goes on with that key: no second one.
// A run stopped once the new key was in use deletes the key it replaced.
func TestRotateKeyTakesUpAnUnfinishedRun(t *testing.T) {
	w := newWorld(t, nil)
	w.token.AllowKeyAdmin(w.keyAdmin(t), w.token.Email)
	keyFile := w.env["GOOGLE_APPLICATION_CREDENTIALS"]
	id, file := w.token.NewKey()
	os.WriteFile(keyFile+".new", file, 0o600)
	out, err := w.rotate(t)
	if err != nil || !strings.Contains(out, "taking up key "+id) {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	if keys := w.token.Keys(); !slices.Equal(keys, []string{id}) || w.keyInFile(t) != id {
		t.Fatalf("keys %v, file %s; want only %s", keys, w.keyInFile(t), id)
	}

	next, file := w.token.NewKey()
	stagetest.Rewrite(t, keyFile, string(file))
	os.WriteFile(keyFile+".new", file, 0o600)
	os.WriteFile(keyFile+".new.replaces", []byte(id), 0o600)
	out, err = w.rotate(t)
	if err != nil || !strings.Contains(out, "did not delete key "+id) {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	if keys := w.token.Keys(); !slices.Equal(keys, []string{next}) || w.keyInFile(t) != next {
		t.Fatalf("keys %v, file %s; want only %s", keys, w.keyInFile(t), next)
	}
}

// Bad flags are refused before anything is asked of Google or the broker, each
// saying what is wrong.
func TestRotateKeyRefusesBadFlags(t *testing.T) {
	w := newWorld(t, nil)
	w.keyAdmin(t)
	for args, want := range map[string]string{
		"--key upload":                      `want STAGE=PATH, STAGE one of [upload fetch notify]`,
		"--key hook=/x":                     `want STAGE=PATH`,
		"--key upload=/a --key upload=/b":   "upload named twice",
		"--key notify=/a":                   "--gmail-sender: needed to prove notify's new key",
		"--key fetch=/nonexistent-key.json": "open /nonexistent-key.json",
	} {
		out, err := w.rotate(t, strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q\n%s", args, err, want, out)
		}
	}
	if keys := w.token.Keys(); !slices.Equal(keys, []string{"standin-key-1"}) {
		t.Errorf("keys %v after refused runs", keys)
	}
}
