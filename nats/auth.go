package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// The credentials folder that `broker creds DIR` writes. NATS's decentralized
// model: an operator key signs two accounts (the system account and zoomarchive's),
// and zoomarchive's account key signs one user per identity, its permissions
// (events.Permissions) inside the signed user JWT. A .creds file is that JWT and the
// user's private nkey, the format nats.go (nats.UserCredentials) and the nats CLI
// (--creds, NATS_CREDS) read as it is. The broker keeps only public JWTs, its own
// identity and the routes' password; no user secret is stored on its side. The
// operator's and the account's keys stay in DIR/keys, which only `broker creds
// --renew` reads: it signs a program's new identity, and the account anew with the
// old identity revoked.
//
//	DIR/<identity>.creds   hook, fetch, upload, notify, operator: one per client
//	DIR/keys/              the operator's and the account's keys (0600), for
//	                       broker creds --renew alone; mounted nowhere
//	DIR/broker/            the broker's side (BROKER_AUTH_DIR=DIR reads it)
//	  operator.jwt         the trust root
//	  system.jwt           the system account
//	  account.jwt          zoomarchive's account, JetStream on
//	  broker.creds         the broker's own identity: it declares the topology
//	  routes.secret        the password the nodes of a cluster give each other
const (
	brokerSide  = "broker"
	accountName = "zoomarchive"
	routeUser   = "route"
)

// CredsFile is where an identity's credentials are in the folder.
func CredsFile(dir, identity string) string {
	if identity == events.IdentityBroker {
		return filepath.Join(dir, brokerSide, identity+".creds")
	}
	return filepath.Join(dir, identity+".creds")
}

// ErrCredsExist refuses to overwrite a credentials set that programs may be using.
var ErrCredsExist = errors.New("already holds credentials; a fresh set would lock out every program using them (--force replaces them)")

// WriteCreds makes a fresh set of identities in dir. Files are 0640 and folders
// 0750, so that a group (the containers' user) may read what it is given.
func WriteCreds(dir string, force bool) error {
	if _, err := os.Stat(filepath.Join(dir, brokerSide, "operator.jwt")); err == nil && !force {
		return fmt.Errorf("%s %w", dir, ErrCredsExist)
	}
	op, err := nkeys.CreateOperator()
	if err != nil {
		return err
	}
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = accountName
	sys, sysPub, sysJWT, err := newAccount(op, "SYS", false)
	if err != nil {
		return err
	}
	sys.Wipe()
	defer op.Wipe()
	acc, _, accJWT, err := newAccount(op, accountName, true)
	if err != nil {
		return err
	}
	defer acc.Wipe()
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return err
	}
	opSeed, _ := op.Seed()
	accSeed, _ := acc.Seed()
	secret := make([]byte, 32)
	rand.Read(secret)
	files := map[string][]byte{
		filepath.Join(brokerSide, "operator.jwt"):  []byte(opJWT),
		filepath.Join(brokerSide, "system.jwt"):    []byte(sysJWT),
		filepath.Join(brokerSide, "account.jwt"):   []byte(accJWT),
		filepath.Join(brokerSide, "routes.secret"): []byte(base64.RawURLEncoding.EncodeToString(secret)),
	}
	for _, id := range append([]string{events.IdentityBroker}, events.ClientIdentities...) {
		creds, err := newUser(acc, id)
		if err != nil {
			return fmt.Errorf("identity %s: %w", id, err)
		}
		rel, _ := filepath.Rel(dir, CredsFile(dir, id))
		files[rel] = creds
	}
	if err := os.MkdirAll(filepath.Join(dir, brokerSide), 0o750); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, keysDir), 0o700); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"operator.nk": opSeed, "account.nk": accSeed} {
		if err := config.WriteAtomic(filepath.Join(dir, keysDir, name), b, 0o600); err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := config.WriteAtomic(filepath.Join(dir, name), b, 0o640); err != nil {
			return err
		}
	}
	return nil
}

const keysDir = "keys"

// ErrNoKeys: a set written before identities could be renewed one by one.
var ErrNoKeys = errors.New("holds no keys to sign with (a set made before renewals): make a fresh set once (broker creds --force), give every program its file and restart them")

// RenewCreds gives identity a new key in dir, written over its .creds file in
// place (the program's mount follows the file), and revokes the old one in the
// account, which the broker applies BROKER_REVOKE_GRACE after it sees the change:
// the program takes its new file well before (config.WatchEvery). It returns the
// old and the new public key.
func RenewCreds(dir, identity string) (oldPub, newPub string, err error) {
	if !slices.Contains(events.ClientIdentities, identity) {
		return "", "", fmt.Errorf("%q is not a program's identity (one of %v)", identity, events.ClientIdentities)
	}
	seed := func(name string) (nkeys.KeyPair, error) {
		b, err := os.ReadFile(filepath.Join(dir, keysDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %w", dir, ErrNoKeys)
		}
		if err != nil {
			return nil, err
		}
		return nkeys.FromSeed(b)
	}
	op, err := seed("operator.nk")
	if err != nil {
		return "", "", err
	}
	defer op.Wipe()
	acc, err := seed("account.nk")
	if err != nil {
		return "", "", err
	}
	defer acc.Wipe()
	accPub, _ := acc.PublicKey()
	accFile := filepath.Join(dir, brokerSide, "account.jwt")
	b, err := os.ReadFile(accFile)
	if err != nil {
		return "", "", err
	}
	ac, err := jwt.DecodeAccountClaims(string(b))
	if err != nil || ac.Subject != accPub {
		return "", "", fmt.Errorf("%s is not the account of %s (%v)", accFile, filepath.Join(dir, keysDir), err)
	}
	credsFile := CredsFile(dir, identity)
	if old, err := os.ReadFile(credsFile); err == nil {
		oldPub = userKey(old)
	}
	creds, err := newUser(acc, identity)
	if err != nil {
		return "", "", err
	}
	err = config.WriteInPlace(credsFile, creds)
	if errors.Is(err, fs.ErrNotExist) {
		err = config.WriteAtomic(credsFile, creds, 0o640)
	}
	if err != nil {
		return "", "", err
	}
	if oldPub != "" {
		ac.Revoke(oldPub)
		s, err := ac.Encode(op)
		if err != nil {
			return "", "", err
		}
		if err := config.WriteAtomic(accFile, []byte(s), 0o640); err != nil {
			return "", "", err
		}
	}
	return oldPub, userKey(creds), nil
}

// userKey is the public key of the user a .creds file holds, or "".
func userKey(creds []byte) string {
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return ""
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return ""
	}
	return uc.Subject
}

