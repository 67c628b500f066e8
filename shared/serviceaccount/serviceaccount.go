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
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"zoomarchive/shared/config"
)

// Setting is the key file's setting, the same for both stages.
var Setting = config.Setting{Name: "GOOGLE_APPLICATION_CREDENTIALS", Required: true,
	Usage: "path of the service account's key JSON (its token_uri is honoured)"}

// TokenSource reads the key and returns tokens for scope as subject (empty: the
// account itself), renewed before they expire. A key that cannot be read or is no
// service account key is recorded on v, and the source is nil.
func TokenSource(v *config.Values, scope, subject string) oauth2.TokenSource {
	path := v.String(Setting.Name)
	if path == "" {
		return nil // recorded as missing
	}
	key, err := os.ReadFile(path)
	if err != nil {
		v.Invalid(Setting.Name, "cannot read the key file: "+err.Error())
		return nil
	}
	conf, err := google.JWTConfigFromJSON(key, scope)
	if err != nil {
		v.Invalid(Setting.Name, "not a service account key: "+err.Error())
		return nil
	}
	conf.Subject = subject
	// Token requests go over a plain client of their own.
	base := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	return oauth2.ReuseTokenSource(nil, conf.TokenSource(base))
}

// Explain turns a token Google refused into what to fix; check says what else to
// look at when the delegation is refused (the setting naming the user). Any other
// error comes back as it is.
func Explain(err error, scope, check string) error {
	var rerr *oauth2.RetrieveError
	if !errors.As(err, &rerr) {
		return err
	}
	code, desc := rerr.ErrorCode, rerr.ErrorDescription
	if code == "" { // the JWT flow leaves the body unread
		var body struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		json.Unmarshal(rerr.Body, &body)
		code, desc = body.Error, body.ErrorDescription
	}
	switch code {
	case "unauthorized_client":
		return fmt.Errorf("google refused the token (unauthorized_client): grant the service account domain-wide delegation for scope %s in the Workspace admin console, and %s", scope, check)
	case "invalid_grant":
		return fmt.Errorf("google refused the token (invalid_grant: %s): the key in %s may be revoked, or the clock is off", desc, Setting.Name)
	case "":
		if rerr.Response != nil { // not Google's error body: a wrong token_uri, a proxy
			return fmt.Errorf("google refused the token: HTTP %s from %s", rerr.Response.Status, rerr.Response.Request.URL.Redacted())
		}
	}
	return fmt.Errorf("google refused the token: %s", strings.TrimSpace(code+" "+desc))
}
