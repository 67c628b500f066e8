package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/events"
)

// openAlert is an alert whose condition has not ended (AlertKey in the job bucket).
type openAlert struct {
	Since     time.Time `json:"since"`
	Announced bool      `json:"announced"`
}

// RaiseAlert announces a.Kind's alert once for as long as its condition lasts:
// the first call opens it and publishes a; later calls do nothing until
// ClearAlert. A crash between the record and the announcement is mended by the
// next call (the message id keeps a second mail out).
func RaiseAlert(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, a events.Alert) error {
	now := time.Now().UTC()
	rec, err := Update(ctx, kv, events.AlertKey(a.Kind), func(r *openAlert, exists bool) error {
		if exists {
			return ErrNoChange
		}
		*r = openAlert{Since: now}
		return nil
	})
	if err != nil || rec.Announced {
		return err
	}
	a.At, a.Since, a.Resolved = now, rec.Since, false
	b, _ := json.Marshal(a)
	if _, err := js.Publish(ctx, events.AlertSubject(a.Kind), b, jetstream.WithMsgID(alertID("alert", a.Kind, rec.Since))); err != nil {
		return fmt.Errorf("alert %s: %w", a.Kind, err)
	}
	_, err = Update(ctx, kv, events.AlertKey(a.Kind), func(r *openAlert, exists bool) error {
		if !exists || r.Announced || !r.Since.Equal(rec.Since) {
			return ErrNoChange
		}
		r.Announced = true
		return nil
	})
	return err
}

// ClearAlert ends kind's open alert, if there is one, with one resolved notice
// saying message.
func ClearAlert(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, kind, message string) error {
	rec, found, err := Get[openAlert](ctx, kv, events.AlertKey(kind))
	if err != nil || !found {
		return err
	}
	if rec.Announced {
		b, _ := json.Marshal(events.Alert{Kind: kind, Message: message, At: time.Now().UTC(), Since: rec.Since, Resolved: true})
		if _, err := js.Publish(ctx, events.AlertSubject(kind), b, jetstream.WithMsgID(alertID("resolved", kind, rec.Since))); err != nil {
			return fmt.Errorf("resolving alert %s: %w", kind, err)
		}
	}
	err = kv.Delete(ctx, events.AlertKey(kind))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

func alertID(what, kind string, since time.Time) string {
	return what + "-" + kind + "-" + since.Format("20060102T150405.000000000")
}

// Health is what a stage knows to be wrong that waiting will not cure (Google
// refuses its key, say): while any fault is set, /readyz fails, so compose shows
// the container unhealthy, and the heartbeat carries the faults to notify.
type Health struct {
	mu     sync.Mutex
	faults map[string]string
}

// Set records a fault under name; a nil err clears it.
func (h *Health) Set(name string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.faults, name)
		return
	}
	if h.faults == nil {
		h.faults = map[string]string{}
	}
	h.faults[name] = err.Error()
}

// Faults are the set faults, "name: error", sorted.
func (h *Health) Faults() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name, msg := range h.faults {
		out = append(out, name+": "+msg)
	}
	sort.Strings(out)
	return out
}

// Err is nil while no fault is set.
func (h *Health) Err() error {
	if f := h.Faults(); len(f) > 0 {
		return errors.New(strings.Join(f, "; "))
	}
	return nil
}
