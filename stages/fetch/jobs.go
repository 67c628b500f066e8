package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// planEvent turns a recording event into one job per file. The event is only a
// trigger: it names a recording, and the files are what Zoom's API lists for it
// now. Files the event describes otherwise than Zoom raise an alert (someone may
// be publishing events who should not), and are planned as Zoom lists them.
func (st *stage) planEvent(ctx context.Context, msg jetstream.Msg) {
	event := events.ZoomEventName(msg.Subject())
	if event != events.EventRecordingCompleted && event != events.EventTranscriptCompleted {
		st.m.events.WithLabelValues(event, "ignored").Inc()
		msg.Ack()
		return
	}
	meta, err := msg.Metadata()
	if err != nil { // only a message not from the stream has none
		st.log.Error("event without JetStream metadata; skipped", "event", event, "err", err)
		msg.TermWithReason("no metadata")
		return
	}
	var env events.Envelope
	var p events.RecordingPayload
	err = json.Unmarshal(msg.Data(), &env)
	if err == nil {
		err = json.Unmarshal(env.Payload, &p)
	}
	if p.Object.UUID == "" {
		// Retrying cannot help; the event stays in ZOOM_EVENTS for a look and a replay.
		st.log.Error("recording event without a readable recording; skipped", "event", event, "seq", meta.Sequence.Stream, "err", err)
		st.m.events.WithLabelValues(event, "unreadable").Inc()
		msg.TermWithReason("unreadable recording payload")
		return
	}
	uuid := p.Object.UUID
	rec, known, err := bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(events.MeetingKey(uuid)))
	if err != nil {
		st.log.Warn("cannot read the recording's record; will retry", "meeting_uuid", uuid, "err", err)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	host := cmp.Or(p.Object.HostID, p.Object.HostEmail)
	if known {
		host = cmp.Or(rec.Recording.HostID, rec.Recording.HostEmail) // fetch's own record, from Zoom's API
	}
	zrec, err := st.listing(ctx, uuid, host)
	switch {
	case errors.Is(err, errGone) && known && rec.ZoomAction != "" && rec.ZoomAction != events.ZoomKept:
		// Archived and gone from Zoom since: a retry or a replay of its event.
		st.m.events.WithLabelValues(event, "gone").Inc()
		msg.Ack()
		return
	case errors.Is(err, errGone):
		zrec = events.Recording{UUID: uuid}
	case refusal(err):
		msg.NakWithDelay(st.delays[0]) // Zoom refuses the app: an alert says so, the event waits
		return
	case err != nil:
		st.log.Warn("cannot read the recording from Zoom; will retry", "meeting_uuid", uuid, "err", err)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	if diff := st.unlike(p.Object, zrec); len(diff) > 0 {
		if err := st.eventMismatch(ctx, p.Object, diff, meta.Sequence.Stream); err != nil {
			st.log.Warn("cannot raise an alert; will retry", "meeting_uuid", uuid, "err", err)
			msg.NakWithDelay(5 * time.Second)
			return
		}
	}
	if errors.Is(err, errGone) {
		st.m.events.WithLabelValues(event, "not_in_zoom").Inc()
		st.log.Warn("event names a recording Zoom does not have; nothing planned", "meeting_uuid", uuid, "event", event, "seq", meta.Sequence.Stream)
		msg.Ack()
		return
	}
	if short, length := st.policy.short(zrec); short && (!known || rec.State == events.RecShort) {
		if err := st.leaveShort(ctx, zrec, length); err != nil {
			st.log.Warn("cannot record a short recording; will retry", "meeting_uuid", uuid, "err", err)
			msg.NakWithDelay(5 * time.Second)
			return
		}
		st.m.events.WithLabelValues(event, "short").Inc()
		msg.Ack()
		return
	}
	n, err := st.plan(ctx, zrec, meta.Sequence.Stream)
	if err != nil {
		st.log.Warn("planning jobs failed; will retry", "meeting_uuid", uuid, "err", err)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	st.m.events.WithLabelValues(event, "planned").Inc()
	st.log.Info("recording planned", "meeting_uuid", uuid, "event", event, "new_files", n, "seq", meta.Sequence.Stream)
	msg.Ack()
}

// leaveShort records a recording shorter than ARCHIVE_MIN_LENGTH, which is not
// archived: it stays in Zoom for the admins to decide (the digest lists it), or
// with ZOOM_TRASH_SHORT_UNARCHIVED goes to Zoom's trash, recoverable there.
func (st *stage) leaveShort(ctx context.Context, zrec events.Recording, length time.Duration) error {
	mkey := events.MeetingKey(zrec.UUID)
	rec, err := bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, exists bool) error {
		if exists {
			return bus.ErrNoChange
		}
		*r = events.RecordingJob{Key: mkey, Recording: zrec.Info(), State: events.RecShort, Length: length,
			ZoomAction: events.ZoomKept, Updated: time.Now().UTC()}
		st.log.Info("recording shorter than ARCHIVE_MIN_LENGTH; not archived", "meeting_uuid", zrec.UUID, "length", length)
		return nil
	})
	if err != nil || rec.State != events.RecShort || !st.policy.trashShort || rec.ZoomAction == events.ZoomTrashed {
		return err
	}
	if err := st.zoom.removeRecording(ctx, zrec.UUID, "trash"); err != nil && !errors.Is(err, errGone) {
		return fmt.Errorf("trash in zoom: %w", err)
	}
	_, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, _ bool) error {
		r.ZoomAction, r.Updated = events.ZoomTrashed, time.Now().UTC()
		return nil
	})
	st.log.Warn("short recording moved to Zoom's trash unarchived (ZOOM_TRASH_SHORT_UNARCHIVED)", "meeting_uuid", zrec.UUID, "length", length)
	return err
}

