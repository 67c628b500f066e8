package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
)

// After the archive: once every file of a recording is verified, Zoom's copy is
// trashed (or deleted, or kept: ZOOM_AFTER_ARCHIVE) exactly once, and a
// recording-archived event tells notify. The code gathers the facts (gather),
// decide says what to do with them, and settle does it.
//
// Words: a recording *waits* until a time (the retention hold of
// ZOOM_TRASH_AFTER, a file Zoom is still making, a transcript still to come); it
// is *held*, with a reason and an alert, when the facts do not prove Drive holds
// Zoom's bytes; it is *pending* while a file is not verified yet.

// staleZoomPending is how long a recording may sit in RecZoomPending before another
// worker takes it for a crashed one.
const staleZoomPending = 2 * time.Minute

// zoomRecheck is how often a recording that waits for Zoom (a file it is making,
// a transcript) looks at Zoom's list again, should the file's own event not come.
const zoomRecheck = 2 * time.Minute

// heldRecheck is how often a held recording is looked at again: the cause may be
// mended (a file archived again, moved back into the archive).
const heldRecheck = 30 * time.Minute

// googleRefused: Google refuses fetch's own key, so Drive cannot be checked; the
// stage's /readyz fails until it takes it again.
type googleRefused struct{ error }

func (g googleRefused) Unwrap() error { return g.error }

// errBusy: another worker is dealing with Zoom for this recording; the event
// comes back later in case that worker dies before it is done.
var errBusy = errors.New("another worker is archiving this recording")

// policy is what the settings say of the trash.
type policy struct {
	action         string          // ZOOM_AFTER_ARCHIVE: keep, trash or delete
	hold           time.Duration   // ZOOM_TRASH_AFTER: the retention hold
	transcriptWait time.Duration   // ZOOM_TRANSCRIPT_WAIT
	types          map[string]bool // ARCHIVE_FILE_TYPES, upper case; nil: every type
	minLength      time.Duration   // ARCHIVE_MIN_LENGTH: shorter recordings are left alone
	trashShort     bool            // ZOOM_TRASH_SHORT_UNARCHIVED
}

// short tells whether rec runs shorter than ARCHIVE_MIN_LENGTH, and how long it runs.
func (p policy) short(rec events.Recording) (bool, time.Duration) {
	length := recordingLength(rec)
	return p.minLength > 0 && length < p.minLength, length
}

// recordingLength is how long a recording runs: from its files' first start to
// their last end; without those, the meeting's duration (whole minutes).
func recordingLength(rec events.Recording) time.Duration {
	var first, last time.Time
	for _, f := range rec.Files() {
		if f.RecordingStart != nil && (first.IsZero() || f.RecordingStart.Before(first)) {
			first = *f.RecordingStart
		}
		if f.RecordingEnd != nil && f.RecordingEnd.After(last) {
			last = *f.RecordingEnd
		}
	}
	if first.IsZero() || !last.After(first) {
		return time.Duration(rec.Duration) * time.Minute
	}
	return last.Sub(first)
}

func (p policy) wants(f events.RecordingFile) bool { return p.wantsType(f.FileType) }

func (p policy) wantsType(fileType string) bool {
	return p.types == nil || p.types[strings.ToUpper(fileType)]
}

// awaitsTranscript: transcripts are archived and waited for, and zrec lists none
// yet. (Whether the recording has sound is not asked: a recording's files can
// change, and waiting costs less than a transcript lost.)
func (p policy) awaitsTranscript(zrec events.Recording) bool {
	if p.transcriptWait <= 0 || !p.wantsType(events.FileTranscript) {
		return false
	}
	for _, f := range zrec.RecordingFiles {
		if strings.EqualFold(f.FileType, events.FileTranscript) {
			return false
		}
	}
	return true
}

// trashFacts are what the decision rests on.
type trashFacts struct {
	rec    events.RecordingJob         // fetch's record of the recording
	claims map[string]events.FileJob   // upload's word: verified, and the Drive id
	own    map[string]events.FileFacts // fetch's record of each file, and what it read
	zoom   events.Recording            // Zoom's listing now (when the policy is not keep)
	gone   bool                        // Zoom has no such recording
	// transcribes is the host's cloud transcription setting, nil until asked.
	transcribes *bool
	// proofs are Drive's answers for each file, nil until asked.
	proofs map[string]driveProof
	now    time.Time
}

