package serviceaccount_test

import (
	"strings"
	"testing"

	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/standins"
)

// Confined passes when Google refuses the key every other job's scope as the
// user, warns naming the scope and the client ID when Google grants one, and says
// plainly that nothing was proven when the key acts as itself, or does not get
// its own scope either.
func TestConfined(t *testing.T) {
	g := standins.NewGoogleToken()
	defer g.Close()
	const user = "archive@example.org"
	notify := g.AddAccount("notify@standin-project.iam.gserviceaccount.com", serviceaccount.GmailSendScope)
	passed, warnings := serviceaccount.Confined(notify, events.IdentityNotify, user)
	if len(warnings) != 0 || len(passed) != len(serviceaccount.Outside(events.IdentityNotify)) {
		t.Fatalf("notify's key with gmail.send only: passed %q, warnings %v", passed, warnings)
	}
	for _, scope := range []string{serviceaccount.DriveScope, serviceaccount.DriveMetadataScope, serviceaccount.IAMScope} {
		if !strings.Contains(strings.Join(passed, "\n"), "refuses key standin-notify-key-1 a token for "+scope+" as "+user) {
			t.Errorf("no pass for %s: %q", scope, passed)
		}
	}

	both := g.AddAccount("shared@standin-project.iam.gserviceaccount.com", serviceaccount.GmailSendScope, serviceaccount.DriveScope)
	kf, _ := serviceaccount.ReadKeyFile(both)
	passed, warnings = serviceaccount.Confined(both, events.IdentityNotify, user)
	if len(warnings) != 1 || len(passed) != 2 || !strings.Contains(warnings[0].Error(), "a token for "+serviceaccount.DriveScope) ||
		!strings.Contains(warnings[0].Error(), "Domain-wide delegation, leave client ID "+kf.ClientID) {
		t.Fatalf("a key delegated Drive and Gmail, as notify: passed %q, warnings %v", passed, warnings)
	}

	passed, warnings = serviceaccount.Confined(notify, events.IdentityUpload, user)
	if len(passed) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0].Error(), "no token for its own scope") {
		t.Fatalf("a key that does not get its own scope proves nothing by refusals: passed %q, warnings %v", passed, warnings)
	}

	passed, warnings = serviceaccount.Confined(notify, events.IdentityUpload, "")
	if len(passed) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0].Error(), "not proven") {
		t.Fatalf("as itself: passed %q, warnings %v", passed, warnings)
	}
}