// listing is Zoom's listing of a recording now: from the API, or from its host's
// trash (a recording trashed, whose transcript comes late); errGone when Zoom has
// neither. host is the host's id or email address.
func (st *stage) listing(ctx context.Context, uuid, hostID string) (events.Recording, error) {
	zrec, _, err := st.zoom.recording(ctx, uuid, false)
	if !errors.Is(err, errGone) || hostID == "" {
		return zrec, err
	}
	return st.zoom.trashed(ctx, hostID, uuid)
}

// unlike lists, in plain words, the wanted files of the event that Zoom's listing
// zrec does not hold as the event says: missing, of another type or size. (The
// event's download URL is not compared: fetch never uses it, and Zoom's webhook
// and API URLs differ by design.)
func (st *stage) unlike(event, zrec events.Recording) []string {
	listed := map[string]events.RecordingFile{}
	for _, f := range zrec.Files() {
		listed[events.FileKey(zrec.UUID, f)] = f
	}
	var out []string
	for _, f := range event.Files() {
		if !st.wants(f) {
			continue
		}
		z, ok := listed[events.FileKey(event.UUID, f)]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("a %s file (id %q) that Zoom does not list", f.FileType, f.ID))
		case !strings.EqualFold(z.FileType, f.FileType):
			out = append(out, fmt.Sprintf("file %q as %s, which Zoom lists as %s", f.ID, f.FileType, z.FileType))
		case f.FileSize != 0 && z.FileSize != 0 && f.FileSize != z.FileSize:
			out = append(out, fmt.Sprintf("the %s file %q as %d bytes, which Zoom lists as %d", f.FileType, f.ID, f.FileSize, z.FileSize))
		}
	}
	return out
}

// eventMismatch tells the admins, once per recording, that an event did not
// match Zoom.
func (st *stage) eventMismatch(ctx context.Context, event events.Recording, diff []string, seq uint64) error {
	st.m.mismatches.Inc()
	st.log.Error("an event did not match Zoom; planning what Zoom lists", "meeting_uuid", event.UUID, "seq", seq, "differences", diff)
	a := events.Alert{Kind: events.AlertEventMismatchPrefix + events.MeetingKey(event.UUID), Message: fmt.Sprintf(
		"A recording event for %q (%s) did not match what Zoom itself lists for that recording: it named %s. "+
			"zoomarchive archives only what Zoom lists, so nothing is lost; but Zoom does not send such events, so "+
			"someone may be sending them in its name. The event is message %d of the ZOOM_EVENTS stream (nats stream get ZOOM_EVENTS %d). "+
			"If this repeats, change the webhook secret token in the Zoom app (and ZOOM_WEBHOOK_SECRET) and the broker identity of the hook (broker creds --renew hook).",
		event.Topic, event.UUID, strings.Join(diff, "; "), seq, seq)}
	return bus.RaiseAlert(ctx, st.js, st.kv, a)
}

// wants tells whether f is of a type ARCHIVE_FILE_TYPES keeps (any case).
func (st *stage) wants(f events.RecordingFile) bool { return st.policy.wants(f) }