// act is what decide says to do.
type act int

const (
	actDone    act = iota // archived already: nothing to do
	actPending            // a file is not verified yet: its verified event decides again
	actRefetch            // files fetch has not read as Zoom now lists them: read them again
	actAsk                // a fact is missing (ask): gather it, then decide again
	actWait               // until a time
	actHold               // kept in Zoom, with a reason, until a person or a change mends it
	actTrash
	actDelete
	actKeep
)

// fact names a fact gathered only when the decision needs it.
type fact int

const (
	factTranscribes fact = iota + 1 // the host's transcription setting (a Zoom call)
	factProofs                      // Drive's answers for every file
)

// outcome is decide's answer. Before acting, the times and marks set are noted on
// the recording, so that a restart decides the same.
type outcome struct {
	act    act
	until  time.Time // actWait
	reason string    // actWait, actHold: said in logs and the alert
	keys   []string  // actRefetch
	ask    fact      // actAsk

	trashAt       time.Time // the retention hold begins: not before this
	transcriptDue time.Time // the transcript is waited for until this
	noTranscript  bool      // the transcript waited for did not come
}

// decide is the trash decision: may the recording leave Zoom now? Zoom's copy
// goes only once every file is verified, Zoom's listing of this moment shows each
// file as fetch read it, nothing is still being made, the holds are over, and
// Drive itself shows each file with fetch's size and MD5 inside the archive.
func decide(f trashFacts, p policy) outcome {
	if f.rec.State == events.RecArchived || len(f.rec.Files) == 0 {
		return outcome{act: actDone}
	}
	if !verifiedAll(f) {
		return outcome{act: actPending}
	}
	remove := map[string]act{"trash": actTrash, "delete": actDelete}[p.action]
	switch {
	case p.action == "keep":
		return outcome{act: actKeep} // nothing leaves Zoom: no proof is needed
	case f.gone:
		return outcome{act: remove} // nothing left in Zoom to lose
	}
	var refetch []string
	for _, zf := range f.zoom.Files() {
		if !p.wants(zf) {
			continue
		}
		key := events.FileKey(f.zoom.UUID, zf)
		own, ok := f.own[key]
		switch {
		case !completed(zf):
			return outcome{act: actWait, until: f.now.Add(zoomRecheck), reason: "Zoom is still making a " + zf.FileType + " file"}
		case zf.DownloadURL == "":
			return outcome{act: actHold, reason: fmt.Sprintf("Zoom lists a %s file without a download link, so it cannot be archived", zf.FileType)}
		case !slices.Contains(f.rec.Files, key) || !ok:
			return outcome{act: actPending} // planned from this listing: its job decides again
		case own.File.ID != zf.ID || !strings.EqualFold(own.File.FileType, zf.FileType) || own.File.FileSize != zf.FileSize:
			return outcome{act: actHold, reason: fmt.Sprintf("Zoom lists the %s file %q otherwise than it was archived", zf.FileType, zf.ID)}
		case !own.Fetched() || zf.FileSize > 0 && own.Size != int64(zf.FileSize):
			refetch = append(refetch, key)
		}
	}
	if len(refetch) > 0 {
		return outcome{act: actRefetch, keys: refetch}
	}
	var o outcome
	if p.awaitsTranscript(f.zoom) && !f.rec.NoTranscript {
		due := f.rec.TranscriptDue
		switch {
		case due.IsZero() && f.transcribes == nil:
			return outcome{act: actAsk, ask: factTranscribes}
		case due.IsZero() && *f.transcribes:
			due = f.now.Add(p.transcriptWait)
			o.transcriptDue = due
			fallthrough
		case f.now.Before(due):
			o.act, o.until, o.reason = actWait, minTime(due, f.now.Add(zoomRecheck)), "the transcript Zoom is making"
			return o
		case !due.IsZero():
			o.noTranscript = true // waited for in vain: it goes on without
		}
	}
	if p.hold > 0 {
		at := f.rec.TrashAt
		if at.IsZero() {
			at = f.now.Add(p.hold)
			o.trashAt = at
		}
		if f.now.Before(at) {
			o.act, o.until, o.reason = actWait, at, "the retention hold (ZOOM_TRASH_AFTER)"
			return o
		}
	}
	if f.proofs == nil {
		return outcome{act: actAsk, ask: factProofs}
	}
	for _, key := range f.rec.Files {
		own, ok := f.own[key]
		if !ok {
			continue // planned before fetch kept its own record, and no longer in Zoom: nothing to lose
		}
		if why := f.proofs[key].against(own); why != "" {
			return outcome{act: actHold, reason: why}
		}
	}
	o.act = remove
	return o
}

