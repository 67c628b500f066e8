package main

import (
	"context"
	"io"

	"encoding/json"
	"errors"
	"fmt"
	"time"
	"zoomarchive/shared/config"

	"github.com/urfave/cli/v2"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
)

// After the archive: once upload has verified every file of a recording in Drive,
// Zoom's copy is trashed (or deleted, or kept: ZOOM_AFTER_ARCHIVE) exactly once, and
// a recording-archived event tells notify.

// staleZoomPending is how long a recording may sit in RecZoomPending before another
// worker takes it for a crashed one.
const staleZoomPending = 2 * time.Minute

var (
	errDone = errors.New("the recording is archived already")
	// errBusy: another worker is dealing with Zoom for this recording; the event
	// comes back later in case that worker dies before it is done.
	errBusy = errors.New("another worker is archiving this recording")
)

// holdError: ZOOM_TRASH_AFTER has not passed yet since every file was verified.
type holdError struct{ wait time.Duration }

func (h holdError) Error() string { return "held for " + h.wait.String() }

func (st *stage) afterVerified(ctx context.Context, msg jetstream.Msg) {
	var v events.FileVerified
	if err := json.Unmarshal(msg.Data(), &v); err != nil || v.Key == "" {
		st.log.Error("unreadable file-verified event; skipped", "subject", msg.Subject())
		msg.TermWithReason("unreadable")
		return
	}
	job, found, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(v.Key))
	if err == nil && found {
		err = st.archiveRecording(ctx, events.MeetingKey(job.Recording.UUID), v.FolderLink)
	}
	var hold holdError
	switch {
	case errors.As(err, &hold):
		msg.NakWithDelay(hold.wait + 100*time.Millisecond) // the broker brings it back then
		return
	case errors.Is(err, errBusy):
		msg.NakWithDelay(staleZoomPending)
		return
	case err != nil && !errors.Is(err, errDone):
		st.log.Warn("after-archive step failed; will retry", "file_key", v.Key, "meeting_uuid", job.Recording.UUID, "err", err)
		msg.NakWithDelay(10 * time.Second)
		return
	}
	msg.Ack()
}

