package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// status is the pipeline at a glance, from the job bucket and the chunk stream:
// what an operator asks first (fetch status, --json for scripts).
type status struct {
	At           time.Time         `json:"at"`
	WindowBytes  uint64            `json:"window_bytes"` // in the chunk stream now
	WindowMax    int64             `json:"window_max"`   // CHUNK_WINDOW
	InFlight     []fileStatus      `json:"in_flight"`
	Failed       []fileStatus      `json:"failed"`
	OnHold       []recordingStatus `json:"on_hold"` // verified, waiting in Zoom for ZOOM_TRASH_AFTER
	Held         []recordingStatus `json:"held"`    // kept in Zoom: the proof before the trash failed
	LastArchived *recordingStatus  `json:"last_archived,omitempty"`
}

type fileStatus struct {
	Key       string    `json:"key"`
	Topic     string    `json:"topic"`
	Meeting   string    `json:"meeting_uuid"`
	FileType  string    `json:"file_type"`
	State     string    `json:"state"`
	Size      int64     `json:"size"`
	Fetched   int64     `json:"fetched"` // bytes in the chunk stream or past it
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	Retry     string    `json:"retry,omitempty"`
	Updated   time.Time `json:"updated"`
}

type recordingStatus struct {
	Topic   string    `json:"topic"`
	Meeting string    `json:"meeting_uuid"`
	Files   int       `json:"files"`
	Zoom    string    `json:"zoom,omitempty"`
	Due     time.Time `json:"due,omitempty"`
	Held    string    `json:"held,omitempty"` // why it is kept in Zoom
	At      time.Time `json:"at"`
}

func statusCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "status",
		Usage: "the pipeline at a glance: files in flight, failed files and how to retry them, recordings kept in Zoom and why, recordings on hold, the last archived, the chunk window",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "one JSON object, for scripts"}},
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			st, closeFn, err := connected(ctx, v, io.Discard)
			if err != nil {
				return err
			}
			defer closeFn()
			s, err := st.status(ctx)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			s.print(stdout)
			return nil
		},
	}
}

func (st *stage) status(ctx context.Context) (status, error) {
	s := status{At: time.Now().UTC(), InFlight: []fileStatus{}, Failed: []fileStatus{}, OnHold: []recordingStatus{}}
	stream, err := st.js.Stream(ctx, events.StreamChunks)
	if err != nil {
		return s, fmt.Errorf("stream %s: %w", events.StreamChunks, err)
	}
	info := stream.CachedInfo()
	s.WindowBytes, s.WindowMax = info.State.Bytes, info.Config.MaxBytes
	keys, err := st.keys(ctx, events.FileJobKey(">"))
	if err != nil {
		return s, err
	}
	for _, key := range keys {
		j, found, err := bus.Get[events.FileJob](ctx, st.kv, key)
		if err != nil || !found {
			continue // gone in between, or unreadable: not for a glance
		}
		f := fileStatus{Key: j.Key, Topic: j.Recording.Topic, Meeting: j.Recording.UUID, FileType: j.File.FileType, State: j.State,
			Size: int64(j.File.FileSize), Attempts: j.Attempts, LastError: j.LastError, Updated: j.Updated}
		switch j.State {
		case events.JobVerified:
			continue
		case events.JobFailed:
			f.Retry = events.RetryCommand(j.Key)
			s.Failed = append(s.Failed, f)
		default:
			f.Fetched = j.Size
			if p, found, err := bus.Peek[progress](ctx, st.kv, events.FetchProgressKey(j.Key)); err == nil && found && j.State != events.JobFetched {
				f.Fetched = p.Offset
			}
			s.InFlight = append(s.InFlight, f)
		}
	}
	if keys, err = st.keys(ctx, events.RecordingJobKey(">")); err != nil {
		return s, err
	}
	for _, key := range keys {
		r, found, err := bus.Get[events.RecordingJob](ctx, st.kv, key)
		if err != nil || !found {
			continue
		}
		rs := recordingStatus{Topic: r.Recording.Topic, Meeting: r.Recording.UUID, Files: len(r.Files), Zoom: r.ZoomAction, Due: r.TrashAt, At: r.Updated}
		switch {
		case r.State == events.RecArchived:
			if s.LastArchived == nil || r.Updated.After(s.LastArchived.At) {
				s.LastArchived = &rs
			}
		case r.Held != "":
			rs.Held = r.Held
			s.Held = append(s.Held, rs)
		case !r.TrashAt.IsZero():
			s.OnHold = append(s.OnHold, rs)
		}
	}
	sort.Slice(s.InFlight, func(a, b int) bool { return s.InFlight[a].Updated.Before(s.InFlight[b].Updated) })
	sort.Slice(s.Failed, func(a, b int) bool { return s.Failed[a].Updated.Before(s.Failed[b].Updated) })
	sort.Slice(s.OnHold, func(a, b int) bool { return s.OnHold[a].Due.Before(s.OnHold[b].Due) })
	return s, nil
}

// keys lists the job bucket's keys matching filter.
func (st *stage) keys(ctx context.Context, filter string) ([]string, error) {
	lister, err := st.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("keys %s: %w", filter, err)
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	return out, nil
}

func (s status) print(w io.Writer) {
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fill := 0.0
	if s.WindowMax > 0 {
		fill = 100 * float64(s.WindowBytes) / float64(s.WindowMax)
	}
	fmt.Fprintf(w, "Chunk window: %s of %s (%.0f%%)\n", mib(int64(s.WindowBytes)), mib(s.WindowMax), fill)
	fmt.Fprintf(w, "\nIn flight (%d):\n", len(s.InFlight))
	for _, f := range s.InFlight {
		fmt.Fprintf(w, "  %s  %s of %q  %s, %s of %s, attempt %d, since %s\n", f.Key, f.FileType, f.Topic, f.State,
			mib(f.Fetched), mib(f.Size), f.Attempts+1, f.Updated.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\nFailed (%d):\n", len(s.Failed))
	for _, f := range s.Failed {
		fmt.Fprintf(w, "  %s  %s of %q  after %d attempts: %s\n    retry: %s\n", f.Key, f.FileType, f.Topic, f.Attempts,
			strings.TrimSpace(f.LastError), f.Retry)
	}
	fmt.Fprintf(w, "\nKept in Zoom until Drive's copy is proven (%d):\n", len(s.Held))
	for _, r := range s.Held {
		fmt.Fprintf(w, "  %q (%s)  %s\n", r.Topic, r.Meeting, r.Held)
	}
	fmt.Fprintf(w, "\nOn hold in Zoom (%d):\n", len(s.OnHold))
	for _, r := range s.OnHold {
		fmt.Fprintf(w, "  %q (%s)  %d files in Drive; leaves Zoom at %s\n", r.Topic, r.Meeting, r.Files, r.Due.Format(time.RFC3339))
	}
	if r := s.LastArchived; r != nil {
		fmt.Fprintf(w, "\nLast archived: %q (%s), %d files, %s in Zoom, at %s\n", r.Topic, r.Meeting, r.Files, r.Zoom, r.At.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "\nLast archived: none yet")
	}
}