func (st *stage) wantsType(fileType string) bool { return st.policy.wantsType(fileType) }

// completed: Zoom has finished the file (CC and TIMELINE entries may carry no
// status). One still processing is not planned; it holds its recording instead.
func completed(f events.RecordingFile) bool {
	return f.Status == "" || f.Status == events.FileCompleted
}

// plan records, from Zoom's listing rec, the facts of each file wanted and
// complete, creates its job and records it in the recording's job; it returns how
// many jobs are new. A file whose facts changed (an earlier plan rested on other
// facts) starts over. A file that comes after its recording was archived is marked
// late and opens the recording again.
func (st *stage) plan(ctx context.Context, rec events.Recording, eventSeq uint64) (int, error) {
	info := rec.Info()
	var keys []string
	created := 0
	add := func(f events.RecordingFile, participant bool) error {
		if !st.wants(f) || !completed(f) {
			return nil
		}
		key := events.FileKey(rec.UUID, f)
		if f.DownloadURL == "" {
			// Its recording stays in Zoom (the trash decision holds it, and says so).
			st.log.Warn("Zoom lists the file without a download_url (on-prem?); not fetched", "meeting_uuid", rec.UUID, "file_id", f.ID, "file_type", f.FileType)
			return nil
		}
		keys = append(keys, key)
		replanned, err := st.recordFacts(ctx, key, f, participant)
		if err != nil {
			return err
		}
		problems := f.Problems(rec)
		isNew := false
		job, err := bus.Update(ctx, st.kv, events.FileJobKey(key), func(j *events.FileJob, exists bool) error {
			if isNew = !exists; exists && !replanned {
				return bus.ErrNoChange
			}
			*j = events.FileJob{Key: key, Recording: info, File: f, Participant: participant, EventSeq: eventSeq,
				State: events.JobQueued, Generation: j.Generation, Updated: time.Now().UTC()}
			if len(problems) > 0 {
				j.State, j.LastError = events.JobFailed, "Zoom sent a value that does not parse: "+strings.Join(problems, "; ")
				j.Unannounced = events.FetchFailedID(key, 0)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if job.State == events.JobFailed && len(problems) > 0 {
			// Unannounced after a broker error: the redelivery says it.
			if isNew {
				st.log.Error("file refused: Zoom sent a value that does not parse", "meeting_uuid", rec.UUID, "file_id", f.ID, "problems", problems)
				st.m.failed.Inc()
			}
			return bus.AnnounceFailure(ctx, st.js, st.kv, job)
		}
		if replanned && !isNew {
			st.log.Warn("Zoom lists the file otherwise than it was planned; starting it over", "meeting_uuid", rec.UUID, "file_id", f.ID,
				"file_type", f.FileType, "bytes", int64(f.FileSize))
			_, err := st.js.PublishMsg(ctx, events.RestartMsg(key))
			return err
		}
		if job.State != events.JobQueued {
			return nil
		}
		if isNew {
			created++
		}
		// New, or queued before a crash kept its work message from being sent. A
		// second work message for one file is harmless: the download lease decides.
		return st.enqueue(ctx, key)
	}
	for _, f := range rec.RecordingFiles {
		if err := add(f, false); err != nil {
			return created, err
		}
	}
	for _, f := range rec.ParticipantAudioFiles {
		if err := add(f, true); err != nil {
			return created, err
		}
	}
	st.m.queued.Add(float64(created))
	if len(keys) == 0 {
		return 0, nil
	}
	var late []string
	_, err := bus.Update(ctx, st.kv, events.RecordingJobKey(events.MeetingKey(rec.UUID)), func(r *events.RecordingJob, exists bool) error {
		if !exists {
			*r = events.RecordingJob{Key: events.MeetingKey(rec.UUID), Recording: info, State: events.RecArchiving}
		}
		have := map[string]bool{}
		for _, k := range r.Files {
			have[k] = true
		}
		late = nil
		added := 0
		for _, k := range keys {
			if !have[k] {
				r.Files, have[k] = append(r.Files, k), true
				added++
				if r.State != events.RecArchiving {
					late = append(late, k)
				}
			}
		}
		if exists && added == 0 {
			return bus.ErrNoChange
		}
		r.Late = append(r.Late, late...)
		if r.State == events.RecArchived && len(late) > 0 {
			r.State = events.RecArchiving // the late file's verified event archives it again
		}
		r.Updated = time.Now().UTC()
		return nil
	})
	if len(late) > 0 {
		st.log.Warn("a file came after its recording was archived; fetching it", "meeting_uuid", rec.UUID, "files", late)
	}
	return created, err
}

// recordFacts keeps f, as Zoom lists it, in fetch's own record of the file; it
// tells whether an earlier record held other facts (id, type or size), which
// the bytes read so far are not of. A new download URL alone is kept quietly:
// the file is the same.
func (st *stage) recordFacts(ctx context.Context, key string, f events.RecordingFile, participant bool) (bool, error) {
	replanned := false
	_, err := bus.Update(ctx, st.kv, events.FactsKey(key), func(x *events.FileFacts, exists bool) error {
		same := exists && x.File.ID == f.ID && strings.EqualFold(x.File.FileType, f.FileType) && x.File.FileSize == f.FileSize
		if same && x.File.DownloadURL == f.DownloadURL {
			return bus.ErrNoChange
		}
		replanned = exists && !same
		if !same {
			x.Planned++
		}
		x.Key, x.File, x.Participant, x.Updated = key, f, participant, time.Now().UTC()
		return nil
	})
	return replanned, err
}

// factsOf is fetch's own record of a job's file; a job planned before fetch kept
// one (an upgrade) gets it from Zoom's listing now.
func (st *stage) factsOf(ctx context.Context, job events.FileJob) (events.FileFacts, error) {
	facts, found, err := bus.Get[events.FileFacts](ctx, st.kv, events.FactsKey(job.Key))
	if err != nil || found {
		return facts, err
	}
	zrec, err := st.listing(ctx, job.Recording.UUID, cmp.Or(job.Recording.HostID, job.Recording.HostEmail))
	if err != nil {
		return facts, err
	}
	for _, f := range zrec.Files() {
		if events.FileKey(zrec.UUID, f) == job.Key && f.DownloadURL != "" {
			if _, err := st.recordFacts(ctx, job.Key, f, job.Participant); err != nil {
				return facts, err
			}
			facts, _, err = bus.Get[events.FileFacts](ctx, st.kv, events.FactsKey(job.Key))
			return facts, err
		}
	}
	return facts, permanent{fmt.Errorf("%w: Zoom no longer lists the file", errFileGone)}
}

// enqueue sends a file's work message. It carries no dedupe id: a replay must get
// through, and a second message for a file is settled by the job's state and lease.
func (st *stage) enqueue(ctx context.Context, key string) error {
	_, err := st.js.PublishMsg(ctx, nats.NewMsg(events.FetchJobSubject(key)))
	return err
}

// retryCommand starts a failed file over, the one command a failure mail gives:
// fetch retry FILE_KEY.
func retryCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "retry",
		Usage: "start a failed file over from byte 0: fetch retry FILE_KEY (the failure mail names it)",
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("give the file key: fetch retry FILE_KEY")
			}
			st, closeFn, err := connected(ctx, v, stdout)
			if err != nil {
				return err
			}
			defer closeFn()
			job, err := st.retry(ctx, c.Args().First())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s of %q queued again from byte 0; the archived mail follows once it is in Drive\n",
				job.File.FileType, job.Recording.Topic)
			return nil
		},
	}
}

