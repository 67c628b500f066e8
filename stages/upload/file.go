package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/drive/v3"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// One file's upload: its chunk messages, read in order while fetch still writes
// them, are held until Drive confirms their bytes, then acknowledged. The session
// URI, Drive's confirmed offset and the MD5 state of the bytes below it are saved
// (under a lease) before anything past them is sent, so a restarted upload asks the
// session where it stands and goes on.

// upState is upload's resume point for one file (upload.<key> in the job bucket).
type upState struct {
	Generation int       `json:"generation"`
	Session    string    `json:"session,omitempty"` // the resumable session URI
	SessionAt  time.Time `json:"session_at,omitempty"`
	Offset     int64     `json:"offset"`              // bytes Drive holds and this stage has hashed
	MD5        []byte    `json:"md5_state,omitempty"` // over bytes [0, Offset)
	Existing   string    `json:"existing,omitempty"`  // a copy already in Drive: read through, then compare
	Refetch    bool      `json:"refetch,omitempty"`   // fetch is yet to be asked for generation Generation
}

// sessionLife is under Drive's week, so that a session is never used in its last hours.
const sessionLife = 6*24*time.Hour + 12*time.Hour

var (
	errIdle    = errors.New("no chunk for UPLOAD_IDLE")
	errRefetch = errors.New("the file's bytes must come again from Zoom")
	errStale   = errors.New("the file's consumer holds chunks back")
	errGap     = fmt.Errorf("%w: bytes are missing", errStale)
)

// held is a chunk message whose bytes Drive has not all confirmed.
type held struct {
	msg jetstream.Msg
	off int64 // offset of data[0]
}

func (h held) end() int64 { return h.off + int64(len(h.msg.Data())) }

type fileUpload struct {
	st       *stage
	job      events.FileJob
	up       *bus.Leased[upState]
	log      *slog.Logger
	mu       sync.Mutex // guards held against the heartbeat
	held     []held
	md5      hash.Hash
	folder   folderRecord
	complete *driveFile // Drive's answer once the last byte is in
	driveAt  int64      // what Drive said it holds when the upload resumed
	reused   bool       // the consumer is an earlier worker's, not made for this one
	gapsReal bool       // the consumer was made anew after a gap: a gap now means bytes are gone
	took     int        // chunk messages it delivered to this worker
	refusals int        // sessions Drive refused for good
}

// uploadFile works on one file until it is verified, its chunks stop coming, or
// ctx ends; it returns when to look at the file again if another worker holds it.
func (st *stage) uploadFile(ctx context.Context, key string) time.Duration {
	log := st.log.With("file_key", key)
	job, found, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key))
	if err != nil {
		log.Warn("job unreadable", "err", err)
		return 5 * time.Second
	}
	if !found || job.State == events.JobVerified || job.State == events.JobFailed {
		if job.State == events.JobVerified {
			// The broker may have failed between recording the job and announcing
			// it (the final chunk then stays): the announcement goes again.
			if err := st.announce(ctx, job); err != nil {
				log.Warn("cannot announce the verified file; will retry", "err", err)
				return 5 * time.Second
			}
		}
		// Leftovers (a duplicate after the file was verified, say): nobody needs them.
		st.purge(ctx, key)
		return 0
	}
	up, wait, err := bus.Claim[upState](ctx, st.kv, events.UploadProgressKey(key), st.worker, st.lease)
	if err != nil && ctx.Err() == nil {
		log.Warn("resume record unreadable; retrying", "err", err)
	}
	if err != nil || up == nil {
		return max(wait, time.Second)
	}
	log = log.With("meeting_uuid", job.Recording.UUID, "file_id", job.File.ID)
	f := &fileUpload{st: st, job: job, up: up, log: log}
	hctx, stop := context.WithCancel(ctx)
	go up.Heartbeat(hctx, f.keepHeld)
	err = f.run(ctx)
	defer func() {
		stop()
		if err != nil {
			up.Release(context.Background())
		}
	}()
	var de *driveError
	var refused refusedError
	switch {
	case err == nil: // verified: the record is gone
		st.driveWorks(ctx)
	case errors.As(err, &de) && de.storageFull():
		st.pauseForFullDrive(ctx)
	case tokenRefused(err):
		st.googleRefused(ctx, err)
		return st.recheck
	case errors.As(err, &refused):
		if gerr := st.giveUp(ctx, key, err, log); gerr != nil {
			log.Warn("cannot fail the file; will try again", "err", gerr)
			return 5 * time.Second
		}
		up.Delete(ctx)
		err = nil // done with: nothing to release
	case errors.Is(err, errRefetch):
		log.Warn("asking fetch for the file again", "err", err)
		// What is left of this generation is of no use: only the next one is read.
		// The request is noted first, so that it goes even if this worker stops.
		if err := up.Save(ctx, func(u *upState) { *u = upState{Generation: u.Generation + 1, Refetch: true} }); err != nil {
			log.Warn("cannot note the request; will try again", "err", err)
			return 5 * time.Second
		}
		st.refetch(ctx, key, up, log)
	case errors.Is(err, errIdle):
		log.Info("no chunk for a while; the place goes to another file", "idle", st.idle)
	case errors.Is(err, errStale):
		// A chunk lost on its way to this worker (a broker node died with it) is
		// redelivered only after AckWait; a new consumer delivers it now.
		log.Info("the consumer holds chunks back; reading them again with a new one", "err", err)
		st.js.DeleteConsumer(ctx, events.StreamChunks, chunkConsumer(key).Durable)
		if errors.Is(err, errGap) {
			st.mu.Lock()
			st.reread[key] = true
			st.mu.Unlock()
		}
	case ctx.Err() != nil:
	default:
		log.Warn("upload interrupted; will resume", "err", err)
		return 5 * time.Second
	}
	return 0
}

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
	// old one they wait out AckWait); one that holds nothing is kept (a new one
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
		f.gapsReal = st.reread[key]
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
	// Pull room for one chunk message of any size fetch may send (at most 4 MiB
	// and headers); what is held for Drive is on top of that.
	iter, err := cons.Messages(jetstream.PullMaxBytes(5 << 20))
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
				// Chunks are waiting (that is why this worker runs), yet the kept
				// consumer hands out none: do not trust it again.
				return fmt.Errorf("%w: it delivered nothing for UPLOAD_IDLE", errStale)
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