// archiveRecording deals with Zoom's copy if, and only if, every file is verified.
func (st *stage) archiveRecording(ctx context.Context, mkey, folderLink string) error {
	rec, found, err := bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(mkey))
	if err != nil || !found || rec.State == events.RecArchived {
		return err
	}
	jobs, all, err := st.verifiedFiles(ctx, rec)
	if err != nil || !all {
		return err
	}
	uuid := rec.Recording.UUID
	if rec.State == events.RecArchiving && st.action != "keep" {
		// Zoom's own list may hold files no event announced yet (a transcript made
		// later): they are archived first, or they would go with the trash.
		zrec, _, err := st.zoom.recording(ctx, uuid, false)
		switch {
		case errors.Is(err, errGone):
		case err != nil:
			return err
		default:
			if _, err := st.plan(ctx, zrec, jobs[rec.Files[0]].EventSeq); err != nil {
				return err
			}
			if rec, _, err = bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(mkey)); err != nil {
				return err
			}
			if jobs, all, err = st.verifiedFiles(ctx, rec); err != nil || !all {
				return err
			}
		}
	}
	// The retention hold: the time is kept with the recording and the verified event
	// comes back when it is over, so a restart changes nothing.
	if st.hold > 0 && st.action != "keep" && rec.State == events.RecArchiving {
		rec, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, _ bool) error {
			if !r.TrashAt.IsZero() {
				return bus.ErrNoChange
			}
			r.TrashAt, r.Updated = time.Now().UTC().Add(st.hold), time.Now().UTC()
			return nil
		})
		if err != nil {
			return err
		}
		if wait := time.Until(rec.TrashAt); wait > 0 {
			return holdError{wait}
		}
	}
	// One worker moves the recording to zoom_pending and makes the call; a crash after
	// it leaves zoom_pending, which another worker redoes once it is stale.
	rec, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, exists bool) error {
		switch {
		case !exists || r.State == events.RecArchived:
			return errDone
		case r.State == events.RecZoomPending && r.Owner != st.worker && time.Since(r.Updated) < staleZoomPending:
			return errBusy
		}
		r.State, r.ZoomAction, r.Owner, r.Updated = events.RecZoomPending, zoomAction(st.action), st.worker, time.Now().UTC()
		if st.action != "keep" {
			r.ZoomCalls++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if st.action != "keep" {
		err := st.zoom.removeRecording(ctx, uuid, st.action)
		switch {
		case errors.Is(err, errGone) && rec.ZoomCalls > 1:
			// Asked before a crash: done then.
		case errors.Is(err, errGone):
			st.log.Warn("recording no longer in Zoom when asked to remove it", "meeting_uuid", uuid)
			rec.ZoomAction = events.ZoomGone
		case err != nil:
			return fmt.Errorf("%s in zoom: %w", st.action, err)
		}
	}
	archived := events.RecordingArchived{Key: mkey, Recording: rec.Recording, FolderLink: folderLink, ZoomAction: rec.ZoomAction}
	for _, key := range rec.Files {
		j := jobs[key]
		name := ""
		if j.Participant {
			name = j.File.FileName
		}
		archived.Files = append(archived.Files, events.ArchivedFile{Key: key, FileID: j.File.ID, FileType: j.File.FileType,
			RecordingType: j.File.RecordingType, Participant: name, Size: j.Size, DriveLink: j.DriveLink})
	}
	b, _ := json.Marshal(archived)
	if _, err := st.js.Publish(ctx, events.RecordingArchivedSubject(mkey), b, jetstream.WithMsgID("archived-"+mkey)); err != nil {
		return err
	}
	_, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, _ bool) error {
		r.State, r.ZoomAction, r.Updated = events.RecArchived, rec.ZoomAction, time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	st.m.archived.WithLabelValues(rec.ZoomAction).Inc()
	st.log.Info("recording archived", "meeting_uuid", uuid, "files", len(rec.Files), "zoom", rec.ZoomAction)
	return nil
}

// verifiedFiles reads the recording's file jobs and tells whether all are verified.
func (st *stage) verifiedFiles(ctx context.Context, rec events.RecordingJob) (map[string]events.FileJob, bool, error) {
	jobs := map[string]events.FileJob{}
	for _, key := range rec.Files {
		j, found, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key))
		if err != nil || !found || j.State != events.JobVerified {
			return nil, false, err
		}
		jobs[key] = j
	}
	return jobs, len(rec.Files) > 0, nil
}

func zoomAction(setting string) string {
	switch setting {
	case "trash":
		return events.ZoomTrashed
	case "delete":
		return events.ZoomDeleted
	}
	return events.ZoomKept
}

// restoreCommand is fetch restore MEETING_UUID: a trashed recording back out of
// Zoom's trash, within its 30 days.
func restoreCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "restore",
		Usage: "take a recording zoomarchive trashed back out of Zoom's trash (within 30 days): fetch restore MEETING_UUID",
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("give the meeting UUID: fetch restore MEETING_UUID")
			}
			st, rc, err := configure(v, stdout)
			if err != nil {
				return err
			}
			uuid := c.Args().First()
			if err := st.zoom.recover(ctx, uuid); err != nil {
				if errors.Is(err, errGone) {
					return fmt.Errorf("zoom has no recording %s in its trash (deleted for good, or more than 30 days ago)", uuid)
				}
				return err
			}
			fmt.Fprintf(stdout, "recording %s is back in Zoom\n", uuid)
			// Say so in the recording's record, for the next look at it.
			closeFn, err := st.connect(ctx, rc.bus)
			if err != nil {
				return err
			}
			defer closeFn()
			_, err = bus.Update(ctx, st.kv, events.RecordingJobKey(events.MeetingKey(uuid)), func(r *events.RecordingJob, exists bool) error {
				if !exists {
					return bus.ErrNoChange
				}
				r.ZoomAction, r.Updated = events.ZoomRestored, time.Now().UTC()
				return nil
			})
			return err
		},
	}
}
