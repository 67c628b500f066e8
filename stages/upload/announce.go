package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// What upload says on the broker about a file: verified or failed on ARCHIVE, and
// to fetch, a request for the file again from byte 0 (refetch).

// verified records the file as verified and says so on ARCHIVE.
func (f *fileUpload) verified(ctx context.Context, got driveFile) error {
	if f.folder.ID == "" && len(got.Parents) > 0 {
		// A copy found in Drive stays in its folder, whatever the layout says now;
		// no folder of the present layout is made for it.
		f.folder = folderRecord{ID: got.Parents[0], Link: "https://drive.google.com/drive/folders/" + got.Parents[0]}
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
	f.index(ctx, got)
	return f.up.Delete(ctx)
}

// announce says on ARCHIVE that the job is verified; the stream drops a repeat
// within its duplicate window, and a later one changes nothing downstream.
func (st *stage) announce(ctx context.Context, job events.FileJob) error {
	b, _ := json.Marshal(job.Verified())
	_, err := st.js.Publish(ctx, events.FileVerifiedSubject(job.Key), b,
		jetstream.WithMsgID(events.VerifiedID(job.Key, job.Generation)))
	return err
}

// mismatch: Drive does not hold the bytes Zoom sent. The bad copy is deleted and the
// file comes again from Zoom, until UPLOAD_MAX_MISMATCHES says it is failed.
func (f *fileUpload) mismatch(ctx context.Context, got driveFile, size int64, fetched string) error {
	f.st.m.mismatches.Inc()
	why := fmt.Sprintf("Drive holds %d bytes md5 %s; fetch read %d bytes md5 %s from Zoom; Zoom's file_size %d",
		got.Size, got.MD5Checksum, size, fetched, f.job.File.FileSize)
	f.log.Error("verification failed; deleting the Drive copy", "drive_id", got.ID, "detail", why)
	if err := f.st.drive.Files.Delete(got.ID).SupportsAllDrives(true).Context(ctx).Do(); err != nil && !notFound(err) {
		return err
	}
	job, err := bus.Update(ctx, f.st.kv, events.FileJobKey(f.job.Key), func(j *events.FileJob, _ bool) error {
		j.Mismatches++
		j.LastError = "verification failed: " + why
		if j.Mismatches >= f.st.maxMismatch {
			j.State, j.Unannounced = events.JobFailed, events.UploadFailedID(j.Key, j.Generation)
		}
		j.Updated = time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	if job.State != events.JobFailed {
		return refetchFor(dropMismatch, "%s", why)
	}
	if err := bus.AnnounceFailure(ctx, f.st.js, f.st.kv, job); err != nil {
		return err // the next look at the file says it
	}
	f.up.Delete(ctx)
	return errors.New("gave up after " + strconv.Itoa(job.Mismatches) + " copies that did not verify")
}

// giveUp fails the file for a refusal no new session cures: the admins get the
// failure mail with Drive's words, and its chunks are dropped.
func (st *stage) giveUp(ctx context.Context, key string, cause error, log *slog.Logger) error {
	job, err := bus.Update(ctx, st.kv, events.FileJobKey(key), func(j *events.FileJob, _ bool) error {
		j.State, j.LastError, j.Updated = events.JobFailed, cause.Error(), time.Now().UTC()
		j.Unannounced = events.UploadFailedID(j.Key, j.Generation)
		return nil
	})
	if err != nil {
		return err
	}
	if err := bus.AnnounceFailure(ctx, st.js, st.kv, job); err != nil {
		return err // the next look at the file says it
	}
	log.Error("file failed: Drive refuses it", "err", cause)
	st.purge(ctx, key)
	return nil
}

// refetch asks fetch for the file from byte 0, in the generation up notes, until
// the request is through or the stage stops (the next start sends it then).
func (st *stage) refetch(ctx context.Context, key string, up *bus.Leased[upState], log *slog.Logger) {
	for try := 0; ; try++ {
		_, err := st.js.PublishMsg(ctx, events.RestartMsg(key), jetstream.WithMsgID(events.RefetchID(key, up.Get().Generation)))
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