// resume checks a saved session with Drive: how much it holds, or that it is gone.
func (f *fileUpload) resume(ctx context.Context) error {
	s := f.up.Get()
	f.md5 = md5.New()
	if s.Offset > 0 {
		f.md5.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.MD5)
	}
	if s.Generation < f.job.Generation {
		return f.up.Save(ctx, func(u *upState) { *u = upState{Generation: f.job.Generation} })
	}
	if s.Session == "" {
		return nil
	}
	if time.Since(s.SessionAt) > sessionLife {
		return f.sessionGone(ctx)
	}
	stored, done, err := f.st.res.put(ctx, s.Session, 0, nil, 0, -1)
	switch {
	case errors.Is(err, errSessionGone):
		return f.sessionGone(ctx)
	case err != nil:
		return err
	case stored < s.Offset:
		return fmt.Errorf("%w: Drive holds %d bytes, %d were confirmed", errRefetch, stored, s.Offset)
	}
	f.complete, f.driveAt = done, stored
	f.log.Info("upload resumed", "drive_offset", stored, "confirmed", s.Offset)
	f.st.m.resumed.Inc()
	return nil
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
		f.dropHeld()
		f.md5, f.complete = md5.New(), nil
		if err := f.up.Save(ctx, func(u *upState) { *u = upState{Generation: gen} }); err != nil {
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
	case off > f.heldEnd() && !f.gapsReal:
		return false, fmt.Errorf("%w: chunk at %d, bytes end at %d", errGap, off, f.heldEnd())
	case off > f.heldEnd():
		// Bytes are gone: this generation cannot complete; fetch sends a new one
		// (and what is left of this one is acknowledged as older).
		return false, fmt.Errorf("%w: chunk at %d, bytes end at %d", errRefetch, off, f.heldEnd())
	}
	f.mu.Lock()
	f.held = append(f.held, held{msg: msg, off: off})
	f.mu.Unlock()
	if err := f.open(ctx); err != nil {
		return false, err
	}
	if f.up.Get().Existing != "" || f.complete != nil {
		return false, f.confirm(ctx, f.heldEnd()) // Drive has these bytes already
	}
	if f.driveAt > f.up.Get().Offset {
		// Stored before a crash kept us from saving so: hashed now, not sent again.
		if err := f.confirm(ctx, min(f.driveAt, f.heldEnd())); err != nil {
			return false, err
		}
	}
	for f.heldEnd()-f.up.Get().Offset >= f.st.chunk {
		if err := f.send(ctx, f.st.chunk, -1); err != nil {
			return false, err
		}
	}
	return false, nil
}

