package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/config"
	"zoomarchive/shared/retry"
)

// ErrNoChange tells Update that fn decided to write nothing.
var ErrNoChange = errors.New("no change")

// Update reads the JSON value at key, lets fn change it, and writes it back only if
// nobody wrote the key in between (a revision check), trying again on a conflict.
// exists is false for a missing key, which is then created. fn returning ErrNoChange
// skips the write; any other error is returned as is. Update returns the value as
// stored (or as fn left it after ErrNoChange).
func Update[T any](ctx context.Context, kv jetstream.KeyValue, key string, fn func(v *T, exists bool) error) (T, error) {
	for try := 0; ; try++ {
		var v T
		var rev uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return v, fmt.Errorf("kv get %s: %w", key, err)
		default:
			rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), &v); err != nil {
				return v, fmt.Errorf("kv %s holds no readable record: %w", key, err)
			}
		}
		if err := fn(&v, rev != 0); err != nil {
			if errors.Is(err, ErrNoChange) {
				return v, nil
			}
			return v, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return v, err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return v, nil
		}
		if (errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)) && try < 50 {
			continue // someone else wrote first: read again and reapply
		}
		return v, fmt.Errorf("kv write %s: %w", key, err)
	}
}

// Get reads the JSON value at key; found is false when the key does not exist.
func Get[T any](ctx context.Context, kv jetstream.KeyValue, key string) (v T, found bool, err error) {
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("kv get %s: %w", key, err)
	}
	return v, true, json.Unmarshal(entry.Value(), &v)
}

// Daily runs task at d every day until ctx ends, in one worker of all those that
// run it: the first to create dayKey(the day) in the job bucket.
func Daily(ctx context.Context, kv jetstream.KeyValue, d config.Daily, dayKey func(day string) string, worker string, task func(context.Context) error, log *slog.Logger) {
	if d.Off {
		return
	}
	for {
		next := d.Next(time.Now())
		if retry.Sleep(ctx, time.Until(next)) != nil {
			return
		}
		if _, err := kv.Create(ctx, dayKey(next.Format("2006-01-02")), []byte(worker)); err != nil {
			continue // another worker has it
		}
		if err := task(ctx); err != nil {
			log.Warn("daily task failed", "key", dayKey(next.Format("2006-01-02")), "err", err)
		}
	}
}
