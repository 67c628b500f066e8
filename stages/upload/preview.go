package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// layoutCommand is upload layout --preview: where the last recordings would go
// under the settings and rules as they are now, beside where they are. It reads
// the job bucket and changes nothing, in Drive or anywhere.
func layoutCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "layout",
		Usage: "with --preview: where the last recordings would go under DRIVE_LAYOUT and DRIVE_LAYOUT_RULES as they are now (changes nothing)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "preview", Usage: "show, change nothing (the only mode)"},
			&cli.IntFlag{Name: "last", Value: 20, Usage: "how many recordings, the latest first"},
		},
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			if !c.Bool("preview") {
				return errors.New("upload layout only previews: run upload layout --preview [--last N]")
			}
			st, _, conn, err := dialed(ctx, v)
			if err != nil {
				return err
			}
			defer conn.Close()
			return st.preview(ctx, stdout, c.Int("last"))
		},
	}
}

func (st *stage) preview(ctx context.Context, out io.Writer, last int) error {
	keys, err := st.kv.ListKeysFiltered(ctx, events.RecordingJobKey(">"))
	if err != nil {
		return err
	}
	var recs []events.RecordingJob
	for key := range keys.Keys() {
		if r, found, err := bus.Get[events.RecordingJob](ctx, st.kv, key); err == nil && found {
			recs = append(recs, r)
		}
	}
	sort.Slice(recs, func(a, b int) bool { return recs[a].Recording.StartTime.After(recs[b].Recording.StartTime) })
	recs = recs[:min(last, len(recs))]
	fmt.Fprintf(out, "The last %d recordings under DRIVE_LAYOUT %q%s (a preview: nothing changes, and what is archived stays where it is):\n",
		len(recs), strings.Join(st.layout.tmpl.segments, "/"), map[bool]string{true: " and " + st.layout.file, false: ""}[st.layout.file != ""])
	for _, r := range recs {
		p := st.layout.place(r.Recording, st.tz)
		fmt.Fprintf(out, "\n%s  %s  (%s)\n  would go to: %s\n", localStart(r.Recording, st.tz).Format("2006-01-02 15:04 MST"),
			r.Recording.Topic, r.Recording.HostEmail, strings.Join(p.folders, "/"))
		if p.production != "" {
			fmt.Fprintf(out, "  production:  %s (%s)\n", p.production, p.rule)
		}
		var with []string
		for _, g := range st.sharing.grants(r.Recording) {
			with = append(with, g.Email+" ("+g.Role+")")
		}
		if p.group != nil {
			with = append(with, p.group.Email+" ("+p.group.Role+", group)")
		}
		if len(with) > 0 {
			fmt.Fprintf(out, "  shared with: %s\n", strings.Join(with, ", "))
		}
		if len(p.tags) > 0 {
			var tags []string
			for k, v := range p.tags {
				tags = append(tags, k+"="+v)
			}
			sort.Strings(tags)
			fmt.Fprintf(out, "  tags:        %s\n", strings.Join(tags, ", "))
		}
		for _, key := range r.Files {
			if j, _, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key)); err == nil && j.FolderLink != "" {
				fmt.Fprintf(out, "  archived in: %s (stays there)\n", j.FolderLink)
				break
			}
		}
	}
	return nil
}
