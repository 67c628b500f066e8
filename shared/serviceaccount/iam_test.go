package serviceaccount_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/standins"
)

// The account's own keys through the IAM API: refused with the role to grant
// until the account may manage them; then listed with their age, made (the file
// Google gives signs for tokens at once), deleted, and no more than Google's ten.
func TestIAMKeys(t *testing.T) {
	g := standins.NewGoogleToken()
	defer g.Close()
	ctx := context.Background()
	keys, err := serviceaccount.IAM(ctx, g.KeyJSON(), "", g.IAMURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.List(ctx); !errors.Is(err, serviceaccount.ErrNotKeyAdmin) || !strings.Contains(err.Error(), serviceaccount.KeyAdminRole) {
		t.Fatalf("without the role: %v", err)
	}
	g.KeyAdmin = true
	made := time.Now().Add(-100 * 24 * time.Hour)
	g.SetKeyCreated("standin-key-1", made)
	if created, err := keys.Created(ctx, "standin-key-1"); err != nil || !created.Equal(made.UTC().Truncate(time.Second)) {
		t.Fatalf("created %v (%v), want %v", created, err, made)
	}
	k, file, err := keys.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := serviceaccount.ReadKeyFile(file)
	if err != nil || kf.ID != k.ID || kf.Account != standins.ServiceAccount {
		t.Fatalf("the new key's file: %+v (%v), want key %s", kf, err, k.ID)
	}
	src, err := serviceaccount.FromJSON(file, "https://www.googleapis.com/auth/drive", "")
	if err == nil {
		_, err = src.Token()
	}
	if err != nil {
		t.Fatalf("a token with the new key: %v", err)
	}
	if err := keys.Delete(ctx, "standin-key-1"); err != nil {
		t.Fatal(err)
	}
	if err := keys.Delete(ctx, "standin-key-1"); err != nil {
		t.Errorf("deleting a key already gone: %v", err)
	}
	list, err := keys.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != k.ID {
		t.Fatalf("keys %+v (%v), want only %s", list, err, k.ID)
	}
	for range 9 {
		if _, _, err := keys.Create(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := keys.Create(ctx); err == nil || !strings.Contains(err.Error(), "10 keys") {
		t.Errorf("an eleventh key: %v", err)
	}
}

// The key-admin account manages another account's keys once it holds the role on
// that account, and no other account's: the key it makes there signs for that
// account. A viewer on its own account reads its keys and makes none.
func TestIAMKeysOfAnotherAccount(t *testing.T) {
	g := standins.NewGoogleToken()
	defer g.Close()
	ctx := context.Background()
	const admin, notify = "key-admin@standin-project.iam.gserviceaccount.com", "notify@standin-project.iam.gserviceaccount.com"
	adminKey := g.AddAccount(admin)
	notifyKey := g.AddAccount(notify, serviceaccount.GmailSendScope)
	keys, err := serviceaccount.IAM(ctx, adminKey, notify, g.IAMURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.List(ctx); !errors.Is(err, serviceaccount.ErrNotKeyAdmin) || !strings.Contains(err.Error(), serviceaccount.KeyAdminRole+" on "+notify) {
		t.Fatalf("without the role: %v", err)
	}
	g.AllowKeyAdmin(admin, notify)
	k, file, err := keys.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kf, err := serviceaccount.ReadKeyFile(file); err != nil || kf.Account != notify || !slices.Contains(g.KeysOf(notify), k.ID) {
		t.Fatalf("the new key %s: %+v (%v); notify's keys %v", k.ID, kf, err, g.KeysOf(notify))
	}
	src, err := serviceaccount.FromJSON(file, serviceaccount.GmailSendScope, "archive@example.org")
	if err == nil {
		_, err = src.Token()
	}
	if err != nil {
		t.Fatalf("a gmail.send token with notify's new key: %v", err)
	}
	// notify, viewer on itself, reads its key's age and may make none.
	own, err := serviceaccount.IAM(ctx, notifyKey, "", g.IAMURL())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := serviceaccount.ReadKeyFile(notifyKey)
	if _, err := own.Created(ctx, first.ID); !errors.Is(err, serviceaccount.ErrNotKeyAdmin) || !strings.Contains(err.Error(), serviceaccount.KeyViewerRole) {
		t.Fatalf("notify's key age without the viewer role: %v", err)
	}
	g.AllowKeyViewer(notify, notify)
	if _, err := own.Created(ctx, first.ID); err != nil {
		t.Fatalf("notify's key age as viewer: %v", err)
	}
	if _, _, err := own.Create(ctx); !errors.Is(err, serviceaccount.ErrNotKeyAdmin) {
		t.Fatalf("a key made by notify's own key: %v", err)
	}
	upload, err := serviceaccount.IAM(ctx, adminKey, g.Email, g.IAMURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := upload.List(ctx); !errors.Is(err, serviceaccount.ErrNotKeyAdmin) {
		t.Fatalf("an account the admin holds no role on: %v", err)
	}
}
