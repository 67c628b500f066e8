// Package serviceaccount is the Google service account upload and notify share:
// its key read from GOOGLE_APPLICATION_CREDENTIALS for one scope (acting as a
// Workspace user through domain-wide delegation, or as itself), and a token Google
// refuses turned into what to fix.
package serviceaccount

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// Setting is the key file's setting, the same for both stages.
var Setting = config.Setting{Name: "GOOGLE_APPLICATION_CREDENTIALS", Required: true,
	Usage: "path of the service account's key JSON (its token_uri is honoured); read again when the file changes, and taken once Google gives a token for it"}

// DriveSettings say where the archive is in Drive, for upload, which files into
// it, and for fetch, which reads it back before the trash.
var DriveSettings = []config.Setting{
	{Name: "DRIVE_FOLDER_ID", Required: true, Usage: "the Drive folder everything is filed under"},
	{Name: "DRIVE_IMPERSONATE", Usage: "the Workspace user to act as (domain-wide delegation); empty: the service account itself, which only works in a shared drive"},
	{Name: "GOOGLE_API_URL", Default: "https://www.googleapis.com/", Usage: "Google's API root (metadata under drive/v3/, uploads under upload/drive/v3/)"},
}

// Key is the service account's tokens for one scope and subject, from the key
// file; Watch switches it to a new key file without a restart.
type Key struct {
	scope, subject string
	mu             sync.Mutex
	src            oauth2.TokenSource
	id             string // the private_key_id in use
}

// TokenSource reads the key and returns tokens for scope as subject (empty: the
// account itself), renewed before they expire. A key that cannot be read or is no
// service account key is recorded on v, and the source is nil.
func TokenSource(v *config.Values, scope, subject string) *Key {
	path := v.String(Setting.Name)
	if path == "" {
		return nil // recorded as missing
	}
	b, err := os.ReadFile(path)
	if err != nil {
		v.Invalid(Setting.Name, "cannot read the key file: "+err.Error())
		return nil
	}
	k, err := FromJSON(b, scope, subject)
	if err != nil {
		v.Invalid(Setting.Name, err.Error())
		return nil
	}
	return k
}

// FromJSON is the tokens of the key in keyFile for scope as subject.
func FromJSON(keyFile []byte, scope, subject string) (*Key, error) {
	k := &Key{scope: scope, subject: subject}
	var err error
	k.src, k.id, err = k.source(keyFile)
	return k, err
}

// source is the tokens of the key in keyFile, and its id.
func (k *Key) source(keyFile []byte) (oauth2.TokenSource, string, error) {
	kf, err := ReadKeyFile(keyFile)
	if err != nil {
		return nil, "", err
	}
	conf, err := google.JWTConfigFromJSON(keyFile, k.scope)
	if err != nil {
		return nil, "", fmt.Errorf("not a service account key: %w", err)
	}
	conf.Subject = k.subject
	// Token requests go over a plain client of their own.
	base := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	return oauth2.ReuseTokenSource(nil, conf.TokenSource(base)), kf.ID, nil
}

// ID is the private_key_id of the key in use.
func (k *Key) ID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}

// Token is a token of the key in use.
func (k *Key) Token() (*oauth2.Token, error) {
	k.mu.Lock()
	src := k.src
	k.mu.Unlock()
	return src.Token()
}

// Watch reads the key file at path again whenever it changes (config.WatchFile)
// and switches to the new key once Google gives a token for it; requests under way
// finish with the old key's token. A file that does not read as a key, or a key
// Google refuses, leaves the key in use; cred hears which key is in use, or what
// was refused, and log says so either way.
func (k *Key) Watch(ctx context.Context, path string, log *slog.Logger, conn *bus.Conn) {
	cred := conn.FileCredential(events.CredentialGoogleKey, path, k.ID())
	config.WatchFile(ctx, path, config.WatchEvery, func(content string, err error) {
		var src oauth2.TokenSource
		var id string
		if err == nil {
			src, id, err = k.source([]byte(content))
		}
		if err == nil {
			if _, err = src.Token(); err != nil {
				err = Explain(err, k.scope, "that the new key belongs to the same service account")
			}
		}
		if err != nil {
			log.Error(Setting.Name+" cannot be used; the key in use stays", "err", err, "key_id", k.ID())
			cred.Refused(id, fmt.Errorf("%s: the new key cannot be used (the earlier one stays in use): %w", Setting.Name, err))
			return
		}
		k.mu.Lock()
		k.src, k.id = src, id
		k.mu.Unlock()
		cred.Taken(id)
		log.Info("the new Google key is in use", "key_id", id)
	})
}

// Explain turns a token Google refused into what to fix; check says what else to
// look at when the delegation is refused (the setting naming the user). Any other
// error comes back as it is.
func Explain(err error, scope, check string) error {
	var rerr *oauth2.RetrieveError
	if !errors.As(err, &rerr) {
		return err
	}
	code, desc := refusal(rerr)
	why := func(format string, a ...any) error { return explained{fmt.Sprintf(format, a...), err} }
	switch code {
	case "unauthorized_client":
		return why("google refused the token (unauthorized_client): grant the service account domain-wide delegation for scope %s in the Workspace admin console, and %s", scope, check)
	case "invalid_grant":
		return why("google refused the token (invalid_grant: %s): the key in %s may be revoked, or the clock is off", desc, Setting.Name)
	case "":
		if rerr.Response != nil { // not Google's error body: a wrong token_uri, a proxy
			return why("google refused the token: HTTP %s from %s", rerr.Response.Status, rerr.Response.Request.URL.Redacted())
		}
	}
	return why("google refused the token: %s", strings.TrimSpace(code+" "+desc))
}

// explained is a refusal said in words, the refusal itself kept for errors.As.
type explained struct {
	msg string
	err error
}

func (e explained) Error() string { return e.msg }
func (e explained) Unwrap() error { return e.err }

// ErrorCode is the OAuth error code of a token Google refused (invalid_grant,
// unauthorized_client), or "" for any other error.
func ErrorCode(err error) string {
	var rerr *oauth2.RetrieveError
	if !errors.As(err, &rerr) {
		return ""
	}
	code, _ := refusal(rerr)
	return code
}

// refusal is the error code and description of Google's refusal.
func refusal(rerr *oauth2.RetrieveError) (code, desc string) {
	code, desc = rerr.ErrorCode, rerr.ErrorDescription
	if code == "" { // the JWT flow leaves the body unread
		var body struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		json.Unmarshal(rerr.Body, &body)
		code, desc = body.Error, body.ErrorDescription
	}
	return code, desc
}
