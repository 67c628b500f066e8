package bus

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost: another worker wrote the record, so this one no longer holds it.
var ErrLeaseLost = errors.New("another worker took this over")

// Leased is a JSON record in a key-value bucket that one worker holds at a time,
// for as long as it renews its lease: a download's or an upload's resume point.
// Every write is revision-checked, so a worker that lost the lease cannot
// overwrite its successor.
type Leased[T any] struct {
	kv  jetstream.KeyValue
	key string
	ttl time.Duration
	mu  sync.Mutex
	rev uint64
	rec leaseRecord[T]
}

type leaseRecord[T any] struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"lease_until"`
	Val   T         `json:"state"`
}

// Claim takes the record at key, naming owner as its holder (for people reading
// the bucket). While a lease still runs, it returns nil and how long to wait
// before trying again.
func Claim[T any](ctx context.Context, kv jetstream.KeyValue, key, owner string, ttl time.Duration) (*Leased[T], time.Duration, error) {
	l := &Leased[T]{kv: kv, key: key, ttl: ttl}
	entry, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, 0, err
	default:
		l.rev = entry.Revision()
		if json.Unmarshal(entry.Value(), &l.rec) != nil {
			l.rec = leaseRecord[T]{} // unreadable: start afresh
		}
		// A live lease is held even against its own owner's name: one process runs
		// several workers, and two of them must never work one record.
		if time.Now().Before(l.rec.Until) {
			return nil, time.Until(l.rec.Until) + 100*time.Millisecond, nil
		}
	}
	l.rec.Owner = owner
	if err := l.Save(ctx, nil); errors.Is(err, ErrLeaseLost) {
		return nil, time.Second, nil // claimed by someone else between our read and write
	} else if err != nil {
		return nil, 0, err
	}
	return l, 0, nil
}

// Get is the current value.
func (l *Leased[T]) Get() T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Val
}

// Save applies change (if any), renews the lease and writes the record.
func (l *Leased[T]) Save(ctx context.Context, change func(*T)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if change != nil {
		change(&l.rec.Val)
	}
	l.rec.Until = time.Now().Add(l.ttl)
	return l.write(ctx)
}

// Renew extends the lease.
func (l *Leased[T]) Renew(ctx context.Context) error { return l.Save(ctx, nil) }

// Release ends the lease now, keeping the value, so the next worker need not wait.
func (l *Leased[T]) Release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec.Until = time.Time{}
	l.write(ctx)
}

// Delete removes the record; the work is done.
func (l *Leased[T]) Delete(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
}

func (l *Leased[T]) write(ctx context.Context) error {
	b, err := json.Marshal(l.rec)
	if err != nil {
		return err
	}
	var rev uint64
	if l.rev == 0 {
		rev, err = l.kv.Create(ctx, l.key, b)
	} else {
		rev, err = l.kv.Update(ctx, l.key, b, l.rev)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return ErrLeaseLost
	}
	if err != nil {
		return err
	}
	l.rev = rev
	return nil
}

// Heartbeat renews the lease every ttl/3 until ctx ends, calling also for each beat
// (to keep a JetStream message in progress, say).
func (l *Leased[T]) Heartbeat(ctx context.Context, also func()) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if also != nil {
				also()
			}
			l.Renew(ctx)
		}
	}
}

// Abandoned lists the records under filter whose lease ran out without a release
// or a delete: the worker that held them died with them. A record released on
// purpose (to wait for a later attempt) is not among them.
func Abandoned(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	keys, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	var out []string
	now := time.Now()
	for key := range keys.Keys() {
		rec, found, err := Get[leaseRecord[json.RawMessage]](ctx, kv, key)
		if err == nil && found && !rec.Until.IsZero() && now.After(rec.Until) {
			out = append(out, key)
		}
	}
	return out, nil
}

// Peek reads a leased record's value without claiming it.
func Peek[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, bool, error) {
	rec, found, err := Get[leaseRecord[T]](ctx, kv, key)
	return rec.Val, found, err
}
