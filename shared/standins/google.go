package standins

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// GoogleToken is a stand-in of Google's OAuth token endpoint for service accounts
// (../shared/reference/google.md §3): a form POST with the JWT-bearer grant, whose
// RS256 assertion it verifies against the test key (issuer, audience, scope,
// subject, iat/exp at most an hour apart).
type GoogleToken struct {
	Server *httptest.Server
	Key    *rsa.PrivateKey
	Email  string // the default service account

	mu     sync.Mutex
	tokens map[string]TokenGrant // access token -> what it was granted for
	// AllowedSubjects lists who the accounts may impersonate (domain-wide
	// delegation); another sub gets unauthorized_client. Empty allows any.
	AllowedSubjects []string
	// TokenTTL is an access token's life (an hour by default).
	TokenTTL time.Duration
	accounts map[string]*account // by address; the default one and AddAccount's
	made     int                 // keys made so far, for the next id
	issued   []TokenGrant
	// KeyAdmin: the default service account may manage its own keys through the
	// IAM API (roles/iam.serviceAccountKeyAdmin on itself); Google's default is no.
	KeyAdmin bool
}

// account is one service account: its keys, the scopes domain-wide delegation
// allows its client ID, and who may manage its keys.
type account struct {
	clientID string
	keys     map[string]standinKey // the keys that exist, by private_key_id
	first    string                // the key it was made with
	revoked  bool                  // see Revoke (the default account's first key)
	// delegated are the scopes the Workspace admin console lists for the client
	// ID; nil allows any (the default account, as the tests have always had it).
	delegated []string
	admins    []string // accounts with roles/iam.serviceAccountKeyAdmin on this one
	viewers   []string // accounts with roles/iam.serviceAccountViewer on this one
}

// standinKey is one key of the service account: its public half, when it was made.
type standinKey struct {
	pub     *rsa.PublicKey
	created time.Time
}

// TokenGrant is what an access token was issued for.
type TokenGrant struct {
	Account string // the service account the token is for
	Subject string
	Scopes  []string
	Expiry  time.Time
}

// ServiceAccount is the stand-in service account's address.
const ServiceAccount = "zoomarchive@standin-project.iam.gserviceaccount.com"

// NewGoogleToken starts the endpoint with a fresh 2048-bit test key.
func NewGoogleToken() *GoogleToken {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return NewGoogleTokenWithKey(key, "")
}

// NewGoogleTokenWithKey starts the endpoint for a service account whose key, id
// by its private_key_id ("": the stand-in's own first id), is made elsewhere (the
// stack test writes the key file the stages get; a rotation replaces it).
func NewGoogleTokenWithKey(key *rsa.PrivateKey, id string) *GoogleToken {
	if id == "" {
		id = firstKeyID
	}
	g := &GoogleToken{Key: key, Email: ServiceAccount, tokens: map[string]TokenGrant{},
		accounts: map[string]*account{defaultAccount: newAccount(clientID, id, key)}}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", g.serve)
	mux.HandleFunc(iamPrefix, g.iam)
	g.Server = newServer(mux)
	return g
}

// defaultAccount keys the default account in accounts: its address is Email,
// which a caller may change after NewGoogleTokenWithKey.
const defaultAccount = ""

func newAccount(clientID, id string, key *rsa.PrivateKey) *account {
	return &account{clientID: clientID, first: id,
		keys: map[string]standinKey{id: {pub: &key.PublicKey, created: time.Now().UTC().Truncate(time.Second)}}}
}

// account is the service account with the address or client ID named, or nil;
// g.mu is held.
func (g *GoogleToken) account(name string) (email string, a *account) {
	if name == g.Email || name == clientID {
		return g.Email, g.accounts[defaultAccount]
	}
	for email, a := range g.accounts {
		if email != defaultAccount && (name == email || name == a.clientID) {
			return email, a
		}
	}
	return "", nil
}

// AddAccount makes another service account of the project, with one key, whose
// client ID domain-wide delegation allows the scopes given (none: a token as a
// Workspace user is refused for every scope; as the account itself any scope is
// granted, as Google does). It returns the key file.
func (g *GoogleToken) AddAccount(email string, scopes ...string) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	g.mu.Lock()
	g.made++
	n := g.made
	g.mu.Unlock()
	file := keyJSON(key, fmt.Sprintf("standin-%s-key-%d", strings.Split(email, "@")[0], n), email, fmt.Sprintf("1000000000000000%05d", n+1), g.URL())
	if err := g.AddAccountKey(file, scopes...); err != nil {
		panic("standins: " + err.Error())
	}
	return file
}

