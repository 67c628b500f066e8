package main

import (
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

// planEvent turns a recording event into one job per file. A file whose job exists
// (a retry, a replay, a transcript after its recording) is not started again.
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
	n, err := st.plan(ctx, p.Object, meta.Sequence.Stream)
	if err != nil {
		st.log.Warn("planning jobs failed; will retry", "meeting_uuid", p.Object.UUID, "err", err)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	st.m.events.WithLabelValues(event, "planned").Inc()
	st.log.Info("recording planned", "meeting_uuid", p.Object.UUID, "event", event, "new_files", n, "seq", meta.Sequence.Stream)
	msg.Ack()
}

// wants tells whether f is of a type ARCHIVE_FILE_TYPES keeps (any case).
func (st *stage) wants(f events.RecordingFile) bool { return st.wantsType(f.FileType) }

func (st *stage) wantsType(fileType string) bool {
	return st.types == nil || st.types[strings.ToUpper(fileType)]
}

// completed: Zoom has finished the file (CC and TIMELINE entries may carry no
// status). One still processing is not planned; it holds its recording instead.
func completed(f events.RecordingFile) bool {
	return f.Status == "" || f.Status == events.FileCompleted
}

// plan creates the jobs of rec's files (those wanted and complete) and records them
// in the recording's job; it returns how many jobs are new. A file that comes after
// its recording was archived is marked late and opens the recording again.
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
			st.log.Warn("file has no download_url (on-prem?); skipped", "meeting_uuid", rec.UUID, "file_id", f.ID, "file_type", f.FileType)
			return nil
		}
		keys = append(keys, key)
		problems := f.Problems(rec)
		isNew := false
		job, err := bus.Update(ctx, st.kv, events.FileJobKey(key), func(j *events.FileJob, exists bool) error {
			if isNew = !exists; exists {
				return bus.ErrNoChange
			}
			*j = events.FileJob{Key: key, Recording: info, File: f, Participant: participant, EventSeq: eventSeq,
				State: events.JobQueued, Updated: time.Now().UTC()}
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