// heldEnd is where the bytes in hand end.
func (f *fileUpload) heldEnd() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.held) == 0 {
		return f.up.Get().Offset
	}
	return f.held[len(f.held)-1].end()
}

// open starts the Drive side once: a copy already in Drive (a replay, or a job
// record lost) is read through and compared instead of uploaded again; otherwise a
// session, saved before the first byte goes.
func (f *fileUpload) open(ctx context.Context) error {
	s := f.up.Get()
	if s.Session != "" || s.Existing != "" || s.Offset > 0 {
		return nil
	}
	if ex, err := f.st.existing(ctx, f.job.Key); err != nil {
		return err
	} else if ex != nil {
		f.log.Info("a copy is already in Drive; comparing instead of uploading", "drive_id", ex.Id)
		return f.up.Save(ctx, func(u *upState) { u.Existing = ex.Id })
	}
	// Nothing is asked of Drive while it takes no uploads (its daily cap, or full).
	if err := f.st.paused.Wait(ctx); err != nil {
		return err
	}
	folder, err := f.st.recordingFolder(ctx, f.job)
	if err != nil {
		return err
	}
	f.folder = folder
	part, err := f.st.part(ctx, f.job)
	if err != nil {
		return err
	}
	meta := &drive.File{
		Name: fileName(f.job, part, f.st.tz), MimeType: mimeType(f.job.File), Parents: []string{folder.ID},
		AppProperties: tags(f.job, true), Description: describe(f.job, true, f.st.tz),
	}
	session, err := f.st.res.start(ctx, meta, int64(f.job.File.FileSize), meta.MimeType)
	if err != nil {
		return err // uploadFile tells a full Drive and a refused key by their types
	}
	f.st.m.sessions.Inc()
	return f.up.Save(ctx, func(u *upState) { u.Session, u.SessionAt = session, time.Now().UTC() })
}

// send puts up to n bytes from the confirmed offset (a multiple of 256 KiB unless
// this is the end, total >= 0) and confirms what Drive says it stored.
func (f *fileUpload) send(ctx context.Context, n, total int64) error {
	for try := 0; ; try++ {
		if err := f.st.paused.Wait(ctx); err != nil {
			return err
		}
		s := f.up.Get()
		avail := f.heldEnd() - s.Offset
		if total < 0 {
			n = min(n, avail) / quantum * quantum
			if n == 0 {
				return nil
			}
		} else {
			n = avail
		}
		// The MD5 goes along with the bytes as they are sent; it is kept when Drive
		// took them all, as it nearly always does.
		ahead := md5.New()
		state, _ := f.md5.(encoding.BinaryMarshaler).MarshalBinary()
		ahead.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
		stored, done, err := f.st.res.put(ctx, s.Session, s.Offset, io.TeeReader(f.reader(s.Offset, n), ahead), n, total)
		if err == nil {
			f.st.m.bytes.Add(float64(n))
			if stored < s.Offset {
				return fmt.Errorf("%w: Drive went back from %d to %d bytes", errRefetch, s.Offset, stored)
			}
			f.complete = done
			if stored == s.Offset+n {
				f.md5 = ahead
				return f.acknowledge(ctx, stored)
			}
			return f.confirm(ctx, min(stored, f.heldEnd()))
		}
		var de *driveError
		switch {
		case errors.Is(err, errSessionGone):
			if err := f.sessionGone(ctx); err != nil {
				return err
			}
			if err := f.open(ctx); err != nil {
				return err
			}
			continue
		case errors.As(err, &de) && de.dailyCap():
			f.st.pauseForDailyCap(ctx)
			continue
		case errors.As(err, &de) && de.storageFull():
			f.st.pauseForFullDrive(ctx) // the session stays: it goes on once there is room
			continue
		case errors.As(err, &de) && !de.retryable():
			if f.refusals++; f.refusals >= f.st.maxRefusals {
				return refusedError{de}
			}
			f.log.Warn("drive refused the session; starting a new one", "err", err, "refusals", f.refusals, "of", f.st.maxRefusals)
			if err := f.sessionGone(ctx); err != nil {
				return err
			}
			if err := f.open(ctx); err != nil {
				return err
			}
			continue
		case try >= 8 || ctx.Err() != nil:
			return err
		}
		f.st.m.retries.WithLabelValues(reason(err)).Inc()
		f.log.Info("chunk not confirmed; asking the session and retrying", "at", s.Offset, "try", try+1, "err", err)
		retry.Sleep(ctx, retry.Backoff(f.st.retryBase, try))
		// Ask what Drive holds: it may have stored some of the chunk, or all.
		if stored, done, err := f.st.res.put(ctx, s.Session, 0, nil, 0, total); err == nil && stored >= s.Offset {
			f.complete = done
			if err := f.confirm(ctx, min(stored, f.heldEnd())); err != nil {
				return err
			}
			if done != nil || total < 0 && f.heldEnd()-f.up.Get().Offset < quantum {
				return nil
			}
		}
	}
}