// retry puts a failed file job back in the queue with its attempts and mismatches
// forgotten, and sends its work message asking for a fresh start (a new
// generation), so nothing half-done of the failed tries is used. A job still
// queued (its message lost, say) gets its message again.
func (st *stage) retry(ctx context.Context, key string) (events.FileJob, error) {
	job, err := bus.Update(ctx, st.kv, events.FileJobKey(key), func(j *events.FileJob, exists bool) error {
		switch {
		case !exists:
			return fmt.Errorf("no file job %s (nats kv ls %s lists them)", key, events.BucketJobs)
		case j.State != events.JobFailed && j.State != events.JobQueued:
			return fmt.Errorf("file %s is %s, not failed: nothing to retry", key, j.State)
		}
		j.State, j.Attempts, j.Mismatches, j.LastError, j.Updated = events.JobQueued, 0, 0, "", time.Now().UTC()
		return nil
	})
	if err != nil {
		return job, err
	}
	if _, err := st.js.PublishMsg(ctx, events.RestartMsg(key)); err != nil {
		return job, fmt.Errorf("queued, but the work message did not go (run the command again): %w", err)
	}
	st.log.Info("file retried by an operator", "file_key", key, "meeting_uuid", job.Recording.UUID, "file_id", job.File.ID)
	return job, nil
}