// verifiedAll: upload says every file of the recording is verified.
func verifiedAll(f trashFacts) bool {
	for _, key := range f.rec.Files {
		if f.claims[key].State != events.JobVerified {
			return false
		}
	}
	return len(f.rec.Files) > 0
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// afterVerified decides about the recording of a verified file, and does it.
func (st *stage) afterVerified(ctx context.Context, msg jetstream.Msg) {
	var v events.FileVerified
	if err := json.Unmarshal(msg.Data(), &v); err != nil || v.Key == "" {
		st.log.Error("unreadable file-verified event; skipped", "subject", msg.Subject())
		msg.TermWithReason("unreadable")
		return
	}
	// The event is a trigger, like a webhook: it names a recording to decide about,
	// and the decision reads its facts for itself.
	job, found, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(v.Key))
	var o outcome
	if err == nil && found {
		o, err = st.settle(ctx, events.MeetingKey(job.Recording.UUID), v.FolderLink)
	}
	switch {
	case errors.Is(err, errBusy):
		msg.NakWithDelay(staleZoomPending)
	case errors.As(err, new(googleRefused)):
		st.log.Error("google refuses fetch's key; recordings stay in Zoom until Drive can be checked", "err", err)
		msg.NakWithDelay(heldRecheck)
	case err != nil:
		st.log.Warn("after-archive step failed; will retry", "file_key", v.Key, "err", err)
		msg.NakWithDelay(10 * time.Second)
	case o.act == actWait:
		msg.NakWithDelay(time.Until(o.until) + 100*time.Millisecond) // the broker brings it back then
	case o.act == actHold:
		msg.NakWithDelay(heldRecheck)
	default:
		msg.Ack()
	}
}

// settle gathers the facts of the recording mkey, decides, and does what was decided.
func (st *stage) settle(ctx context.Context, mkey, folderLink string) (outcome, error) {
	f, err := st.gather(ctx, mkey)
	if err != nil {
		return outcome{}, err
	}
	o := decide(f, st.policy)
	for o.act == actAsk { // each fact at most once: decide asks only for what is missing
		if err := st.ask(ctx, &f, o.ask); err != nil {
			return o, err
		}
		o = decide(f, st.policy)
	}
	log := st.log.With("meeting_uuid", f.rec.Recording.UUID)
	if err := st.note(ctx, mkey, o); err != nil {
		return o, err
	}
	switch o.act {
	case actWait:
		log.Info("waiting before Zoom's copy is dealt with", "for", o.reason, "until", o.until)
	case actHold:
		return o, st.held(ctx, f.rec, o.reason)
	case actRefetch:
		return o, st.refetch(ctx, o.keys, log)
	case actTrash, actDelete, actKeep:
		return o, st.removeFromZoom(ctx, f, o, folderLink)
	}
	return o, nil
}