const quantum = 256 << 10 // Drive wants chunks in multiples of this

func reason(err error) string {
	var de *driveError
	if errors.As(err, &de) {
		if de.Reason != "" {
			return de.Reason
		}
		return strconv.Itoa(de.Status)
	}
	return "connection"
}

// reader is the held bytes [from, from+n).
func (f *fileUpload) reader(from, n int64) io.Reader {
	f.mu.Lock()
	defer f.mu.Unlock()
	var parts []io.Reader
	for _, h := range f.held {
		lo, hi := max(from, h.off), min(from+n, h.end())
		if lo < hi {
			parts = append(parts, bytes.NewReader(h.msg.Data()[lo-h.off:hi-h.off]))
		}
	}
	return io.MultiReader(parts...)
}

// confirm takes the bytes up to upTo as stored in Drive: they join the MD5, the
// resume point is saved, then their messages are acknowledged.
func (f *fileUpload) confirm(ctx context.Context, upTo int64) error {
	s := f.up.Get()
	if upTo <= s.Offset {
		return nil
	}
	f.mu.Lock()
	for _, h := range f.held {
		if lo, hi := max(s.Offset, h.off), min(upTo, h.end()); lo < hi {
			f.md5.Write(h.msg.Data()[lo-h.off : hi-h.off])
		}
	}
	f.mu.Unlock()
	return f.acknowledge(ctx, upTo)
}

// acknowledge saves the resume point at upTo, with the MD5 of the bytes below it,
// then acknowledges the messages wholly below it.
func (f *fileUpload) acknowledge(ctx context.Context, upTo int64) error {
	f.mu.Lock()
	var done []jetstream.Msg
	keep := f.held[:0]
	for _, h := range f.held {
		if h.end() <= upTo {
			done = append(done, h.msg)
		} else {
			keep = append(keep, h)
		}
	}
	f.held = keep
	f.mu.Unlock()
	state, _ := f.md5.(encoding.BinaryMarshaler).MarshalBinary()
	if err := f.up.Save(ctx, func(u *upState) { u.Offset, u.MD5 = upTo, state }); err != nil {
		return err
	}
	for _, m := range done {
		m.Ack()
	}
	return nil
}

// sessionGone: the session expired (a week) or was refused. A new one must start
// from byte 0, which only the bytes in hand can give; else fetch sends them again.
func (f *fileUpload) sessionGone(ctx context.Context) error {
	s := f.up.Get()
	f.mu.Lock()
	fromZero := s.Offset == 0 && (len(f.held) == 0 || f.held[0].off == 0)
	f.mu.Unlock()
	f.md5, f.complete = md5.New(), nil
	if err := f.up.Save(ctx, func(u *upState) { *u = upState{Generation: s.Generation} }); err != nil {
		return err
	}
	if !fromZero {
		return fmt.Errorf("%w: the Drive session is gone and its first bytes were acknowledged", errRefetch)
	}
	return nil
}

