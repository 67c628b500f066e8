package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// fetch backfill: the recordings made before zoomarchive ran (or while it was down)
// go the webhooks' way. Every user of the account (active and inactive), every
// month from --from to --to, every page: each recording not known yet is published
// on ZOOM_EVENTS as a recording.completed marked as backfill, so that the running
// fetch takes it like any other, and dedupe keeps archived files from coming again.

func backfillCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "backfill",
		Usage: "queue the cloud recordings of past months, as if Zoom had sent their webhooks",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "first day, yyyy-mm-dd (UTC)"},
			&cli.StringFlag{Name: "to", Usage: "last day, yyyy-mm-dd (UTC); default today"},
			&cli.StringFlag{Name: "user", Usage: "only this user's recordings (email or user id)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be archived, queue nothing"},
			&cli.IntFlag{Name: "page-size", Value: 300, Usage: "recordings per page asked of Zoom (at most 300)"},
			&cli.Float64Flag{Name: "rate", Value: 4, Usage: "list requests a second at most: Zoom's Medium limit is shared with the live stage"},
		},
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			st, rc, err := configure(v, stdout)
			if err != nil {
				return err
			}
			b, err := newBackfill(c, stdout)
			if err != nil {
				return err
			}
			return st.backfill(ctx, rc.bus, b)
		},
	}
}

// backfill is one run's parameters and progress.
type backfill struct {
	from, to time.Time
	listing
	user     string
	dryRun   bool
	out      io.Writer
	terminal bool

	windows, windowsDone, queued, known int
	bytes                               int64
	perUser                             map[string]*tally
	lastReport                          time.Time
}

// tally is what a dry run counts per user.
type tally struct {
	recordings, files, inDrive int
	bytes                      int64
}

// cursor, at backfill.cursor in the job bucket, lets an interrupted run go on.
type cursor struct {
	From    string   `json:"from"`
	To      string   `json:"to"`
	Only    string   `json:"only,omitempty"` // --user
	Done    []string `json:"done"`           // user ids finished
	Current string   `json:"current"`        // user id under way
	Window  string   `json:"window"`         // first day of that user's next window
	Queued  int      `json:"queued"`         // recordings queued so far
}

func newBackfill(c *cli.Context, out io.Writer) (*backfill, error) {
	b := &backfill{listing: listing{pageSize: min(max(c.Int("page-size"), 1), 300)}, user: c.String("user"), dryRun: c.Bool("dry-run"), out: out,
		perUser: map[string]*tally{}}
	var err error
	if b.from, err = time.Parse("2006-01-02", c.String("from")); err != nil {
		return nil, fmt.Errorf("--from %q: not a date like 2025-01-31", c.String("from"))
	}
	b.to = time.Now().UTC().Truncate(24 * time.Hour)
	if c.String("to") != "" {
		if b.to, err = time.Parse("2006-01-02", c.String("to")); err != nil {
			return nil, fmt.Errorf("--to %q: not a date like 2025-12-31", c.String("to"))
		}
	}
	if b.to.Before(b.from) {
		return nil, fmt.Errorf("--to %s is before --from %s", c.String("to"), c.String("from"))
	}
	if rate := c.Float64("rate"); rate > 0 {
		b.every = time.Duration(float64(time.Second) / rate)
	}
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			b.terminal = true
		}
	}
	return b, nil
}

func (st *stage) backfill(ctx context.Context, bc bus.Config, b *backfill) error {
	closeFn, err := st.connect(ctx, bc)
	if err != nil {
		return err
	}
	defer closeFn()
	users, err := st.zoom.users(ctx, b.listing, b.user)
	if err != nil {
		return err
	}
	cur := cursor{From: b.from.Format("2006-01-02"), To: b.to.Format("2006-01-02"), Only: b.user}
	if !b.dryRun {
		if saved, found, err := bus.Get[cursor](ctx, st.kv, events.BackfillKey); err == nil && found &&
			saved.From == cur.From && saved.To == cur.To && saved.Only == cur.Only {
			cur = saved
			fmt.Fprintf(b.out, "going on from an interrupted backfill: %d users done, %d recordings queued\n", len(cur.Done), cur.Queued)
		}
	}
	b.queued = cur.Queued
	done := map[string]bool{}
	for _, id := range cur.Done {
		done[id] = true
	}
	b.windows = len(users) * len(monthWindows(b.from, b.to))
	for _, u := range users {
		start := b.from
		if done[u.ID] {
			b.windowsDone += len(monthWindows(b.from, b.to))
			continue
		}
		if cur.Current == u.ID && cur.Window != "" {
			start, _ = time.Parse("2006-01-02", cur.Window)
			b.windowsDone += len(monthWindows(b.from, b.to)) - len(monthWindows(start, b.to))
		}
		for _, w := range monthWindows(start, b.to) {
			if err := st.backfillWindow(ctx, b, u, w); err != nil {
				return err
			}
			b.windowsDone++
			cur.Current, cur.Window, cur.Queued = u.ID, w[1].AddDate(0, 0, 1).Format("2006-01-02"), b.queued
			if err := b.save(ctx, st, cur); err != nil {
				return err
			}
			b.progress(false)
		}
		cur.Done, cur.Current, cur.Window = append(cur.Done, u.ID), "", ""
		if err := b.save(ctx, st, cur); err != nil {
			return err
		}
	}
	b.progress(true)
	if b.dryRun {
		b.summary(users)
		return nil
	}
	fmt.Fprintf(b.out, "backfill done: %d recordings queued, %d already known, %d windows\n", b.queued, b.known, b.windows)
	return st.kv.Delete(ctx, events.BackfillKey)
}

