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

// keyInFile is the private_key_id of the key file upload reads.
func (w *world) keyInFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(w.env["GOOGLE_APPLICATION_CREDENTIALS"])
	if err != nil {
		t.Fatal(err)
	}
	k, err := serviceaccount.ReadKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// Without the role on itself the account may not manage its keys: rotate-key says
// which role to grant, changes nothing, and raises one alert; once the role is
// granted, it rotates and resolves the alert. The upload running meanwhile takes
// the new key from its file before the old one is deleted.
func TestRotateKeyNeedsItsRoleThenRotates(t *testing.T) {
	w := newWorld(t, nil)
	s := w.startUpload(t)
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

	w.token.KeyAdmin = true
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

// A new key Gmail will not take (the sender is not delegated) is deleted again:
// the old key stays in its file and at Google.
func TestRotateKeyThatDoesNotWorkIsUndone(t *testing.T) {
	w := newWorld(t, nil)
	w.token.KeyAdmin = true
	w.token.AllowedSubjects = []string{"someone@example.org"}
	out, err := w.rotate(t, "--gmail-sender", "archive@example.org")
	if err == nil || !strings.Contains(err.Error(), "unauthorized_client") {
		t.Fatalf("want Gmail's refusal: %v\n%s", err, out)
	}
	if keys := w.token.Keys(); !slices.Equal(keys, []string{"standin-key-1"}) || w.keyInFile(t) != "standin-key-1" {
		t.Fatalf("an undone rotation left keys %v, file %s", keys, w.keyInFile(t))
	}
}

// A run stopped after Google made the key goes on with that key: no second one.
// A run stopped once the new key was in use deletes the key it replaced.
func TestRotateKeyTakesUpAnUnfinishedRun(t *testing.T) {
	w := newWorld(t, nil)
	w.token.KeyAdmin = true
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
