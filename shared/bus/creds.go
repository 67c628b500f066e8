package bus

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// The credentials a stage uses, as its heartbeat tells them (the digest's ages,
// rotate-key's wait), and its broker identity renewed without a restart (broker
// creds --renew): the connection signs with credentials held in memory, which the
// watch of NATS_CREDS replaces only with a file the broker takes (one connection
// tried with it), and then reconnects at once. A file that does not read, or that
// the broker refuses, leaves the identity in use, on this and every later
// reconnect.

// heldCreds is a user JWT and its key, as a .creds file holds them.
type heldCreds struct {
	mu   sync.Mutex
	jwt  string
	seed []byte
	pub  string // the user's public key, named in the heartbeat
	name string // the identity (events.Identity*)
}

func readHeld(b []byte) (*heldCreds, error) {
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, err
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("not a NATS credentials file: %w", err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return nil, fmt.Errorf("no user key: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	// A copy: Wipe overwrites the key's own bytes.
	return &heldCreds{jwt: tok, seed: bytes.Clone(seed), pub: uc.Subject, name: uc.Name}, nil
}

func (h *heldCreds) userJWT() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.jwt, nil
}

func (h *heldCreds) sign(nonce []byte) ([]byte, error) {
	h.mu.Lock()
	kp, err := nkeys.FromSeed(h.seed)
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer kp.Wipe()
	return kp.Sign(nonce)
}

func (h *heldCreds) take(n *heldCreds) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.jwt, h.seed, h.pub, h.name = n.jwt, n.seed, n.pub, n.name
}

// watchCreds follows NATS_CREDS until ctx ends.
func (c *Conn) watchCreds(ctx context.Context) {
	held := c.cfg.held
	cred := c.FileCredential(events.CredentialBroker, c.cfg.Creds, held.pub)
	config.WatchFile(ctx, c.cfg.Creds, config.WatchEvery, func(content string, err error) {
		var n *heldCreds
		if err == nil {
			n, err = readHeld([]byte(content))
		}
		if err == nil {
			err = c.tryCreds(n)
		}
		if err != nil {
			c.log.Error("NATS_CREDS cannot be used; the identity in use stays", "err", err)
			cred.Refused("", fmt.Errorf("NATS_CREDS cannot be used (the identity in use stays): %w", err))
			return
		}
		held.take(n)
		if err := c.NC.ForceReconnect(); err != nil {
			c.log.Warn("cannot reconnect with the renewed identity now; the next reconnect uses it", "err", err)
		}
		cred.Taken(n.pub)
		c.log.Info("broker identity renewed", "user", n.pub)
	})
}

// tryCreds connects once with n, as the identity of the connection in use.
func (c *Conn) tryCreds(n *heldCreds) error {
	if n.name != c.cfg.Identity {
		return fmt.Errorf("it holds the identity %q, not %q", n.name, c.cfg.Identity)
	}
	nc, err := nats.Connect(c.cfg.URL, nats.UserJWT(n.userJWT, n.sign), nats.Timeout(5*time.Second), nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("the broker refuses it: %w", err)
	}
	nc.Close()
	return nil
}

// Credentials are what a stage's heartbeat says of the credentials it uses; a
// change goes out at once (rotate-key waits for it).
type Credentials struct {
	mu      sync.Mutex
	creds   map[string]events.Credential
	changed chan struct{}
}

func newCredentials() *Credentials {
	return &Credentials{creds: map[string]events.Credential{}, changed: make(chan struct{}, 1)}
}

// Set records the credential in use under name (events.Credential*).
func (c *Credentials) Set(name string, cred events.Credential) {
	c.mu.Lock()
	c.creds[name] = cred
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *Credentials) all() map[string]events.Credential {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.creds)
}

// FileCredential is a credential that a file holds and the stage takes again
// when the file changes.
type FileCredential struct {
	name, path string
	creds      *Credentials
	health     *Health
	mu         sync.Mutex
	inUse      events.Credential
}

// FileCredential follows the credential name (events.Credential*) in the file at
// path, in use now as id (a Google key's; "" for a secret).
func (c *Conn) FileCredential(name, path, id string) *FileCredential {
	f := &FileCredential{name: name, path: path, creds: c.Creds, health: c.Health,
		inUse: events.Credential{ID: id, Since: config.Modified(path)}}
	f.creds.Set(name, f.inUse)
	return f
}

// Taken: the stage uses what the file holds now (id for a key).
func (f *FileCredential) Taken(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse = events.Credential{ID: id, Since: config.Modified(f.path)}
	f.health.Set(f.name, nil)
	f.creds.Set(f.name, f.inUse)
}

// Refused: the file holds what the stage cannot use (refusedID, when it names a
// key); the credential in use stays, and /readyz fails until the file is fixed.
func (f *FileCredential) Refused(refusedID string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.health.Set(f.name, err)
	c := f.inUse
	c.Problem, c.RefusedID = err.Error(), refusedID
	f.creds.Set(f.name, c)
}
