package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/events"
)

// The chunk stream side of one file: its consumer delivers the chunks in order,
// they are kept until Drive confirms their bytes, then acknowledged. A gap or a
// consumer that withholds chunks is read again (reread) before bytes are given up.

// pullMessages bounds the chunk messages a file's consumer pulls at once; with
// FETCH_CHUNK_SIZE's 1 MiB the byte limit binds first. nats.go makes the
// iterator's buffer this long, and the broker's heartbeats wait in it too while a
// Drive chunk is retried: 4,096 slots are hours of them, where the bytes-only
// limit's million slots were 8 MB that every collection scanned.
const pullMessages = 4096

// kept is a chunk message whose bytes Drive has not all confirmed.
type kept struct {
	msg jetstream.Msg
	off int64 // offset of data[0]
}

func (h kept) end() int64 { return h.off + int64(len(h.msg.Data())) }

// chunkConsumer is the consumer of one file's chunks.
func chunkConsumer(key string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: events.ChunkConsumer(key), FilterSubject: events.ChunkSubject(key), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 10 * time.Minute, MaxAckPending: 10000, InactiveThreshold: time.Hour,
	}
}

func (f *fileUpload) run(ctx context.Context) error {
	st, key := f.st, f.job.Key
	// Messages an earlier worker took come back only with a fresh consumer (on the
	// old one they wait out AckWait); one with none pending is reused (a new one
	// takes a while to be ready on a cluster). Unsure (a broker electing a leader):
	// try again later rather than guess.
	cfg := chunkConsumer(key)
	name := cfg.Durable
	old, err := st.js.Consumer(ctx, events.StreamChunks, name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return fmt.Errorf("chunk consumer: %w", err)
	case old.CachedInfo().NumAckPending > 0:
		if err := st.js.DeleteConsumer(ctx, events.StreamChunks, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("chunk consumer: %w", err)
		}
	default:
		f.reused = true
	}
	if !f.reused {
		st.mu.Lock()
		f.afterReread = st.reread[key]
		delete(st.reread, key)
		st.mu.Unlock()
	}
	cons, err := st.js.CreateOrUpdateConsumer(ctx, events.StreamChunks, cfg)
	if err != nil {
		return err
	}
	if err := f.resume(ctx); err != nil {
		return err
	}
	// Pull room for one chunk message of any size fetch may send (MaxChunkData
	// and its headers); what is kept for Drive is on top of that.
	iter, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(pullMessages, events.MaxChunkData+1<<20))
	if err != nil {
		return err
	}
	defer iter.Stop()
	for {
		wctx, cancel := context.WithTimeout(ctx, st.idle)
		msg, err := iter.Next(jetstream.NextContext(wctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) && f.reused && f.took == 0 {
				// Chunks are waiting (that is why this worker runs), yet the reused
				// consumer hands out none: do not trust it again.
				return fmt.Errorf("%w: it delivered nothing for UPLOAD_IDLE", errReread)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return errIdle
			}
			return err
		}
		f.took++
		done, err := f.take(ctx, msg)
		if err != nil || done {
			if done {
				st.js.DeleteConsumer(context.Background(), events.StreamChunks, name)
			}
			return err
		}
	}
}