func (b *backfill) save(ctx context.Context, st *stage, cur cursor) error {
	if b.dryRun {
		return nil
	}
	v, _ := json.Marshal(cur)
	_, err := st.kv.Put(ctx, events.BackfillKey, v)
	return err
}

// backfillWindow queues (or, dry, counts) one user's recordings of one window.
func (st *stage) backfillWindow(ctx context.Context, b *backfill, u zoomUser, w [2]time.Time) error {
	q := url.Values{"from": {w[0].Format("2006-01-02")}, "to": {w[1].Format("2006-01-02")}}
	return st.zoom.eachRecording(ctx, b.listing, u, q, func(rec events.Recording) error { return st.backfillRecording(ctx, b, u, rec) })
}

func (st *stage) backfillRecording(ctx context.Context, b *backfill, u zoomUser, rec events.Recording) error {
	if b.dryRun {
		t := b.perUser[u.ID]
		if t == nil {
			t = &tally{}
			b.perUser[u.ID] = t
		}
		t.recordings++
		for _, f := range rec.Files() {
			if !st.wants(f) || !completed(f) {
				continue
			}
			t.files++
			t.bytes += int64(f.FileSize)
			b.bytes += int64(f.FileSize)
			if j, found, _ := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(events.FileKey(rec.UUID, f))); found && j.State == events.JobVerified {
				t.inDrive++
			}
		}
		return nil
	}
	if _, found, err := bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(events.MeetingKey(rec.UUID))); err != nil {
		return err
	} else if found {
		b.known++ // archived, or under way: its files have jobs
		return nil
	}
	if err := st.enqueueRecording(ctx, rec); err != nil {
		return err
	}
	b.queued++
	for _, f := range rec.RecordingFiles {
		b.bytes += int64(f.FileSize)
	}
	return nil
}

// enqueueRecording puts a recording from Zoom's lists on ZOOM_EVENTS as a
// recording.completed marked as backfill; its id keeps a second one out.
func (st *stage) enqueueRecording(ctx context.Context, rec events.Recording) error {
	body, err := json.Marshal(map[string]any{
		"event": events.EventRecordingCompleted, "event_ts": time.Now().UnixMilli(),
		"payload": map[string]any{"account_id": rec.AccountID, "object": rec},
	})
	if err != nil {
		return err
	}
	subject, err := events.ZoomEventSubject(events.EventRecordingCompleted)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(events.HeaderBackfill, "true")
	if _, err := st.js.PublishMsg(ctx, msg, jetstream.WithMsgID(events.BackfillID(events.MeetingKey(rec.UUID)))); err != nil {
		return fmt.Errorf("queueing %s: %w", rec.UUID, err)
	}
	return nil
}

// progress shows a line that is rewritten on a terminal, a log line every 5 s
// otherwise.
func (b *backfill) progress(final bool) {
	line := fmt.Sprintf("windows %d/%d, recordings queued %d (already known %d), %.1f GB", b.windowsDone, b.windows, b.queued, b.known, float64(b.bytes)/1e9)
	if b.dryRun {
		line = fmt.Sprintf("windows %d/%d, %.1f GB found", b.windowsDone, b.windows, float64(b.bytes)/1e9)
	}
	switch {
	case b.terminal:
		width := 30
		filled := width * b.windowsDone / max(b.windows, 1)
		fmt.Fprintf(b.out, "\r[%s%s] %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled), line)
		if final {
			fmt.Fprintln(b.out)
		}
	case final || time.Since(b.lastReport) >= 5*time.Second:
		b.lastReport = time.Now()
		fmt.Fprintln(b.out, "backfill: "+line)
	}
}

// summary is the dry run's report: per user and in total.
func (b *backfill) summary(users []zoomUser) {
	var total tally
	fmt.Fprintf(b.out, "%-36s %10s %6s %14s %9s\n", "user", "recordings", "files", "bytes", "in drive")
	for _, u := range users {
		t := b.perUser[u.ID]
		if t == nil {
			continue
		}
		name := u.Email
		if u.Status != "active" {
			name += " (" + u.Status + ")"
		}
		fmt.Fprintf(b.out, "%-36s %10d %6d %14d %9d\n", name, t.recordings, t.files, t.bytes, t.inDrive)
		total.recordings, total.files, total.bytes, total.inDrive = total.recordings+t.recordings, total.files+t.files, total.bytes+t.bytes, total.inDrive+t.inDrive
	}
	fmt.Fprintf(b.out, "%-36s %10d %6d %14d %9d\n", "total", total.recordings, total.files, total.bytes, total.inDrive)
}