func newAccount(op nkeys.KeyPair, name string, jetStream bool) (nkeys.KeyPair, string, string, error) {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return nil, "", "", err
	}
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if jetStream {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	s, err := ac.Encode(op)
	return kp, pub, s, err
}

func newUser(acc nkeys.KeyPair, identity string) ([]byte, error) {
	perm, ok := events.Permissions[identity]
	if !ok {
		return nil, errors.New("no permissions in events.Permissions")
	}
	u, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	defer u.Wipe()
	pub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = identity
	uc.Pub.Allow.Add(perm.Publish...)
	uc.Pub.Deny.Add(perm.DenyPublish...)
	uc.Sub.Allow.Add(perm.Subscribe...)
	uc.Sub.Allow.Add(events.Inbox(identity) + ".>")
	s, err := uc.Encode(acc)
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(s, seed)
}

// trust is the broker's side of the credentials folder.
type trust struct {
	operator     *jwt.OperatorClaims
	accounts     map[string]string // public key -> JWT
	system       string
	adminCreds   string
	routesSecret string
}

// readTrust reads dir/broker, naming the file that is missing or bad.
func readTrust(dir string) (*trust, error) {
	side := filepath.Join(dir, brokerSide)
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(side, name))
		if err != nil {
			return "", fmt.Errorf("%w (write a set with: broker creds %s)", err, dir)
		}
		return string(b), nil
	}
	t := &trust{accounts: map[string]string{}, adminCreds: CredsFile(dir, events.IdentityBroker)}
	opJWT, err := read("operator.jwt")
	if err != nil {
		return nil, err
	}
	if t.operator, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(side, "operator.jwt"), err)
	}
	for _, name := range []string{"system.jwt", "account.jwt"} {
		s, err := read(name)
		if err != nil {
			return nil, err
		}
		ac, err := jwt.DecodeAccountClaims(s)
		if err != nil || ac.Issuer != t.operator.Subject {
			return nil, fmt.Errorf("%s: not an account of this folder's operator (%v)", filepath.Join(side, name), err)
		}
		t.accounts[ac.Subject] = s
		if name == "system.jwt" {
			t.system = ac.Subject
		}
	}
	if _, err := os.Stat(t.adminCreds); err != nil {
		return nil, fmt.Errorf("%w (write a set with: broker creds %s)", err, dir)
	}
	if t.routesSecret, err = read("routes.secret"); err != nil {
		return nil, err
	}
	return t, nil
}

// apply makes the server accept only the folder's identities, and its routes only
// from nodes that know the routes' password.
func (t *trust) apply(opts *server.Options) error {
	opts.TrustedOperators = []*jwt.OperatorClaims{t.operator}
	opts.SystemAccount = t.system
	res := &server.MemAccResolver{}
	for pub, s := range t.accounts {
		if err := res.Store(pub, s); err != nil {
			return err
		}
	}
	opts.AccountResolver = res
	if opts.Cluster.Port != 0 {
		opts.Cluster.Username, opts.Cluster.Password = routeUser, t.routesSecret
		for _, r := range opts.Routes {
			r.User = url.UserPassword(routeUser, t.routesSecret)
		}
	}
	return nil
}

// watchAccount applies a changed DIR/broker/account.jwt to the running server
// grace after it appears (an identity revoked by a renewal: its program takes its
// new file within config.WatchEvery, before the old one stops working);
// connections of revoked identities are closed.
func watchAccount(ctx context.Context, s *server.Server, dir string, grace time.Duration, log *slog.Logger) {
	config.WatchFile(ctx, filepath.Join(dir, brokerSide, "account.jwt"), config.WatchEvery, func(content string, err error) {
		t, terr := readTrust(dir)
		var ac *jwt.AccountClaims
		if err == nil {
			err = terr
		}
		if err == nil {
			if ac, err = jwt.DecodeAccountClaims(content); err == nil && ac.Issuer != t.operator.Subject {
				err = errors.New("not signed by this broker's operator")
			}
		}
		if err != nil {
			log.Error("the changed account cannot be used; the one in use stays", "err", err)
			return
		}
		log.Info("the account changed; applying it after the grace", "revocations", len(ac.Revocations), "in", grace)
		select {
		case <-ctx.Done():
			return
		case <-time.After(grace):
		}
		acc, err := s.LookupAccount(ac.Subject)
		if err != nil {
			log.Error("the changed account is not one this broker serves", "err", err)
			return
		}
		s.UpdateAccountClaims(acc, ac)
		log.Info("account updated", "revocations", len(ac.Revocations))
	})
}
