package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// The Drive audit: the job records say what is in Drive; once a day upload asks
// Drive itself. Every verified file is looked for by its zoomFileKey tag, and one
// that is gone (someone deleted it) is archived again: its job goes back to queued,
// marked lost, and fetch is asked for it from byte 0 (fetch takes the recording
// out of Zoom's trash for it, or, when Zoom no longer has it, fails the file with
// a mail that names it). The report goes on ARCHIVE for notify's digest.

// audit looks for every verified file in Drive.
func (st *stage) audit(ctx context.Context) (events.DriveAudit, error) {
	a := events.DriveAudit{At: time.Now().UTC()}
	keys, err := st.kv.ListKeysFiltered(ctx, events.FileJobKey(">"))
	if err != nil {
		return a, err
	}
	for name := range keys.Keys() {
		job, found, err := bus.Get[events.FileJob](ctx, st.kv, name)
		if err != nil || !found || job.State != events.JobVerified {
			continue
		}
		a.Checked++
		ex, err := st.existing(ctx, job.Key)
		if err != nil {
			st.log.Warn("drive audit: cannot look for a file", "file_key", job.Key, "err", err)
			a.Unsure++
			continue
		}
		if ex != nil {
			continue
		}
		a.Missing = append(a.Missing, fmt.Sprintf("%s of %s (%s, Zoom file %s)", job.File.FileType, job.Recording.Topic,
			job.Recording.StartTime.UTC().Format("2006-01-02 15:04 UTC"), job.File.ID))
		if err := st.archiveAgain(ctx, job); err != nil {
			st.log.Warn("drive audit: cannot ask for a lost file again", "file_key", job.Key, "err", err)
			a.Unsure++
		}
	}
	a.Complete = a.Unsure == 0
	b, _ := json.Marshal(a)
	if _, err := st.js.Publish(ctx, events.SubjectDriveAudit, b); err != nil {
		return a, err
	}
	st.log.Info("drive audit", "checked", a.Checked, "missing", len(a.Missing), "unsure", a.Unsure)
	return a, nil
}

// archiveAgain puts a verified file whose Drive copy is gone back in the queue,
// marked lost, and asks fetch for it from byte 0.
func (st *stage) archiveAgain(ctx context.Context, job events.FileJob) error {
	job, err := bus.Update(ctx, st.kv, events.FileJobKey(job.Key), func(j *events.FileJob, exists bool) error {
		if !exists || j.State != events.JobVerified {
			return bus.ErrNoChange
		}
		j.State, j.Lost, j.Attempts, j.Mismatches = events.JobQueued, true, 0, 0
		j.DriveID, j.DriveLink, j.LastError = "", "", "the Drive copy was deleted; archived again"
		j.Updated = time.Now().UTC()
		return nil
	})
	if err != nil || job.State != events.JobQueued {
		return err
	}
	st.log.Warn("a verified file is gone from Drive; archiving it again", "file_key", job.Key,
		"meeting_uuid", job.Recording.UUID, "file_id", job.File.ID)
	_, err = st.js.PublishMsg(ctx, events.RestartMsg(job.Key), jetstream.WithMsgID(events.LostID(job.Key, job.Generation)))
	return err
}

// auditCommand is upload audit: the Drive audit now.
func auditCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "audit",
		Usage: "look for every verified file in Drive now; archive again what was deleted there",
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			st, _, conn, err := dialed(ctx, v)
			if err != nil {
				return err
			}
			defer conn.Close()
			a, err := st.audit(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "looked for %d verified files in Drive: %d gone (asked for again), %d unsure\n", a.Checked, len(a.Missing), a.Unsure)
			for _, m := range a.Missing {
				fmt.Fprintln(stdout, "  gone:", m)
			}
			return nil
		},
	}
}
