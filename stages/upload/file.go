package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
)

// One file's upload (the words are main.go's): uploadFile takes the file under a
// lease and decides what each way its run ends means; finish verifies the copy.
// The chunk stream's side is stream.go, Drive's session.go, the announcements
// announce.go.

// upState is upload's resume point for one file (upload.<key> in the job bucket).
type upState struct {
	Generation int       `json:"generation"`
	Session    string    `json:"session,omitempty"` // the resumable session URI
	SessionAt  time.Time `json:"session_at,omitempty"`
	Offset     int64     `json:"offset"`             // bytes Drive confirmed
	Existing   string    `json:"existing,omitempty"` // a copy already in Drive: read through, then compare
	Refetch    bool      `json:"refetch,omitempty"`  // fetch is yet to be asked for generation Generation
	Refusals   int       `json:"refusals,omitempty"` // sessions in a row Drive refused (UPLOAD_MAX_REFUSALS), kept through every drop until it takes bytes
}

// sessionLife is under Drive's week, so that a session is never used in its last hours.
const sessionLife = 6*24*time.Hour + 12*time.Hour

var (
	errIdle    = errors.New("no chunk for UPLOAD_IDLE")
	errRefetch = errors.New("the file's bytes must come again from Zoom")
	errReread  = errors.New("the file's consumer withholds chunks")
	errGap     = fmt.Errorf("%w: bytes are missing", errReread)
)

type fileUpload struct {
	st          *stage
	job         events.FileJob
	up          *bus.Leased[upState]
	log         *slog.Logger
	mu          sync.Mutex // guards kept against the heartbeat
	kept        []kept
	folder      folderRecord
	complete    *driveFile // Drive's answer once the last byte is in
	driveAt     int64      // what Drive said it holds when the upload resumed
	reused      bool       // the consumer is an earlier worker's, not made for this one
	afterReread bool       // the consumer was made for a reread: a gap now means bytes are gone
	took        int        // chunk messages it delivered to this worker
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
		// The broker may have failed between recording the job and announcing it
		// (the final chunk then stays): the announcement goes again.
		err := bus.AnnounceFailure(ctx, st.js, st.kv, job) // a failure, if unsaid
		if job.State == events.JobVerified {
			if err = st.announce(ctx, job); err == nil {
				st.indexLeftover(ctx, job, log)
			}
		}
		if err != nil {
			log.Warn("cannot announce the file; will retry", "state", job.State, "err", err)
			return 5 * time.Second
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
	go up.Heartbeat(hctx, f.keptInProgress)
	err = f.run(ctx)
	defer func() {
		stop()
		if err != nil {
			up.Release(context.Background())
		}
	}()
	var refused refusedError
	var again *refetchError
	drive := classifyDrive(err)
	switch {
	case err == nil: // verified: the record is gone
		st.driveWorks(ctx)
	case drive == driveDailyCap || drive == driveFull:
		// Wherever Drive said it (a session's start, a folder, a chunk): uploads pause.
		st.pauseFor(ctx, drive)
		return time.Until(st.paused.Until())
	case drive == driveKeyRefused:
		st.googleRefused(ctx, err)
		return st.recheck
	case errors.As(err, &refused):
		if gerr := st.giveUp(ctx, key, err, log); gerr != nil {
			log.Warn("cannot fail the file; will try again", "err", gerr)
			return 5 * time.Second
		}
		up.Delete(ctx)
		err = nil // done with: nothing to release
	case errors.As(err, &again):
		log.Warn("asking fetch for the file again", "err", err)
		// What is left of this generation is of no use: only the next one is read.
		// The request is noted first, so that it goes even if this worker stops.
		if err := f.dropSession(ctx, again.why, up.Get().Generation+1, true); err != nil {
			log.Warn("cannot note the request; will try again", "err", err)
			return 5 * time.Second
		}
		st.refetch(ctx, key, up, log)
	case errors.Is(err, errIdle):
		log.Info("no chunk for a while; the place goes to another file", "idle", st.idle)
	case errors.Is(err, errReread):
		// A chunk lost on its way to this worker (a broker node died with it) is
		// redelivered only after AckWait; a new consumer delivers it now.
		log.Info("the consumer withholds chunks; reading them again with a new one", "err", err)
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

// finish handles the final message: the last bytes go, then the file is verified.
func (f *fileUpload) finish(ctx context.Context, msg jetstream.Msg, final events.Chunk) (bool, error) {
	size := final.Size
	if end := f.keptEnd(); end != size && !f.afterReread {
		return false, fmt.Errorf("%w: final says %d bytes, %d came", errGap, size, end)
	} else if end != size {
		return false, refetchFor(dropBytesGone, "final says %d bytes, %d came", size, end)
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
	// Drive's MD5 of what it stored against fetch's of what Zoom served: the one
	// comparison that proves the copy (docs/pipeline.md, upload: verification).
	zoomSize := int64(f.job.File.FileSize)
	if got.Size != size || f.up.Get().Offset != size || got.MD5Checksum != final.MD5 || zoomSize > 0 && zoomSize != size {
		return false, f.mismatch(ctx, got, size, final.MD5)
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
