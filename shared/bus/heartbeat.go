package bus

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// HeartbeatEvery is how often a stage says it is alive.
const HeartbeatEvery = 30 * time.Second

// Beat writes the stage's heartbeat (with what fill adds: stats, faults) into the job bucket now,
// every HeartbeatEvery and whenever now says, until ctx ends; notify alerts when
// one stops. It is a plain publish on the key's subject, so the hook, which may
// read nothing, can beat too.
func Beat(ctx context.Context, js jetstream.JetStream, stage string, fill func(*events.Heartbeat), now <-chan struct{}) {
	t := time.NewTicker(HeartbeatEvery)
	defer t.Stop()
	for {
		hb := events.Heartbeat{Stage: stage, At: time.Now().UTC()}
		if fill != nil {
			fill(&hb)
		}
		b, _ := json.Marshal(hb)
		js.Publish(ctx, events.JobSubject(events.HeartbeatKey(stage)), b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-now:
		}
	}
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
