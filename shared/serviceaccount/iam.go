package serviceaccount

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/iam/v1"
	"google.golang.org/api/option"

	"zoomarchive/shared/config"
)

// IAMSetting is the IAM API's root, for the key's age and its rotation.
var IAMSetting = config.Setting{Name: "GOOGLE_IAM_URL", Default: "https://iam.googleapis.com/",
	Usage: "the IAM API's root, asked for the key's age and used by rotate-key"}

// KeyAdminRole is the role the key-admin account needs on each stage's account
// to rotate its key (docs/deploying.md, Google identities); KeyViewerRole lets an account
// read its own keys' ages and nothing more.
const (
	KeyAdminRole  = "roles/iam.serviceAccountKeyAdmin"
	KeyViewerRole = "roles/iam.serviceAccountViewer"
)

// KeyFile is what a key file says of itself (no secret).
type KeyFile struct {
	ID       string `json:"private_key_id"`
	Account  string `json:"client_email"`
	ClientID string `json:"client_id"`
	Type     string `json:"type"`
}

// ReadKeyFile reads the fields of a key file that name it.
func ReadKeyFile(b []byte) (KeyFile, error) {
	var k KeyFile
	if err := json.Unmarshal(b, &k); err != nil || k.Type != "service_account" || k.ID == "" || k.Account == "" {
		return k, errors.New("not a service account key file (type service_account with private_key_id and client_email)")
	}
	return k, nil
}

// IAMKeys is the IAM API's view of one service account's keys, asked as the
// account whose key it was given (the key admin, or the account itself).
type IAMKeys struct {
	svc     *iam.Service
	account string // projects/-/serviceAccounts/<email>
	caller  string // the account asking
}

// IAM is the keys of account (empty: the caller's own), reached with the key in
// callerKey.
func IAM(ctx context.Context, callerKey []byte, account, iamURL string) (*IAMKeys, error) {
	k, err := ReadKeyFile(callerKey)
	if err != nil {
		return nil, err
	}
	// The iam scope, not cloud-platform: the token is good for the IAM API alone.
	tokens, err := FromJSON(callerKey, IAMScope, "")
	if err != nil {
		return nil, err
	}
	svc, err := iam.NewService(ctx, option.WithTokenSource(tokens), option.WithEndpoint(iamURL))
	if err != nil {
		return nil, err
	}
	return &IAMKeys{svc: svc, account: "projects/-/serviceAccounts/" + cmp.Or(account, k.Account), caller: k.Account}, nil
}

// AccountKey is one of the account's keys at Google.
type AccountKey struct {
	ID      string
	Created time.Time
}

// List is the account's keys that people made (not Google's own).
func (k *IAMKeys) List(ctx context.Context) ([]AccountKey, error) {
	res, err := k.svc.Projects.ServiceAccounts.Keys.List(k.account).KeyTypes("USER_MANAGED").Context(ctx).Do()
	if err != nil {
		return nil, k.explain(err, "list")
	}
	var out []AccountKey
	for _, key := range res.Keys {
		out = append(out, keyOf(key))
	}
	return out, nil
}

// Created is when the key id was made.
func (k *IAMKeys) Created(ctx context.Context, id string) (time.Time, error) {
	key, err := k.svc.Projects.ServiceAccounts.Keys.Get(k.account + "/keys/" + id).Context(ctx).Do()
	if err != nil {
		return time.Time{}, k.explain(err, "get")
	}
	return keyOf(key).Created, nil
}

// Create makes a key and returns it with its key file.
func (k *IAMKeys) Create(ctx context.Context) (AccountKey, []byte, error) {
	key, err := k.svc.Projects.ServiceAccounts.Keys.Create(k.account, &iam.CreateServiceAccountKeyRequest{
		PrivateKeyType: "TYPE_GOOGLE_CREDENTIALS_FILE"}).Context(ctx).Do()
	if err != nil {
		return AccountKey{}, nil, k.explain(err, "create")
	}
	file, err := base64.StdEncoding.DecodeString(key.PrivateKeyData)
	if err != nil {
		return AccountKey{}, nil, fmt.Errorf("google's new key does not decode: %w", err)
	}
	return keyOf(key), file, nil
}

// Delete deletes the key id; one already gone is no error.
func (k *IAMKeys) Delete(ctx context.Context, id string) error {
	_, err := k.svc.Projects.ServiceAccounts.Keys.Delete(k.account + "/keys/" + id).Context(ctx).Do()
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == http.StatusNotFound {
		return nil
	}
	return k.explain(err, "delete")
}

func keyOf(key *iam.ServiceAccountKey) AccountKey {
	created, _ := time.Parse(time.RFC3339, key.ValidAfterTime)
	return AccountKey{ID: path.Base(key.Name), Created: created}
}

// ErrNotKeyAdmin: the account asking may not manage the keys it asked about.
var ErrNotKeyAdmin = errors.New("the service account may not manage these keys")

// explain says what to fix when IAM refuses verb on the account's keys.
func (k *IAMKeys) explain(err error, verb string) error {
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return err
	}
	switch {
	case gerr.Code == http.StatusForbidden && reasonIs(gerr, "SERVICE_DISABLED"):
		return fmt.Errorf("the IAM API is not enabled in the service account's project: enable iam.googleapis.com (gcloud services enable iam.googleapis.com): %w", err)
	case gerr.Code == http.StatusForbidden && !reasonIs(gerr, "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
		role := KeyAdminRole
		if verb == "get" { // notify asking its own key's age
			role = KeyViewerRole + " (to read its keys' ages only)"
		}
		return fmt.Errorf("%w (iam.serviceAccountKeys.%s refused): grant %s %s on %s (docs/deploying.md, Google identities): %v",
			ErrNotKeyAdmin, verb, k.caller, role, path.Base(k.account), err)
	case gerr.Code == http.StatusBadRequest && status(gerr) == "FAILED_PRECONDITION":
		return fmt.Errorf("google refused a new key (the account has its 10 keys, or an organisation policy forbids keys): %w", err)
	}
	return err
}

// reasonIs tells whether gerr carries reason in an ErrorInfo detail.
func reasonIs(gerr *googleapi.Error, reason string) bool {
	for _, d := range gerr.Details {
		if m, ok := d.(map[string]any); ok && m["reason"] == reason {
			return true
		}
	}
	return false
}

// status is the google.rpc status of gerr's body (FAILED_PRECONDITION, ...).
func status(gerr *googleapi.Error) string {
	var body struct {
		Error struct{ Status string } `json:"error"`
	}
	json.Unmarshal([]byte(gerr.Body), &body)
	return body.Error.Status
}