// AddAccountKey makes the service account a key file names, with that key (the
// stack test writes the key files the stages get), delegated the scopes given as
// AddAccount's are.
func (g *GoogleToken) AddAccountKey(keyFile []byte, scopes ...string) error {
	var f struct {
		ID         string `json:"private_key_id"`
		PrivateKey string `json:"private_key"`
		Email      string `json:"client_email"`
		ClientID   string `json:"client_id"`
	}
	if err := json.Unmarshal(keyFile, &f); err != nil {
		return err
	}
	block, _ := pem.Decode([]byte(f.PrivateKey))
	if block == nil {
		return errors.New("private_key holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	key, ok := k.(*rsa.PrivateKey)
	if err != nil || !ok {
		return fmt.Errorf("private_key is not an RSA key (%v)", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, a := g.account(f.Email); a != nil || f.Email == "" || f.ID == "" {
		return fmt.Errorf("service account %q exists already, or the file names none or no key id", f.Email)
	}
	a := newAccount(f.ClientID, f.ID, key)
	a.delegated = append([]string{}, scopes...)
	g.accounts[f.Email] = a
	return nil
}

// Accounts are the addresses of the service accounts, sorted.
func (g *GoogleToken) Accounts() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []string{g.Email}
	for email := range g.accounts {
		if email != defaultAccount {
			out = append(out, email)
		}
	}
	slices.Sort(out)
	return out
}

// Delegate sets the scopes domain-wide delegation allows the account's client ID
// (the default account allows any until this is called).
func (g *GoogleToken) Delegate(email string, scopes ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, a := g.account(email); a != nil {
		a.delegated = append([]string{}, scopes...)
	}
}

// AllowKeyAdmin grants admin roles/iam.serviceAccountKeyAdmin on each of the
// accounts: admin may list, make and delete their keys through the IAM API.
func (g *GoogleToken) AllowKeyAdmin(admin string, accounts ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range accounts {
		if _, a := g.account(name); a != nil {
			a.admins = append(a.admins, admin)
		}
	}
}

// AllowKeyViewer grants viewer roles/iam.serviceAccountViewer on each of the
// accounts: viewer may list and read their keys (notify, its own key's age).
func (g *GoogleToken) AllowKeyViewer(viewer string, accounts ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range accounts {
		if _, a := g.account(name); a != nil {
			a.viewers = append(a.viewers, viewer)
		}
	}
}

// KeysOf are the ids of the keys of the account with the address given, sorted.
func (g *GoogleToken) KeysOf(email string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, a := g.account(email); a != nil {
		return slices.Sorted(maps.Keys(a.keys))
	}
	return nil
}

// URL is the token_uri of the key file.
func (g *GoogleToken) URL() string { return g.Server.URL + "/token" }

// KeyJSON is a service-account key file as Google's console makes it, pointing at
// this endpoint.
func (g *GoogleToken) KeyJSON() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return keyJSON(g.Key, g.accounts[defaultAccount].first, g.Email, clientID, g.URL())
}

// KeyJSON is a service-account key file for key, naming the account email and the
// token endpoint tokenURI (the stack test writes one for a container's endpoint).
func KeyJSON(key *rsa.PrivateKey, email, tokenURI string) []byte {
	return keyJSON(key, firstKeyID, email, clientID, tokenURI)
}

// firstKeyID is Key's private_key_id.
const firstKeyID = "standin-key-1"

func keyJSON(key *rsa.PrivateKey, id, email, clientID, tokenURI string) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	b, _ := json.MarshalIndent(map[string]string{
		"type": "service_account", "project_id": "standin-project", "private_key_id": id,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": email, "client_id": clientID,
		"auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": tokenURI,
	}, "", "  ")
	return b
}

// Grant tells what a bearer token was issued for; ok is false for unknown or
// expired tokens.
func (g *GoogleToken) Grant(r *http.Request) (TokenGrant, bool) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, ok := g.tokens[tok]
	return gr, ok && time.Now().Before(gr.Expiry)
}

// Grants are the tokens issued so far, oldest first.
func (g *GoogleToken) Grants() []TokenGrant {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]TokenGrant(nil), g.issued...)
}

// Close stops the endpoint.
func (g *GoogleToken) Close() { g.Server.Close() }

// Revoke deletes the default account's first key (true) or brings it back:
// meanwhile every token request it signs is refused with invalid_grant, as Google
// refuses a deleted key's; tokens issued before stay good until they expire, as
// Google's do.
func (g *GoogleToken) Revoke(revoked bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accounts[defaultAccount].revoked = revoked
}

// NewKey makes another key of the default service account, as the console's "Add
// key" does, and returns its id and key file.
func (g *GoogleToken) NewKey() (id string, keyFile []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.newKey(g.Email)
}

// newKey makes a key of the account with the address given; g.mu is held.
func (g *GoogleToken) newKey(email string) (id string, keyFile []byte) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	email, a := g.account(email)
	for id == "" || g.idTaken(id) {
		g.made++
		id = fmt.Sprintf("standin-key-%d", g.made)
	}
	a.keys[id] = standinKey{pub: &key.PublicKey, created: time.Now().UTC().Truncate(time.Second)}
	return id, keyJSON(key, id, email, a.clientID, g.URL())
}

