package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/standins"
)

// The stack test's way (STANDINS_GOOGLE_KEYS): the key files it wrote become the
// token endpoint's accounts, each delegated its job's scope alone, the key admin
// may manage the three stages' keys and not its own, and a key it makes has an id
// of its own. Without the setting (make dev, make demo) the four are made here.
func TestIdentities(t *testing.T) {
	dir := t.TempDir()
	g := standins.NewGoogleToken()
	defer g.Close()
	var pairs []string
	keys := map[string][]byte{}
	for i, job := range []string{"fetch", "notify", keyAdmin} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]string
		json.Unmarshal(standins.KeyJSON(key, job+"@standin-project.iam.gserviceaccount.com", g.URL()), &f)
		f["private_key_id"], f["client_id"] = "standin-"+job+"-key-1", "20000000000000000000"+string(rune('0'+i))
		keys[job], _ = json.Marshal(f)
		path := filepath.Join(dir, job+".json")
		os.WriteFile(path, keys[job], 0o600)
		pairs = append(pairs, job+"="+path)
	}
	if err := identities(g, strings.Join(pairs, ","), dir); err != nil {
		t.Fatal(err)
	}
	const user = "archive@example.org"
	token := func(key []byte, scope string) string {
		k, err := serviceaccount.FromJSON(key, scope, user)
		if err == nil {
			_, err = k.Token()
		}
		if err != nil {
			return serviceaccount.ErrorCode(err)
		}
		return "granted"
	}
	for _, c := range []struct {
		job, scope, want string
	}{
		{"fetch", serviceaccount.DriveMetadataScope, "granted"}, {"fetch", serviceaccount.DriveScope, "unauthorized_client"},
		{"notify", serviceaccount.GmailSendScope, "granted"}, {"notify", serviceaccount.DriveScope, "unauthorized_client"},
		{keyAdmin, serviceaccount.DriveScope, "unauthorized_client"},
	} {
		if got := token(keys[c.job], c.scope); got != c.want {
			t.Errorf("%s's key, %s: %s, want %s", c.job, c.scope, got, c.want)
		}
	}
	if got := token(g.KeyJSON(), serviceaccount.GmailSendScope); got != "unauthorized_client" {
		t.Errorf("upload's key, gmail.send: %s", got)
	}
	ctx := context.Background()
	fetch, err := serviceaccount.IAM(ctx, keys[keyAdmin], "fetch@standin-project.iam.gserviceaccount.com", g.IAMURL())
	if err != nil {
		t.Fatal(err)
	}
	if k, _, err := fetch.Create(ctx); err != nil || strings.HasSuffix(k.ID, "-key-1") {
		t.Errorf("a new key of fetch's by the key admin: %q (%v), want one with an id of its own", k.ID, err)
	}
	own, err := serviceaccount.IAM(ctx, keys[keyAdmin], "", g.IAMURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.List(ctx); err == nil {
		t.Error("the key admin may manage its own keys")
	}
	if _, err := os.Stat(filepath.Join(dir, "google-upload.json")); err == nil {
		t.Error("key files written although the stack gave them")
	}

	made := t.TempDir()
	g2 := standins.NewGoogleToken()
	defer g2.Close()
	if err := identities(g2, "", made); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"upload", "fetch", "notify", keyAdmin} {
		b, err := os.ReadFile(filepath.Join(made, "google-"+job+".json"))
		if _, kerr := serviceaccount.ReadKeyFile(b); err != nil || kerr != nil {
			t.Errorf("google-%s.json: %v %v", job, err, kerr)
		}
	}
}
