package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// Alerts notify finds itself, every NOTIFY_CHECK_EVERY: a stage whose heartbeat
// stopped, a burst of webhooks the hook rejected, a chunk stream full for too long,
// once a day the certificate the domain serves (health.go), a Google key past
// KEY_MAX_AGE and a credential file a stage cannot use (credentials.go). Each is raised
// once when its condition begins and resolved once when it ends, through the same
// path as every other mail.

type sample struct {
	at    time.Time
	count int64
}

func (st *stage) watch(ctx context.Context) {
	t := time.NewTicker(st.every)
	defer t.Stop()
	for {
		st.checkHeartbeats(ctx)
		st.checkWindow(ctx)
		st.checkStorage(ctx)
		st.checkCertificate(ctx)
		st.checkKeyAge(ctx)
		st.pingHeartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (st *stage) checkHeartbeats(ctx context.Context) {
	hbs, err := st.heartbeats(ctx)
	if err != nil {
		return
	}
	now := st.now()
	for _, stage := range events.Stages {
		hb, found := hbs[stage]
		if !found {
			continue
		}
		kind := events.AlertStageSilentPrefix + hb.Stage
		if silent := now.Sub(hb.At); silent > st.silent {
			st.raise(ctx, kind, fmt.Sprintf(
				"The %s stage has not reported for %s (last at %s). It may have stopped; the rest of the pipeline waits for it. "+
					"On the server: sudo docker compose ps, then sudo docker compose logs --tail 50 %s.",
				hb.Stage, silent.Round(time.Second), hb.At.In(st.tz).Format("15:04 MST"), hb.Stage))
		} else {
			st.clear(ctx, kind, fmt.Sprintf("The %s stage reports again.", hb.Stage))
		}
		st.checkCredentialFiles(ctx, hb)
		if hb.Stage == "hook" {
			st.checkRejections(ctx, now, hb.Stats["rejected"])
		}
	}
}

// checkRejections alerts when the hook rejected NOTIFY_REJECTED_BURST webhooks in
// 10 minutes: a wrong secret after a rotation, or someone probing the endpoint.
func (st *stage) checkRejections(ctx context.Context, now time.Time, count int64) {
	if n := len(st.rejects); n > 0 && count < st.rejects[n-1].count {
		st.rejects = nil // the hook restarted: its counter began again
	}
	st.rejects = append(st.rejects, sample{now, count})
	for len(st.rejects) > 1 && now.Sub(st.rejects[0].at) > 10*time.Minute {
		st.rejects = st.rejects[1:]
	}
	burst := count - st.rejects[0].count
	switch {
	case burst >= st.burst || len(st.rejects) == 1 && count >= st.burst:
		st.raise(ctx, events.AlertWebhookRejections, fmt.Sprintf(
			"The hook rejected %d webhooks in the last 10 minutes (bad signatures or stale timestamps). After a secret rotation, check ZOOM_WEBHOOK_SECRET; otherwise someone may be probing the endpoint.", max(burst, count)))
	case burst == 0 && now.Sub(st.rejects[0].at) >= 10*time.Minute-st.every:
		st.clear(ctx, events.AlertWebhookRejections, "The hook has rejected no webhook for 10 minutes.")
	}
}

// checkWindow alerts when the chunk stream stays full: upload is not keeping up
// with fetch, or has stopped.
func (st *stage) checkWindow(ctx context.Context) {
	s, err := st.js.Stream(ctx, events.StreamChunks)
	if err != nil {
		return
	}
	info, err := s.Info(ctx)
	if err != nil || info.Config.MaxBytes <= 0 {
		return
	}
	if float64(info.State.Bytes) < 0.95*float64(info.Config.MaxBytes) {
		st.fullSince = time.Time{}
		st.clear(ctx, events.AlertChunkWindowFull, "The chunk stream drains again: uploads keep up.")
		return
	}
	if st.fullSince.IsZero() {
		st.fullSince = st.now()
	}
	if full := st.now().Sub(st.fullSince); full >= st.fullFor {
		st.raise(ctx, events.AlertChunkWindowFull, fmt.Sprintf(
			"The chunk stream between fetch and upload has been full (%d of %d bytes) for %s: uploads to Drive are not keeping up, or upload has stopped.",
			info.State.Bytes, info.Config.MaxBytes, full.Round(time.Second)))
	}
}

// refusingStreams refuse new messages at their limit (bus.Topology.Ensure): the
// hook's webhooks, fetch's file jobs and the job state. CHUNKS has its own alert,
// ARCHIVE drops its oldest.
var refusingStreams = []string{events.StreamZoomEvents, events.StreamFetchJobs, "KV_" + events.BucketJobs}

// brokerFullAt is how full one of them may get before the admins hear of it:
// early enough that the alert's own record still fits in the job bucket.
const brokerFullAt = 0.9

// checkStorage alerts while a stream that refuses new messages at its limit is
// nearly full. notify reads only the streams' sizes; no stage that writes them
// can raise or clear this alert.
func (st *stage) checkStorage(ctx context.Context) {
	var full []string
	for _, name := range refusingStreams {
		s, err := st.js.Stream(ctx, name)
		if err != nil {
			return
		}
		info, err := s.Info(ctx)
		if err != nil {
			return
		}
		if max := info.Config.MaxBytes; max > 0 && float64(info.State.Bytes) >= brokerFullAt*float64(max) {
			full = append(full, fmt.Sprintf("%s holds %d of its %d bytes", name, info.State.Bytes, max))
		}
	}
	if len(full) == 0 {
		st.clear(ctx, events.AlertBrokerFull, "The broker has room again.")
		return
	}
	st.raise(ctx, events.AlertBrokerFull, fmt.Sprintf(
		"The broker is nearly full: %s. At its limit ZOOM_EVENTS refuses webhooks (the hook answers 503 and Zoom retries for 85 minutes), "+
			"FETCH_JOBS new files and the job bucket every change, so the pipeline stops; nothing already stored is lost. "+
			"A flood of events may be someone holding the hook's credentials: see docs/broker.md, The broker's limits.", strings.Join(full, "; ")))
}

// raise announces an alert once, until clear ends it.
func (st *stage) raise(ctx context.Context, kind, message string) {
	if err := bus.RaiseAlert(ctx, st.js, st.kv, events.Alert{Kind: kind, Message: message}); err != nil {
		st.log.Warn("cannot raise an alert", "kind", kind, "err", err)
	}
}

// clear resolves kind's alert if it is open.
func (st *stage) clear(ctx context.Context, kind, message string) {
	if err := bus.ClearAlert(ctx, st.js, st.kv, kind, message); err != nil {
		st.log.Warn("cannot resolve an alert", "kind", kind, "err", err)
	}
}

// digest is the day's summary.
type digest struct {
	Day               string
	Recordings, Files int
	Bytes, Freed      int64
	FailedToday       int
	OpenFailures      []string
	NoTranscript      []string // recordings removed from Zoom without their promised transcript
	Late              []string // files archived after their recording
	DriveGone         []string // verified files upload's audit found deleted from Drive (archived again)
	Alerts            []string
	Overflow          []string
	Reconcile         *events.ReconcileReport // the day's last reconciliation
	Credentials       []string                // each credential's age
	Version           string                  // the release notify runs (config.Version)
	SharedToday       int                     // recordings' folders shared with their hosts
	NotShared         []string                // folders Drive refused to share, given up or still tried
	ZoomStorage       string                  // Zoom's cloud recording storage, in words
	// Short: recordings shorter than ARCHIVE_MIN_LENGTH, seen today and left in
	// Zoom for the admins to decide; ShortTrashed: those fetch moved to Zoom's
	// trash unarchived (ZOOM_TRASH_SHORT_UNARCHIVED).
	Short, ShortTrashed []string
}

// shortLength is a short recording's length as a person reads it: 0:40, 1:05.
func shortLength(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// digests sends the daily digest at NOTIFY_DIGEST_AT local time.
func (st *stage) digests(ctx context.Context) {
	if st.digestAt == "off" {
		return
	}
	for {
		next, _ := nextDigest(st.digestAt, st.now(), st.tz)
		if retry.Sleep(ctx, time.Until(next)) != nil {
			return
		}
		for try := 0; ; try++ {
			err := st.sendDigest(ctx, next)
			if err == nil || ctx.Err() != nil {
				break
			}
			st.log.Warn("digest not sent; retrying", "err", err)
			retry.Sleep(ctx, retry.Backoff(10*time.Second, try))
		}
	}
}

// nextDigest is the next HH:MM[:SS] in loc after now; "off" gives zero.
func nextDigest(at string, now time.Time, loc *time.Location) (time.Time, error) {
	if at == "off" {
		return time.Time{}, nil
	}
	var h, m, s int
	n, _ := fmt.Sscanf(at, "%d:%d:%d", &h, &m, &s)
	if n < 2 || h > 23 || m > 59 || s > 59 || h < 0 || m < 0 || s < 0 {
		return time.Time{}, fmt.Errorf("%q is not a time of day like 08:00, or off", at)
	}
	now = now.In(loc)
	t := time.Date(now.Year(), now.Month(), now.Day(), h, m, s, 0, loc)
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// sendDigest summarises the day before at from ARCHIVE and the job bucket.
func (st *stage) sendDigest(ctx context.Context, at time.Time) error {
	d := digest{Day: at.In(st.tz).Format("Mon 2 Jan 2006"), Version: config.Version}
	since := at.Add(-24 * time.Hour)
	cons, err := st.js.OrderedConsumer(ctx, events.StreamArchive, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return err
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			break // caught up
		}
		switch subj := msg.Subject(); {
		case strings.HasPrefix(subj, events.RecordingArchivedSubject("")):
			var a events.RecordingArchived
			json.Unmarshal(msg.Data(), &a)
			name := fmt.Sprintf("%s (%s)", a.Recording.Topic, localTime(a.Recording, st.tz))
			if a.NoTranscript {
				d.NoTranscript = append(d.NoTranscript, name)
			}
			late := false
			for _, f := range a.Files {
				if f.Late {
					late = true
					d.Late = append(d.Late, fileKind(f)+" of "+name)
				}
			}
			for _, f := range a.Files {
				if late && !f.Late {
					continue // counted when the recording was first archived
				}
				d.Files++
				d.Bytes += f.Size
				if a.ZoomAction == events.ZoomTrashed || a.ZoomAction == events.ZoomDeleted {
					d.Freed += f.Size
				}
			}
			if !late {
				d.Recordings++
			}
		case strings.HasPrefix(subj, events.FileFailedSubject("")):
			d.FailedToday++
		case subj == events.SubjectDriveAudit:
			var a events.DriveAudit
			if json.Unmarshal(msg.Data(), &a) == nil {
				d.DriveGone = append(d.DriveGone, a.Missing...)
			}
		case subj == events.SubjectReconcileReport:
			var r events.ReconcileReport
			if json.Unmarshal(msg.Data(), &r) == nil {
				d.Reconcile = &r
			}
		case strings.HasPrefix(subj, events.AlertSubject("")):
			var a events.Alert
			json.Unmarshal(msg.Data(), &a)
			line := a.At.In(st.tz).Format("15:04") + " " + alertTitle(a.Kind)
			if a.Resolved {
				line = a.At.In(st.tz).Format("15:04") + " over: " + alertTitle(a.Kind)
			}
			d.Alerts = append(d.Alerts, line)
		}
		if meta, _ := msg.Metadata(); meta != nil && meta.NumPending == 0 {
			break
		}
	}
	if keys, err := st.kv.ListKeysFiltered(ctx, events.FileJobKey(">")); err == nil {
		for key := range keys.Keys() {
			if j, _, err := bus.Get[events.FileJob](ctx, st.kv, key); err == nil && j.State == events.JobFailed {
				d.OpenFailures = append(d.OpenFailures, fmt.Sprintf("%s of %s (%s): %s", j.File.FileType, j.Recording.Topic,
					localTime(j.Recording, st.tz), j.LastError))
			}
		}
	}
	if keys, err := st.kv.ListKeysFiltered(ctx, events.ShareKey(">")); err == nil {
		for key := range keys.Keys() {
			s, _, err := bus.Get[events.FolderShare](ctx, st.kv, key)
			switch {
			case err != nil:
			case s.Shared && s.Updated.After(since):
				d.SharedToday++
			case !s.Shared && s.Attempts > 0:
				d.NotShared = append(d.NotShared, fmt.Sprintf("%s (%s): %s", s.Recording.Topic, localTime(s.Recording, st.tz), shareLine(&s)))
			}
		}
	}
	sort.Strings(d.NotShared)
	if keys, err := st.kv.ListKeysFiltered(ctx, events.RecordingJobKey(">")); err == nil {
		for key := range keys.Keys() {
			r, _, err := bus.Get[events.RecordingJob](ctx, st.kv, key)
			if err != nil || r.State != events.RecShort || !r.Updated.After(since) {
				continue
			}
			line := fmt.Sprintf("%s (%s), host %s, %s long", r.Recording.Topic, localTime(r.Recording, st.tz), r.Recording.HostEmail, shortLength(r.Length))
			if r.ZoomAction == events.ZoomTrashed {
				d.ShortTrashed = append(d.ShortTrashed, line)
			} else {
				d.Short = append(d.Short, line)
			}
		}
	}
	sort.Strings(d.Short)
	sort.Strings(d.ShortTrashed)
	if d.Reconcile != nil && d.Reconcile.Storage != nil {
		d.ZoomStorage = storageLine(*d.Reconcile.Storage)
		st.zoomStorageFull(ctx, *d.Reconcile.Storage)
	}
	var overflow []string
	if keys, err := st.kv.ListKeysFiltered(ctx, events.NotifyKey("overflow.>")); err == nil {
		for key := range keys.Keys() {
			if r, _, err := bus.Get[sentRecord](ctx, st.kv, key); err == nil {
				d.Overflow = append(d.Overflow, r.At.In(st.tz).Format("15:04")+" "+r.Subject)
				overflow = append(overflow, key)
			}
		}
	}
	sort.Strings(d.OpenFailures)
	sort.Strings(d.Overflow)
	d.Credentials = st.credentialLines(ctx)
	if err := st.send(ctx, "digest", at.UTC().Format("20060102"), digestMail(d), ""); err != nil {
		return err
	}
	for _, key := range overflow {
		st.kv.Delete(ctx, key)
	}
	return nil
}

// storageLine says Zoom's cloud recording storage as its report gives it.
func storageLine(s events.ZoomStorage) string {
	if s.NotKnown != "" {
		return "not known: " + s.NotKnown
	}
	line := s.Used + " used"
	if s.Percent >= 0 {
		line += fmt.Sprintf(" of %s (%.0f%%)", s.Plan, s.Percent)
	}
	switch {
	case !s.ChangeKnown:
	case s.Change >= 0:
		line += ", " + humanSize(s.Change) + " more than the day before"
	default:
		line += ", " + humanSize(-s.Change) + " less than the day before"
	}
	return line + " (Zoom's report of " + s.Date + ")"
}

// zoomStorageFull alerts when Zoom's storage is past NOTIFY_ZOOM_STORAGE_ALERT:
// while zoomarchive runs, recordings should leave Zoom, so a full Zoom means some
// do not. Below it, the alert is over.
func (st *stage) zoomStorageFull(ctx context.Context, s events.ZoomStorage) {
	switch {
	case st.zoomFull == 0 || s.NotKnown != "" || s.Percent < 0:
	case s.Percent >= st.zoomFull:
		st.raise(ctx, events.AlertZoomStorage, fmt.Sprintf(
			"Zoom's cloud recording storage is %.0f%% full (%s of %s), past NOTIFY_ZOOM_STORAGE_ALERT (%.0f%%), while zoomarchive is archiving: "+
				"recordings that should have left Zoom are still there. Look at the digest's open failures, stuck jobs and \"in Drive but still in Zoom\"; "+
				"ZOOM_AFTER_ARCHIVE=keep also keeps them. When Zoom is full, it stops recording to the cloud.", s.Percent, s.Used, s.Plan, st.zoomFull))
	default:
		st.clear(ctx, events.AlertZoomStorage, fmt.Sprintf("Zoom's cloud recording storage is back under %.0f%% (%s of %s).", st.zoomFull, s.Used, s.Plan))
	}
}
