package serviceaccount_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"zoomarchive/shared/config"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/standins"
)

// tokenSource reads the key setting as a stage does.
func tokenSource(t *testing.T, path string) (oauth2.TokenSource, error) {
	t.Helper()
	var ts oauth2.TokenSource
	err := config.Run(context.Background(), "upload", "", []config.Setting{serviceaccount.Setting}, []string{"upload"},
		func(name string) string { return map[string]string{serviceaccount.Setting.Name: path}[name] }, io.Discard, io.Discard,
		func(_ context.Context, v *config.Values) error {
			ts = serviceaccount.TokenSource(v, "https://www.googleapis.com/auth/drive", "")
			return v.Err()
		})
	return ts, err
}

func TestTokenSourceReadsTheKeyOrSaysWhy(t *testing.T) {
	g := standins.NewGoogleToken()
	defer g.Server.Close()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, path, problem string
	}{
		{"a key", write("key.json", g.KeyJSON()), ""},
		{"no such file", filepath.Join(dir, "missing.json"), "cannot read the key file"},
		{"not a key", write("other.json", []byte(`{"type":"authorized_user"}`)), "not a service account key"},
	} {
		ts, err := tokenSource(t, c.path)
		switch {
		case c.problem == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.problem == "":
			if tok, err := ts.Token(); err != nil || tok.AccessToken == "" {
				t.Errorf("%s: no token from the stand-in: %v", c.name, err)
			}
		case err == nil || !strings.Contains(err.Error(), c.problem) || !strings.Contains(err.Error(), serviceaccount.Setting.Name):
			t.Errorf("%s: %v, want %q about %s", c.name, err, c.problem, serviceaccount.Setting.Name)
		}
	}
}

func TestExplainSaysWhatToFix(t *testing.T) {
	resp := &http.Response{Status: "404 Not Found", StatusCode: 404, Request: &http.Request{URL: &url.URL{Scheme: "https", Host: "example.org", Path: "/token"}}}
	plain := errors.New("connection refused")
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"delegation missing", &oauth2.RetrieveError{ErrorCode: "unauthorized_client"}, "domain-wide delegation for scope S in the Workspace admin console, and check X"},
		{"key revoked, code in the body", &oauth2.RetrieveError{Body: []byte(`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)}, "invalid_grant: Invalid JWT Signature.): the key in GOOGLE_APPLICATION_CREDENTIALS may be revoked"},
		{"not Google's answer", &oauth2.RetrieveError{Response: resp, Body: []byte("<html>")}, "HTTP 404 Not Found from https://example.org/token"},
		{"another code", &oauth2.RetrieveError{ErrorCode: "invalid_scope", ErrorDescription: "bad scope"}, "google refused the token: invalid_scope bad scope"},
	} {
		if got := serviceaccount.Explain(c.err, "S", "check X"); !strings.Contains(got.Error(), c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if got := serviceaccount.Explain(plain, "S", "check X"); got != plain {
		t.Errorf("an error that is no refused token came back as %v", got)
	}
}