// gather reads the recording's facts: fetch's records, upload's claims, and,
// once every file is claimed verified, Zoom's listing of this moment (files it
// lists and no event announced are planned first).
func (st *stage) gather(ctx context.Context, mkey string) (trashFacts, error) {
	f := trashFacts{claims: map[string]events.FileJob{}, own: map[string]events.FileFacts{}}
	read := func() error {
		var err error
		if f.rec, _, err = bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(mkey)); err != nil {
			return err
		}
		for _, key := range f.rec.Files {
			if f.claims[key], _, err = bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key)); err != nil {
				return err
			}
			own, found, err := bus.Get[events.FileFacts](ctx, st.kv, events.FactsKey(key))
			if err != nil {
				return err
			}
			if found {
				f.own[key] = own
			}
		}
		return nil
	}
	if err := read(); err != nil {
		return f, err
	}
	if st.policy.action != "keep" && f.rec.State != events.RecArchived && verifiedAll(f) {
		zrec, _, err := st.zoom.recording(ctx, f.rec.Recording.UUID, false)
		switch {
		case errors.Is(err, errGone):
			f.gone = true
		case err != nil:
			return f, err
		default:
			f.zoom = zrec
			if _, err := st.plan(ctx, zrec, f.claims[f.rec.Files[0]].EventSeq); err != nil {
				return f, err
			}
			if err := read(); err != nil {
				return f, err
			}
		}
	}
	f.now = time.Now().UTC()
	return f, nil
}

// ask gathers the fact decide asked for.
func (st *stage) ask(ctx context.Context, f *trashFacts, what fact) error {
	switch what {
	case factTranscribes:
		on, err := st.zoom.transcribes(ctx, f.zoom.HostID)
		if err != nil {
			// Not knowing is taken as yes: waiting costs Zoom storage, a lost
			// transcript cannot be had back.
			st.log.Warn("cannot read the host's transcription setting; waiting for a transcript as if it were on", "meeting_uuid", f.zoom.UUID, "err", err)
			on = true
		}
		f.transcribes = &on
	case factProofs:
		proofs, err := st.drive.prove(ctx, f.rec.Files, f.claims)
		if serviceaccount.ErrorCode(err) != "" {
			// Not this recording's fault, and not cured by asking again soon.
			err = googleRefused{serviceaccount.Explain(err, serviceaccount.DriveMetadataScope, "check DRIVE_IMPERSONATE")}
			st.health.Set("google", err)
			return err
		}
		if err != nil {
			return err
		}
		st.health.Set("google", nil)
		f.proofs = proofs
	}
	return nil
}

// note records on the recording the times and marks o sets; a time already
// recorded stays.
func (st *stage) note(ctx context.Context, mkey string, o outcome) error {
	if o.trashAt.IsZero() && o.transcriptDue.IsZero() && !o.noTranscript {
		return nil
	}
	_, err := bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, exists bool) error {
		changed := false
		if !o.trashAt.IsZero() && r.TrashAt.IsZero() {
			r.TrashAt, changed = o.trashAt, true
		}
		if !o.transcriptDue.IsZero() && r.TranscriptDue.IsZero() {
			r.TranscriptDue, changed = o.transcriptDue, true
		}
		if o.noTranscript && !r.NoTranscript {
			r.NoTranscript, changed = true, true
			st.log.Warn("the transcript the host's settings promise has not come; going on without it", "meeting_uuid", r.Recording.UUID, "waited", st.policy.transcriptWait)
		}
		if !exists || !changed {
			return bus.ErrNoChange
		}
		r.Updated = time.Now().UTC()
		return nil
	})
	return err
}