// finish handles the final message: the last bytes go, then the file is verified.
func (f *fileUpload) finish(ctx context.Context, msg jetstream.Msg, final events.Chunk) (bool, error) {
	size := final.Size
	if end := f.heldEnd(); end != size && !f.gapsReal {
		return false, fmt.Errorf("%w: final says %d bytes, %d came", errGap, size, end)
	} else if end != size {
		return false, fmt.Errorf("%w: final says %d bytes, %d came", errRefetch, size, end)
	}
	s := f.up.Get()
	var got driveFile
	switch {
	case s.Existing != "":
		if err := f.confirm(ctx, size); err != nil {
			return false, err
		}
		ex, err := f.st.drive.Files.Get(s.Existing).SupportsAllDrives(true).Fields(fileFields).Context(ctx).Do()
		if err != nil {
			return false, err
		}
		got = driveFile{ID: ex.Id, Name: ex.Name, Size: ex.Size, MD5Checksum: ex.Md5Checksum, WebViewLink: ex.WebViewLink, Parents: ex.Parents}
	default:
		if f.complete == nil {
			if err := f.open(ctx); err != nil { // a 0-byte file, or a session renewed at the end
				return false, err
			}
			if err := f.send(ctx, 0, size); err != nil {
				return false, err
			}
		}
		if f.complete == nil {
			return false, fmt.Errorf("drive did not complete the upload at %d of %d bytes", f.up.Get().Offset, size)
		}
		if err := f.confirm(ctx, size); err != nil {
			return false, err
		}
		got = *f.complete
	}
	sum := hex.EncodeToString(f.md5.Sum(nil))
	zoomSize := int64(f.job.File.FileSize)
	if got.Size != size || f.up.Get().Offset != size || got.MD5Checksum != sum || sum != final.MD5 || zoomSize > 0 && zoomSize != size {
		return false, f.mismatch(ctx, got, size, sum, final.MD5)
	}
	if err := f.verified(ctx, got); err != nil {
		return false, err
	}
	// Confirmed before the consumer goes: a lost ack would leave the final behind.
	if err := msg.DoubleAck(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// verified records the file as verified and says so on ARCHIVE.
func (f *fileUpload) verified(ctx context.Context, got driveFile) error {
	if f.folder.ID == "" && len(got.Parents) > 0 {
		f.folder = folderRecord{ID: got.Parents[0], Link: "https://drive.google.com/drive/folders/" + got.Parents[0]}
		if fr, err := f.st.recordingFolder(ctx, f.job); err == nil && fr.ID == got.Parents[0] {
			f.folder = fr
		}
	}
	job, err := bus.Update(ctx, f.st.kv, events.FileJobKey(f.job.Key), func(j *events.FileJob, exists bool) error {
		if !exists {
			return fmt.Errorf("job %s vanished", f.job.Key)
		}
		j.State, j.DriveID, j.DriveLink, j.FolderID, j.FolderLink = events.JobVerified, got.ID, got.WebViewLink, f.folder.ID, f.folder.Link
		j.Size, j.MD5, j.Updated = got.Size, got.MD5Checksum, time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	if err := f.st.announce(ctx, job); err != nil {
		return err
	}
	f.st.m.verified.Inc()
	f.log.Info("file verified", "bytes", got.Size, "drive_id", got.ID, "md5", got.MD5Checksum)
	return f.up.Delete(ctx)
}

// announce says on ARCHIVE that the job is verified; the stream drops a repeat
// within its duplicate window, and a later one changes nothing downstream.
func (st *stage) announce(ctx context.Context, job events.FileJob) error {
	b, _ := json.Marshal(job.Verified())
	_, err := st.js.Publish(ctx, events.FileVerifiedSubject(job.Key), b,
		jetstream.WithMsgID(fmt.Sprintf("verified-%s-g%d", job.Key, job.Generation)))
	return err
}

// mismatch: Drive does not hold the bytes Zoom sent. The bad copy is deleted and the
// file comes again from Zoom, until UPLOAD_MAX_MISMATCHES says it is failed.
func (f *fileUpload) mismatch(ctx context.Context, got driveFile, size int64, sum, fetched string) error {
	f.st.m.mismatches.Inc()
	why := fmt.Sprintf("Drive holds %d bytes md5 %s; streamed %d bytes md5 %s; fetch saw md5 %s; Zoom's file_size %d",
		got.Size, got.MD5Checksum, size, sum, fetched, f.job.File.FileSize)
	f.log.Error("verification failed; deleting the Drive copy", "drive_id", got.ID, "detail", why)
	if err := f.st.drive.Files.Delete(got.ID).SupportsAllDrives(true).Context(ctx).Do(); err != nil && !notFound(err) {
		return err
	}
	job, err := bus.Update(ctx, f.st.kv, events.FileJobKey(f.job.Key), func(j *events.FileJob, _ bool) error {
		j.Mismatches++
		j.LastError = "verification failed: " + why
		if j.Mismatches >= f.st.maxMismatch {
			j.State = events.JobFailed
		}
		j.Updated = time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	if job.State != events.JobFailed {
		return fmt.Errorf("%w: %s", errRefetch, why)
	}
	if err := f.st.announceFailed(ctx, job, job.Mismatches); err != nil {
		return err
	}
	f.up.Delete(ctx)
	return errors.New("gave up after " + strconv.Itoa(job.Mismatches) + " copies that did not verify")
}

// announceFailed says on ARCHIVE that upload gave the job up.
func (st *stage) announceFailed(ctx context.Context, job events.FileJob, attempts int) error {
	b, _ := json.Marshal(job.Failed(attempts))
	_, err := st.js.Publish(ctx, events.FileFailedSubject(job.Key), b,
		jetstream.WithMsgID(fmt.Sprintf("failed-upload-%s-g%d", job.Key, job.Generation)))
	return err
}

// refusedError: Drive refused the file in UPLOAD_MAX_REFUSALS sessions in a row,
// for a reason a new session does not cure.
type refusedError struct{ last *driveError }

func (e refusedError) Error() string {
	return "drive refused the file in every new session: " + e.last.Error()
}

// giveUp fails the file for a refusal no new session cures: the admins get the
// failure mail with Drive's words, and its chunks are dropped.
func (st *stage) giveUp(ctx context.Context, key string, cause error, log *slog.Logger) error {
	job, err := bus.Update(ctx, st.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
		j.State, j.LastError, j.Updated = events.JobFailed, cause.Error(), time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	if err := st.announceFailed(ctx, job, job.Attempts); err != nil {
		return err
	}
	log.Error("file failed: Drive refuses it", "err", cause)
	st.purge(ctx, key)
	return nil
}

// dropHeld acknowledges the held messages unused: their bytes will come again.
func (f *fileUpload) dropHeld() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.held {
		h.msg.Ack()
	}
	f.held = nil
}

// keepHeld tells JetStream the held messages are still being worked on.
func (f *fileUpload) keepHeld() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.held {
		h.msg.InProgress()
	}
}

// refetch asks fetch for the file from byte 0, in the generation up notes, until
// the request is through or the stage stops (the next start sends it then).
func (st *stage) refetch(ctx context.Context, key string, up *bus.Leased[upState], log *slog.Logger) {
	for try := 0; ; try++ {
		msg := nats.NewMsg(events.FetchJobSubject(key))
		msg.Header.Set(events.HeaderRestart, "true")
		_, err := st.js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprintf("refetch-%s-g%d", key, up.Get().Generation)))
		if err == nil {
			err = up.Save(ctx, func(u *upState) { u.Refetch = false })
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, bus.ErrLeaseLost) {
			return
		}
		log.Warn("cannot ask fetch for the file again; retrying", "err", err)
		retry.Sleep(ctx, retry.Backoff(time.Second, try))
	}
}

// resendRefetches sends the requests for files from byte 0 that a stopped worker
// noted but did not get through.
func (st *stage) resendRefetches(ctx context.Context) {
	keys, err := st.kv.ListKeysFiltered(ctx, events.UploadProgressKey(">"))
	if err != nil {
		st.log.Warn("cannot look for unsent requests to fetch", "err", err)
		return
	}
	for name := range keys.Keys() {
		if s, _, err := bus.Peek[upState](ctx, st.kv, name); err != nil || !s.Refetch {
			continue
		}
		up, _, err := bus.Claim[upState](ctx, st.kv, name, st.worker, st.lease)
		if err != nil || up == nil {
			continue // a live worker holds it and sends the request itself
		}
		key := events.FileKeyOf(name)
		log := st.log.With("file_key", key)
		log.Info("asking fetch for the file again, as an earlier worker meant to")
		st.refetch(ctx, key, up, log)
		up.Release(context.Background())
	}
}

// purge drops a file's chunks nobody will read.
func (st *stage) purge(ctx context.Context, key string) {
	if s, err := st.js.Stream(ctx, events.StreamChunks); err == nil {
		s.Purge(ctx, jetstream.WithPurgeSubject(events.ChunkSubject(key)))
	}
	st.js.DeleteConsumer(ctx, events.StreamChunks, chunkConsumer(key).Durable)
}

func notFound(err error) bool {
	var de *driveError
	return errors.As(err, &de) && de.Status == http.StatusNotFound || isGoogleNotFound(err)
}
