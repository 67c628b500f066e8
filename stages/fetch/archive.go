package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
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
		// Zoom's own list, read now, decides: files no event announced yet are
		// archived first, and a file Zoom is still making holds the recording.
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
			if rec, err = st.zoomStillMaking(ctx, rec, zrec); err != nil {
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
	archived := events.RecordingArchived{Key: mkey, Recording: rec.Recording, FolderLink: folderLink,
		ZoomAction: rec.ZoomAction, NoTranscript: rec.NoTranscript}
	for _, key := range rec.Files {
		j := jobs[key]
		name := ""
		if j.Participant {
			name = j.File.FileName
		}
		archived.Files = append(archived.Files, events.ArchivedFile{Key: key, FileID: j.File.ID, FileType: j.File.FileType,
			RecordingType: j.File.RecordingType, Participant: name, Size: j.Size, DriveLink: j.DriveLink,
			Late: slices.Contains(rec.Late, key)})
	}
	b, _ := json.Marshal(archived)
	if _, err := st.js.Publish(ctx, events.RecordingArchivedSubject(mkey), b, jetstream.WithMsgID(events.ArchivedID(mkey, rec.Announced))); err != nil {
		return err
	}
	_, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, _ bool) error {
		r.State, r.ZoomAction, r.Updated = events.RecArchived, rec.ZoomAction, time.Now().UTC()
		r.Announced = rec.Announced + 1
		if len(r.Files) > len(rec.Files) {
			r.State = events.RecArchiving // a file came meanwhile: its verified event finishes the job
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.m.archived.WithLabelValues(rec.ZoomAction).Inc()
	st.log.Info("recording archived", "meeting_uuid", uuid, "files", len(rec.Files), "zoom", rec.ZoomAction)
	return nil
}

// zoomRecheck is how often a recording held for a file Zoom is still making looks
// at Zoom's list again, should the file's own event not come.
const zoomRecheck = 2 * time.Minute

// zoomStillMaking holds a recording, every known file of which is verified, while
// Zoom may still add one: a file listed as processing holds it for as long as it
// is; and when the host transcribes to the cloud and no transcript is listed yet, it
// is held until the transcript is archived or ZOOM_TRANSCRIPT_WAIT has passed, after
// which it goes on without one and says so (NoTranscript).
func (st *stage) zoomStillMaking(ctx context.Context, rec events.RecordingJob, zrec events.Recording) (events.RecordingJob, error) {
	log := st.log.With("meeting_uuid", zrec.UUID)
	for _, f := range zrec.Files() {
		if st.wants(f) && f.Status != "" && f.Status != events.FileCompleted {
			log.Info("held: Zoom is still making a file", "file_type", f.FileType, "status", f.Status)
			return rec, holdError{zoomRecheck}
		}
	}
	if !st.awaitsTranscript(zrec) || rec.NoTranscript {
		return rec, nil
	}
	if rec.TranscriptDue.IsZero() {
		on, err := st.zoom.transcribes(ctx, zrec.HostID)
		if err != nil {
			// Not knowing is treated as yes: waiting costs Zoom storage, a lost
			// transcript cannot be had back.
			log.Warn("cannot read the host's transcription setting; waiting for a transcript as if it were on", "err", err)
			on = true
		}
		if !on {
			return rec, nil
		}
	}
	now := time.Now().UTC()
	rec, err := bus.Update(ctx, st.kv, events.RecordingJobKey(rec.Key), func(r *events.RecordingJob, _ bool) error {
		switch {
		case r.TranscriptDue.IsZero():
			r.TranscriptDue = now.Add(st.transcriptWait)
		case !now.Before(r.TranscriptDue):
			r.NoTranscript = true
		default:
			return bus.ErrNoChange
		}
		r.Updated = now
		return nil
	})
	switch {
	case err != nil:
		return rec, err
	case rec.NoTranscript:
		log.Warn("the transcript the host's settings promise has not come; going on without it", "waited", st.transcriptWait)
		return rec, nil
	}
	log.Info("held for the transcript Zoom is making", "until", rec.TranscriptDue)
	return rec, holdError{min(time.Until(rec.TranscriptDue), zoomRecheck)}
}

// awaitsTranscript: transcripts are archived and waited for, and zrec lists none
// yet. (Whether the recording has sound is not asked: a recording's files can
// change, and waiting costs less than a transcript lost.)
func (st *stage) awaitsTranscript(zrec events.Recording) bool {
	if st.transcriptWait <= 0 || !st.wantsType(events.FileTranscript) {
		return false
	}
	for _, f := range zrec.RecordingFiles {
		if strings.EqualFold(f.FileType, events.FileTranscript) {
			return false
		}
	}
	return true
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
