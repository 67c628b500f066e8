package standins

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// The IAM API's service account keys (projects.serviceAccounts.keys: list, get,
// create, delete: cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys) on the token endpoint's server,
// over the keys that endpoint takes: a key made here signs for tokens at once, a
// key deleted here is refused from then on. The caller is a service account (no
// subject) with the cloud-platform or iam scope that holds the key admin role on
// the account (AllowKeyAdmin; KeyAdmin for the default account on itself), or,
// to list and get them, the viewer role (AllowKeyViewer).

const iamPrefix = "/v1/projects/"

// IAMURL is the IAM API's root (iam.googleapis.com) on this stand-in.
func (g *GoogleToken) IAMURL() string { return g.Server.URL + "/" }

// maxKeys is Google's limit of user-managed keys a service account may have.
const maxKeys = 10

func (g *GoogleToken) iam(w http.ResponseWriter, r *http.Request) {
	// /v1/projects/{project}/serviceAccounts/{account}/keys[/{key}]
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, iamPrefix), "/")
	if len(parts) < 4 || parts[1] != "serviceAccounts" || parts[3] != "keys" || len(parts) > 5 {
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "", "", "Requested entity was not found.")
		return
	}
	id := ""
	if len(parts) == 5 {
		id = parts[4]
	}
	var verb string
	switch {
	case r.Method == http.MethodGet && id == "":
		verb = "list"
	case r.Method == http.MethodGet:
		verb = "get"
	case r.Method == http.MethodPost && id == "":
		verb = "create"
	case r.Method == http.MethodDelete && id != "":
		verb = "delete"
	default:
		rpcError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "", "", "Method not allowed.")
		return
	}
	grant, ok := g.Grant(r)
	if !ok {
		rpcError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "ACCESS_TOKEN_EXPIRED", "",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
		return
	}
	if !slices.Contains(grant.Scopes, "https://www.googleapis.com/auth/cloud-platform") && !slices.Contains(grant.Scopes, "https://www.googleapis.com/auth/iam") {
		rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "", "Request had insufficient authentication scopes.")
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	email, acct := g.account(parts[2])
	reads := verb == "list" || verb == "get"
	if grant.Subject != "" || acct == nil || !g.mayManage(grant.Account, email, acct) && !(reads && slices.Contains(acct.viewers, grant.Account)) {
		// Google says the same whether the account is missing or the caller may not.
		perm := "iam.serviceAccountKeys." + verb
		rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "IAM_PERMISSION_DENIED", perm,
			fmt.Sprintf("Permission '%s' denied on resource (or it may not exist).", perm))
		return
	}
	name := func(id string) string {
		return fmt.Sprintf("projects/standin-project/serviceAccounts/%s/keys/%s", email, id)
	}
	key := func(id string, k standinKey) map[string]any {
		return map[string]any{"name": name(id), "keyAlgorithm": "KEY_ALG_RSA_2048", "keyOrigin": "GOOGLE_PROVIDED", "keyType": "USER_MANAGED",
			"validAfterTime": k.created.Format(time.RFC3339), "validBeforeTime": "9999-12-31T23:59:59Z"}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	switch verb {
	case "list":
		ids := make([]string, 0, len(acct.keys))
		for id := range acct.keys {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var keys []map[string]any
		for _, id := range ids {
			keys = append(keys, key(id, acct.keys[id]))
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	case "get", "delete":
		k, ok := acct.keys[id]
		if !ok {
			rpcError(w, http.StatusNotFound, "NOT_FOUND", "", "", "Service account key "+id+" does not exist.")
			return
		}
		if verb == "get" {
			json.NewEncoder(w).Encode(key(id, k))
			return
		}
		delete(acct.keys, id)
		w.Write([]byte("{}\n"))
	case "create":
		if len(acct.keys) >= maxKeys {
			rpcError(w, http.StatusBadRequest, "FAILED_PRECONDITION", "", "", "Precondition check failed.")
			return
		}
		var body struct{ PrivateKeyType string }
		json.NewDecoder(r.Body).Decode(&body)
		if body.PrivateKeyType != "" && body.PrivateKeyType != "TYPE_GOOGLE_CREDENTIALS_FILE" {
			rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "", "", "Only TYPE_GOOGLE_CREDENTIALS_FILE is made here.")
			return
		}
		id, file := g.newKey(email)
		out := key(id, acct.keys[id])
		out["privateKeyType"] = "TYPE_GOOGLE_CREDENTIALS_FILE"
		out["privateKeyData"] = base64.StdEncoding.EncodeToString(file)
		json.NewEncoder(w).Encode(out)
	}
}

// mayManage tells whether caller holds the key admin role on the account email;
// g.mu is held.
func (g *GoogleToken) mayManage(caller, email string, acct *account) bool {
	if caller == email && email == g.Email && g.KeyAdmin {
		return true
	}
	return slices.Contains(acct.admins, caller)
}

// clientID is the stand-in account's unique id, which names it as well as its address.
const clientID = "100000000000000000001"

// rpcError writes the error body of Google's newer APIs (google.rpc.Status), which
// googleapi.CheckResponse reads; reason, when given, goes in an ErrorInfo detail.
func rpcError(w http.ResponseWriter, status int, code, reason, permission, msg string) {
	e := map[string]any{"code": status, "message": msg, "status": code}
	if reason != "" {
		info := map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "iam.googleapis.com"}
		if permission != "" {
			info["metadata"] = map[string]string{"permission": permission}
		}
		e["details"] = []any{info}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": e})
}
