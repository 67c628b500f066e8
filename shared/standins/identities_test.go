package standins

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// One Google identity per job, as Google's token endpoint, Drive and Gmail
// enforce it: each account's delegation allows its own scopes only; a token
// without a Drive scope is refused by Drive, a read-only one may not write, and a
// token without gmail.send is refused by Gmail.
func TestEachAccountGetsItsOwnScopeOnly(t *testing.T) {
	tok := NewGoogleToken()
	defer tok.Close()
	d, gm := NewDrive(tok), NewGmail(tok)
	defer d.Close()
	defer gm.Close()
	root := d.AddFolder("root", true)
	const user = "archive@example.org"
	uploadKey := tok.AddAccount("upload@standin-project.iam.gserviceaccount.com", drive.DriveScope)
	fetchKey := tok.AddAccount("fetch@standin-project.iam.gserviceaccount.com", drive.DriveMetadataReadonlyScope)
	notifyKey := tok.AddAccount("notify@standin-project.iam.gserviceaccount.com", gmail.GmailSendScope)
	ctx := context.Background()
	source := func(key []byte, scope string) oauth2.TokenSource {
		conf, err := google.JWTConfigFromJSON(key, scope)
		if err != nil {
			t.Fatal(err)
		}
		conf.Subject = user
		return conf.TokenSource(ctx)
	}
	refused := func(key []byte, scope string) bool {
		_, err := source(key, scope).Token()
		var rerr *oauth2.RetrieveError
		return errors.As(err, &rerr) && strings.Contains(string(rerr.Body), `"unauthorized_client"`)
	}
	for _, c := range []struct {
		name   string
		key    []byte
		scope  string
		refuse bool
	}{
		{"upload: drive", uploadKey, drive.DriveScope, false},
		{"upload: gmail.send", uploadKey, gmail.GmailSendScope, true},
		{"upload: iam", uploadKey, "https://www.googleapis.com/auth/iam", true},
		{"fetch: metadata", fetchKey, drive.DriveMetadataReadonlyScope, false},
		{"fetch: drive", fetchKey, drive.DriveScope, true},
		{"notify: gmail.send", notifyKey, gmail.GmailSendScope, false},
		{"notify: drive", notifyKey, drive.DriveScope, true},
		{"notify: metadata", notifyKey, drive.DriveMetadataReadonlyScope, true},
	} {
		if got := refused(c.key, c.scope); got != c.refuse {
			t.Errorf("%s: refused %v, want %v", c.name, got, c.refuse)
		}
	}

	driveAs := func(key []byte, scope string) *drive.Service {
		svc, err := drive.NewService(ctx, option.WithHTTPClient(oauth2.NewClient(ctx, source(key, scope))), option.WithEndpoint(d.URL()+"drive/v3/"))
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	insufficient := func(err error) bool {
		var gerr *googleapi.Error
		if !errors.As(err, &gerr) || gerr.Code != http.StatusForbidden || len(gerr.Errors) != 1 || gerr.Errors[0].Reason != "insufficientPermissions" {
			return false
		}
		for _, d := range gerr.Details { // what newer clients read
			if m, ok := d.(map[string]any); ok && m["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
				return true
			}
		}
		return false
	}
	if _, err := driveAs(notifyKey, gmail.GmailSendScope).Files.Get(root).SupportsAllDrives(true).Do(); !insufficient(err) {
		t.Errorf("Drive with notify's gmail.send token: %v, want 403 insufficientPermissions", err)
	}
	meta := driveAs(fetchKey, drive.DriveMetadataReadonlyScope)
	if f, err := meta.Files.Get(root).SupportsAllDrives(true).Fields("id").Do(); err != nil || f.Id != root {
		t.Errorf("fetch reads the folder: %v", err)
	}
	if _, err := meta.Files.Create(&drive.File{Name: "x", Parents: []string{root}}).Media(strings.NewReader("x")).SupportsAllDrives(true).Do(); !insufficient(err) {
		t.Errorf("a write with fetch's metadata token: %v, want 403 insufficientPermissions", err)
	}
	if err := meta.Files.Delete(root).SupportsAllDrives(true).Do(); !insufficient(err) {
		t.Errorf("a delete with fetch's metadata token: %v, want 403 insufficientPermissions", err)
	}

	send := func(key []byte, scope string) error {
		svc, err := gmail.NewService(ctx, option.WithHTTPClient(oauth2.NewClient(ctx, source(key, scope))), option.WithEndpoint(gm.URL()))
		if err != nil {
			t.Fatal(err)
		}
		raw := "To: a@example.org\r\nSubject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
		_, err = svc.Users.Messages.Send("me", &gmail.Message{Raw: base64.URLEncoding.EncodeToString([]byte(raw))}).Do()
		return err
	}
	if err := send(uploadKey, drive.DriveScope); !insufficient(err) {
		t.Errorf("Gmail with upload's drive token: %v, want 403 insufficientPermissions", err)
	}
	if err := send(notifyKey, gmail.GmailSendScope); err != nil {
		t.Errorf("Gmail with notify's token: %v", err)
	}
}
