package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// Reconciliation: Zoom's recordings of the last days (and its trash) against the
// jobs and Drive. It finds recordings no event brought (and queues them, unless
// told only to report), jobs stuck in one state, recordings whose files are all in
// Drive yet still in Zoom, and trashed recordings with files not in Drive, and
// Zoom's cloud recording storage; the report goes on ARCHIVE for notify's digest. Daily in the stage (one worker a day
// takes it), or on demand with fetch reconcile.

func reconcileCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "reconcile",
		Usage: "compare Zoom's recordings of the last days with the jobs and Drive, queue what is missing, and report",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "days", Value: 0, Usage: "how many days back (default FETCH_RECONCILE_DAYS)"},
			&cli.BoolFlag{Name: "report-only", Usage: "queue nothing, only report"},
		},
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			st, closeFn, err := connected(ctx, v, stdout)
			if err != nil {
				return err
			}
			defer closeFn()
			days := c.Int("days")
			if days <= 0 {
				days = st.reconcileDays
			}
			r, err := st.reconcile(ctx, days, c.Bool("report-only"))
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "reconciled the last %d days: %d missing (%d queued), %d stuck, %d verified but still in Zoom, %d in the trash not in Drive\n",
				r.Days, len(r.Missing), r.Enqueued, len(r.Stuck), len(r.StillInZoom), len(r.TrashNotInDrive))
			return nil
		},
	}
}

// connected is a command's stage with its broker connection open; closeFn ends it.
func connected(ctx context.Context, v *config.Values, stdout io.Writer) (st *stage, closeFn func(), err error) {
	st, rc, err := configure(v, stdout)
	if err != nil {
		return nil, nil, err
	}
	if closeFn, err = st.connect(ctx, rc.bus); err != nil {
		return nil, nil, err
	}
	return st, closeFn, nil
}

// connect is a command's broker connection: the topology in place, the job bucket open.
func (st *stage) connect(ctx context.Context, bc bus.Config) (func(), error) {
	conn, err := bus.Dial(ctx, bc, st.log)
	if err != nil {
		return nil, err
	}
	st.js, st.kv = conn.JS, conn.KV
	return conn.Close, nil
}

func (st *stage) reconcile(ctx context.Context, days int, reportOnly bool) (events.ReconcileReport, error) {
	r := events.ReconcileReport{At: time.Now().UTC(), Days: days}
	l := listing{pageSize: 300, every: 250 * time.Millisecond}
	users, err := st.zoom.users(ctx, l, "")
	if err != nil {
		return r, err
	}
	to := time.Now().UTC().Truncate(24 * time.Hour)
	recentMissing := 0 // of the last two days: their webhooks should have come
	describe := func(rec events.Recording) string {
		return fmt.Sprintf("%s (%s, %s)", rec.Topic, rec.StartTime.UTC().Format("2006-01-02 15:04 UTC"), rec.UUID)
	}
	for _, u := range users {
		for _, w := range monthWindows(to.AddDate(0, 0, -days), to) {
			q := url.Values{"from": {w[0].Format("2006-01-02")}, "to": {w[1].Format("2006-01-02")}}
			err := st.zoom.eachRecording(ctx, l, u, q, func(rec events.Recording) error {
				job, found, err := bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(events.MeetingKey(rec.UUID)))
				switch {
				case err != nil:
					return err
				case !found:
					r.Missing = append(r.Missing, describe(rec))
					if time.Since(rec.StartTime) < 48*time.Hour {
						recentMissing++
					}
					if reportOnly {
						return nil
					}
					r.Enqueued++
					return st.enqueueRecording(ctx, rec)
				case st.policy.action != "keep" && job.State == events.RecArchived && job.ZoomAction != events.ZoomRestored:
					r.StillInZoom = append(r.StillInZoom, describe(rec))
				}
				return nil
			})
			if err != nil {
				return r, err
			}
		}
		err := st.zoom.eachRecording(ctx, l, u, url.Values{"trash": {"true"}, "trash_type": {"meeting_recordings"}}, func(rec events.Recording) error {
			for _, f := range rec.Files() {
				if !st.wants(f) {
					continue
				}
				if j, found, _ := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(events.FileKey(rec.UUID, f))); !found || j.State != events.JobVerified {
					r.TrashNotInDrive = append(r.TrashNotInDrive, describe(rec))
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	if keys, err := st.kv.ListKeysFiltered(ctx, events.FileJobKey(">")); err == nil {
		for key := range keys.Keys() {
			j, _, err := bus.Get[events.FileJob](ctx, st.kv, key)
			if err == nil && j.State != events.JobVerified && j.State != events.JobFailed && time.Since(j.Updated) > st.stuckAfter {
				r.Stuck = append(r.Stuck, fmt.Sprintf("%s of %s: %s since %s", j.File.FileType, j.Recording.Topic, j.State, j.Updated.Format(time.RFC3339)))
			}
		}
	}
	sort.Strings(r.Stuck)
	storage := st.zoom.storage(ctx, time.Now().UTC())
	r.Storage = &storage
	b2, _ := json.Marshal(r)
	if _, err := st.js.Publish(ctx, events.SubjectReconcileReport, b2); err != nil {
		return r, err
	}
	st.log.Info("reconciled", "days", days, "missing", len(r.Missing), "enqueued", r.Enqueued, "stuck", len(r.Stuck),
		"still_in_zoom", len(r.StillInZoom), "trash_not_in_drive", len(r.TrashNotInDrive), "zoom_storage", storage.Used, "zoom_plan", storage.Plan)
	return r, st.webhooksArrive(ctx, recentMissing)
}

// webhooksArrive alerts when the reconciliation found FETCH_MISSING_ALERT or more
// recordings of the last two days that no webhook announced, and resolves the
// alert when it finds none.
func (st *stage) webhooksArrive(ctx context.Context, missing int) error {
	switch {
	case missing >= st.missingAlert:
		return bus.RaiseAlert(ctx, st.js, st.kv, events.Alert{Kind: events.AlertWebhooksMissing, Message: fmt.Sprintf(
			"Zoom holds %d recordings of the last two days that no webhook announced; the daily reconciliation found and queued them. "+
				"Likely causes: the Zoom app's event subscription is off, lost or no longer sends recording.completed; the app is deactivated; "+
				"the domain no longer points at this server, or its certificate is not valid; the hook or nginx is down. "+
				"Check the app's Event Subscription in the Zoom App Marketplace (Validate), then run sudo deploy/check on the server.", missing)})
	case missing == 0:
		return bus.ClearAlert(ctx, st.js, st.kv, events.AlertWebhooksMissing, "The daily reconciliation found no recording that a webhook did not announce.")
	}
	return nil
}
