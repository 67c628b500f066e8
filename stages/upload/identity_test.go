package main

import (
	"strings"
	"testing"

	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/stagetest"
)

// upload's key reaches Drive only: check proves Google refuses it a gmail.send,
// a Drive metadata and an IAM token as DRIVE_IMPERSONATE (each a pass), warns
// naming the fix when its delegation allows more, and warns that nothing was
// proven when it acts as itself. Warnings do not fail the check.
func TestCheckProvesTheKeyReachesDriveOnly(t *testing.T) {
	const user = "archive@example.org"
	w := newWorld(t, map[string]string{"DRIVE_IMPERSONATE": user})
	w.token.Delegate(w.token.Email, serviceaccount.DriveScope)
	out, err := stagetest.Command(run, w.env, "upload", "check")
	if err != nil || strings.Contains(out, "WARN") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, scope := range []string{serviceaccount.GmailSendScope, serviceaccount.DriveMetadataScope, serviceaccount.IAMScope} {
		if !strings.Contains(out, "upload: ok   Google refuses key standin-key-1 a token for "+scope+" as "+user) {
			t.Errorf("no pass for %s:\n%s", scope, out)
		}
	}

	w.token.Delegate(w.token.Email, serviceaccount.DriveScope, serviceaccount.GmailSendScope)
	out, err = stagetest.Command(run, w.env, "upload", "check")
	if err != nil || !strings.Contains(out, "upload: WARN google gave key standin-key-1 a token for "+serviceaccount.GmailSendScope+" as "+user) ||
		!strings.Contains(out, "with "+serviceaccount.DriveScope+" alone") {
		t.Fatalf("check with gmail.send delegated too: %v\n%s", err, out)
	}

	out, err = stagetest.Command(run, stagetest.Merge(w.env, map[string]string{"DRIVE_IMPERSONATE": ""}), "upload", "check")
	if err != nil || !strings.Contains(out, "upload: WARN not proven that key standin-key-1") {
		t.Fatalf("check as the service account itself: %v\n%s", err, out)
	}
}