// take handles one chunk message; done is true once the file is verified.
func (f *fileUpload) take(ctx context.Context, msg jetstream.Msg) (bool, error) {
	c, err := events.ParseChunk(msg.Headers())
	if err != nil {
		// Not fetch's: nothing here can place its bytes, and a redelivery reads the same.
		f.log.Error("chunk message unreadable; dropped", "err", err)
		msg.TermWithReason("unreadable headers")
		return false, nil
	}
	gen, off := c.Generation, c.Offset
	s := f.up.Get()
	switch {
	case gen < s.Generation:
		msg.Ack() // an older start of the file
		return false, nil
	case gen > s.Generation:
		// fetch started the file over: so do we, in a new session.
		f.log.Info("file started over by fetch", "generation", gen)
		f.dropKept()
		if err := f.dropSession(ctx, dropNewGeneration, gen, false); err != nil {
			return false, err
		}
	}
	if c.Final {
		return f.finish(ctx, msg, c)
	}
	end := off + int64(len(msg.Data()))
	switch {
	case end <= f.up.Get().Offset:
		msg.Ack() // below what Drive holds: sent before
		return false, nil
	case off > f.keptEnd() && !f.afterReread:
		return false, fmt.Errorf("%w: chunk at %d, bytes end at %d", errGap, off, f.keptEnd())
	case off > f.keptEnd():
		// Bytes are gone: this generation cannot complete; fetch sends a new one
		// (and what is left of this one is acknowledged as older).
		return false, refetchFor(dropBytesGone, "chunk at %d, bytes end at %d", off, f.keptEnd())
	}
	f.mu.Lock()
	f.kept = append(f.kept, kept{msg: msg, off: off})
	f.mu.Unlock()
	if err := f.open(ctx); err != nil {
		return false, err
	}
	if f.up.Get().Existing != "" || f.complete != nil {
		return false, f.confirm(ctx, f.keptEnd()) // Drive has these bytes already
	}
	if f.driveAt > f.up.Get().Offset {
		// Stored before a crash kept us from saving so: confirmed now, not sent again.
		if err := f.confirm(ctx, min(f.driveAt, f.keptEnd())); err != nil {
			return false, err
		}
	}
	for f.keptEnd()-f.up.Get().Offset >= f.st.chunk {
		if err := f.send(ctx, f.st.chunk, -1); err != nil {
			return false, err
		}
	}
	return false, nil
}

// keptEnd is where the bytes in hand end.
func (f *fileUpload) keptEnd() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.kept) == 0 {
		return f.up.Get().Offset
	}
	return f.kept[len(f.kept)-1].end()
}

// reader is the kept bytes [from, from+n).
func (f *fileUpload) reader(from, n int64) io.Reader {
	f.mu.Lock()
	defer f.mu.Unlock()
	var parts []io.Reader
	for _, h := range f.kept {
		lo, hi := max(from, h.off), min(from+n, h.end())
		if lo < hi {
			parts = append(parts, bytes.NewReader(h.msg.Data()[lo-h.off:hi-h.off]))
		}
	}
	return io.MultiReader(parts...)
}

// confirm takes the bytes up to upTo as stored in Drive: the resume point is saved
// there, then the messages wholly below it are acknowledged.
func (f *fileUpload) confirm(ctx context.Context, upTo int64) error {
	if upTo <= f.up.Get().Offset {
		return nil
	}
	f.mu.Lock()
	var done []jetstream.Msg
	keep := f.kept[:0]
	for _, h := range f.kept {
		if h.end() <= upTo {
			done = append(done, h.msg)
		} else {
			keep = append(keep, h)
		}
	}
	f.kept = keep
	f.mu.Unlock()
	// Drive took bytes: the refusals before (if any) were cured by a new session.
	if err := f.up.Save(ctx, func(u *upState) { u.Offset, u.Refusals = upTo, 0 }); err != nil {
		return err
	}
	for _, m := range done {
		m.Ack()
	}
	return nil
}

// dropKept acknowledges the kept messages unused: their bytes will come again.
func (f *fileUpload) dropKept() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.kept {
		h.msg.Ack()
	}
	f.kept = nil
}

// keptInProgress tells JetStream the kept messages are still being worked on.
func (f *fileUpload) keptInProgress() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.kept {
		h.msg.InProgress()
	}
}

// purge drops a file's chunks nobody will read.
func (st *stage) purge(ctx context.Context, key string) {
	if s, err := st.js.Stream(ctx, events.StreamChunks); err == nil {
		s.Purge(ctx, jetstream.WithPurgeSubject(events.ChunkSubject(key)))
	}
	st.js.DeleteConsumer(ctx, events.StreamChunks, chunkConsumer(key).Durable)
}