// idTaken tells whether any account has, or was made with, a key of that id, so
// that ids name one key of the project as Google's do; g.mu is held.
func (g *GoogleToken) idTaken(id string) bool {
	for _, a := range g.accounts {
		if a.keys[id].pub != nil || id == a.first {
			return true
		}
	}
	return false
}

// DeleteKey deletes a key of the default account: assertions it signs are
// refused from now on.
func (g *GoogleToken) DeleteKey(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.accounts[defaultAccount].keys, id)
}

// Keys are the ids of the default account's keys that exist, sorted.
func (g *GoogleToken) Keys() []string { return g.KeysOf(g.Email) }

// SetKeyCreated backdates a key of the default account, as if it were made at t.
func (g *GoogleToken) SetKeyCreated(id string, t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.accounts[defaultAccount]
	if k, ok := a.keys[id]; ok {
		k.created = t.UTC().Truncate(time.Second)
		a.keys[id] = k
	}
}

// publicKey is the key of the account iss that kid names, or nil for a deleted or
// unknown one, or an unknown account.
func (g *GoogleToken) publicKey(iss, kid string) *rsa.PublicKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, a := g.account(iss)
	if a == nil {
		return nil
	}
	if kid == "" {
		kid = a.first
	}
	if kid == a.first && a.revoked {
		return nil
	}
	return a.keys[kid].pub
}

// lookup is account under g.mu.
func (g *GoogleToken) lookup(name string) (string, *account) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.account(name)
}

// delegates tells whether the account's client ID is allowed every scope asked
// for as a Workspace user.
func (g *GoogleToken) delegates(iss string, scopes []string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, a := g.account(iss)
	if a == nil || a.delegated == nil {
		return a != nil
	}
	for _, s := range scopes {
		if !slices.Contains(a.delegated, s) {
			return false
		}
	}
	return true
}

func (g *GoogleToken) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		fail(http.StatusNotFound, "invalid_request", "not found")
		return
	}
	r.ParseForm()
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		fail(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type.")
		return
	}
	claims, err := g.verify(r.PostForm.Get("assertion"))
	g.mu.Lock()
	ttl := g.TokenTTL
	g.mu.Unlock()
	if ttl == 0 {
		ttl = time.Hour
	}
	if err != "" {
		fail(http.StatusBadRequest, "invalid_grant", err)
		return
	}
	sub, _ := claims["sub"].(string)
	scope, _ := claims["scope"].(string)
	iss, _ := claims["iss"].(string)
	// As a Workspace user, only the subjects and scopes the admin console allows;
	// as itself, an account gets a token for any scope (what it reaches is then
	// up to who shared what with it).
	if sub != "" && (len(g.AllowedSubjects) > 0 && !contains(g.AllowedSubjects, sub) || !g.delegates(iss, strings.Fields(scope))) {
		fail(http.StatusUnauthorized, "unauthorized_client",
			"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
		return
	}
	tok := randomToken()
	g.mu.Lock()
	email, _ := g.account(iss)
	g.tokens[tok] = TokenGrant{Account: email, Subject: sub, Scopes: strings.Fields(scope), Expiry: time.Now().Add(ttl)}
	g.issued = append(g.issued, g.tokens[tok])
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds()) - 1})
}

// verify checks the assertion's RS256 signature and claims; it returns the claims
// or why they are refused.
func (g *GoogleToken) verify(assertion string) (map[string]any, string) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, "Invalid JWT: not three parts"
	}
	var header struct{ Alg, Typ, Kid string }
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if json.Unmarshal(hb, &header) != nil || header.Alg != "RS256" {
		return nil, "Invalid JWT: alg must be RS256"
	}
	var c map[string]any
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if json.Unmarshal(cb, &c) != nil {
		return nil, "Invalid JWT: claims unreadable"
	}
	iss, _ := c["iss"].(string)
	if _, a := g.lookup(iss); a == nil {
		return nil, "Invalid grant: account not found"
	}
	key := g.publicKey(iss, header.Kid)
	if key == nil {
		return nil, "Invalid JWT Signature." // Google's words for a deleted key
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, "Invalid JWT Signature."
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) != nil {
		return nil, "Invalid JWT Signature."
	}
	iat, _ := c["iat"].(float64)
	exp, _ := c["exp"].(float64)
	now := float64(time.Now().Unix())
	switch {
	case c["aud"] != g.URL():
		return nil, "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
	case exp <= iat || exp-iat > 3600 || exp < now || iat > now+60:
		return nil, "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
	case c["scope"] == nil || c["scope"] == "":
		return nil, "Invalid JWT: no scope"
	}
	return c, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