// held keeps the recording in Zoom and tells the admins why, once.
func (st *stage) held(ctx context.Context, rec events.RecordingJob, reason string) error {
	st.m.held.Inc()
	st.log.Error("recording kept in Zoom: the proof before the trash failed", "meeting_uuid", rec.Recording.UUID, "reason", reason)
	_, err := bus.Update(ctx, st.kv, events.RecordingJobKey(rec.Key), func(r *events.RecordingJob, exists bool) error {
		if !exists || r.Held == reason {
			return bus.ErrNoChange
		}
		r.Held, r.Updated = reason, time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	return bus.RaiseAlert(ctx, st.js, st.kv, events.Alert{Kind: events.AlertTrashHeldPrefix + rec.Key, Message: fmt.Sprintf(
		"The recording %q of %s stays in Zoom: %s. zoomarchive removes a recording from Zoom only once Drive itself shows each of its files "+
			"with the bytes fetch read from Zoom. It looks again every %d minutes, and says so when the recording goes; "+
			"until then nothing is lost. fetch status lists it (meeting %s).",
		rec.Recording.Topic, rec.Recording.StartTime.Format("2006-01-02 15:04 MST"), reason, int(heldRecheck.Minutes()), rec.Recording.UUID)})
}

// refetch starts files over from byte 0: upload says they are verified, but
// fetch has no reading of its own of them as Zoom now lists them.
func (st *stage) refetch(ctx context.Context, keys []string, log *slog.Logger) error {
	for _, key := range keys {
		_, err := st.setJob(ctx, key, func(j *events.FileJob) {
			j.State, j.Attempts, j.Mismatches, j.LastError = events.JobQueued, 0, 0, ""
		})
		if err != nil {
			return err
		}
		if _, err := st.js.PublishMsg(ctx, events.RestartMsg(key)); err != nil {
			return err
		}
		log.Warn("file verified without fetch's own reading of Zoom's bytes; reading it again", "file_key", key)
	}
	return nil
}

// removeFromZoom carries out trash, delete or keep: one worker moves the
// recording to zoom_pending and makes the call (a crash after it leaves
// zoom_pending, which another worker redoes once it is stale); then the
// recording is archived and announced.
func (st *stage) removeFromZoom(ctx context.Context, f trashFacts, o outcome, folderLink string) error {
	mkey, uuid := f.rec.Key, f.rec.Recording.UUID
	rec, err := bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, exists bool) error {
		switch {
		case !exists || r.State == events.RecArchived:
			return errDone
		case r.State == events.RecZoomPending && r.Owner != st.worker && time.Since(r.Updated) < staleZoomPending:
			return errBusy
		}
		r.State, r.ZoomAction, r.Owner, r.Updated = events.RecZoomPending, zoomAction(st.policy.action), st.worker, time.Now().UTC()
		if o.act != actKeep {
			r.ZoomCalls++
		}
		return nil
	})
	if errors.Is(err, errDone) {
		return nil
	} else if err != nil {
		return err
	}
	if o.act != actKeep {
		err := st.zoom.removeRecording(ctx, uuid, st.policy.action)
		switch {
		case errors.Is(err, errGone) && rec.ZoomCalls > 1:
			// Asked before a crash: done then.
		case errors.Is(err, errGone):
			st.log.Warn("recording no longer in Zoom when asked to remove it", "meeting_uuid", uuid)
			rec.ZoomAction = events.ZoomGone
		case err != nil:
			return fmt.Errorf("%s in zoom: %w", st.policy.action, err)
		}
	}
	archived := events.RecordingArchived{Key: mkey, Recording: rec.Recording, FolderLink: folderLink,
		ZoomAction: rec.ZoomAction, NoTranscript: rec.NoTranscript}
	for _, key := range rec.Files {
		j, own := f.claims[key], f.own[key]
		name, size := "", own.Size
		if j.Participant {
			name = j.File.FileName
		}
		if size == 0 {
			size = j.Size
		}
		archived.Files = append(archived.Files, events.ArchivedFile{Key: key, FileID: j.File.ID, FileType: j.File.FileType,
			RecordingType: j.File.RecordingType, Participant: name, Size: size, DriveLink: j.DriveLink,
			Late: slices.Contains(rec.Late, key)})
	}
	b, _ := json.Marshal(archived)
	if _, err := st.js.Publish(ctx, events.RecordingArchivedSubject(mkey), b, jetstream.WithMsgID(events.ArchivedID(mkey, rec.Announced))); err != nil {
		return err
	}
	_, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, _ bool) error {
		r.State, r.ZoomAction, r.Held, r.Updated = events.RecArchived, rec.ZoomAction, "", time.Now().UTC()
		r.Announced = rec.Announced + 1
		if len(r.Files) > len(rec.Files) {
			r.State = events.RecArchiving // a file came meanwhile: its verified event finishes the job
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := bus.ClearAlert(ctx, st.js, st.kv, events.AlertTrashHeldPrefix+mkey, fmt.Sprintf("The recording %q is archived and has left Zoom (%s).", rec.Recording.Topic, rec.ZoomAction)); err != nil {
		return err
	}
	st.m.archived.WithLabelValues(rec.ZoomAction).Inc()
	st.log.Info("recording archived", "meeting_uuid", uuid, "files", len(rec.Files), "zoom", rec.ZoomAction)
	return nil
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

// errDone: the recording is archived already.
var errDone = errors.New("the recording is archived already")

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
