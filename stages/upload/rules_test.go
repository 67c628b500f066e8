package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

func mustTemplate(t *testing.T, s string) template {
	t.Helper()
	tm, err := parseTemplate(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// The default layout is the one before DRIVE_LAYOUT; a production left empty
// leaves its folder out; a topic's slash never makes a folder.
func TestLayoutTemplates(t *testing.T) {
	rec := cherry
	rec.Topic = "Act 1/2: run-through"
	for tmpl, want := range map[string]string{
		defaultLayout: "2026/2026-04/2026-04-02 19.00 Act 1-2: run-through (876 5432 1012)",
		"{production}/{year}/{date} {time} {topic}":            "2026/2026-04-02 19.00 Act 1-2: run-through",
		"Rehearsals/{host_name}/{month}-{day} {time} ({host})": "Rehearsals/director/04-02 19.00 (director@theatre.example)",
	} {
		p := layout{tmpl: mustTemplate(t, tmpl)}.place(rec, time.UTC)
		if got := strings.Join(p.folders, "/"); got != want {
			t.Errorf("%s: %q, want %q", tmpl, got, want)
		}
	}
	for tmpl, want := range map[string]string{
		"{year}/{yr}/{date} {time}":  "unknown placeholder {yr}",
		"/{year}/{date} {time}":      "starts with /",
		"{year}/../{date} {time}":    "would leave the archive root",
		"{year}//{date} {time}":      "empty folder name",
		"{year}/   /{date} {time}":   "empty folder name",
		"{year}/{topic}":             "needs {date} (or {day}) and {time}",
		"{year}/{date {time}":        "a { without its }",
		"{year}/{time} {date":        "a { without its }",
		"{year}/date} {time} {date}": "a } without its {",
	} {
		if _, err := parseTemplate(tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", tmpl, err, want)
		}
	}
}

const rulesHCL = `# Productions of the 2026 season.
production "Cherry Orchard" {
  # the recurring rehearsal meeting, and anything titled so
  meeting_id       = "876 5432 1012"
  folder           = "Productions/{production}/{date} {time} {topic}"
  share_with_group = "Cherry-Cast@theatre.example"
  tags             = { season = "2026" }
}

production "Seagull" {
  topic = "(?i)seagull"
  host  = "director@theatre.example"
}
`

func writeRules(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "rules.hcl")
	os.WriteFile(file, []byte(text), 0o600)
	return file
}

// The first rule that matches wins; a rule without a folder uses the layout with
// {production}; no rule, the layout alone.
func TestRulesPlaceByMeetingTopicAndHost(t *testing.T) {
	var problems []string
	l := readLayout("{production}/{year}/{date} {time} {topic}", writeRules(t, rulesHCL), func(n, why string) { problems = append(problems, n+": "+why) })
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	seagull := cherry
	seagull.MeetingID, seagull.Topic = 111222333, "SEAGULL act 4"
	other := seagull
	other.HostEmail = "someone@theatre.example"
	for rec, want := range map[events.RecordingInfo]string{
		cherry:  "Productions/Cherry Orchard/2026-04-02 19.00 Cherry Orchard rehearsal",
		seagull: "Seagull/2026/2026-04-02 19.00 SEAGULL act 4",
		other:   "2026/2026-04-02 19.00 SEAGULL act 4",
	} {
		if got := strings.Join(l.place(rec, time.UTC).folders, "/"); got != want {
			t.Errorf("%s: %q, want %q", rec.Topic, got, want)
		}
	}
	p := l.place(cherry, time.UTC)
	if p.group == nil || *p.group != (events.Grant{Email: "cherry-cast@theatre.example", Type: "group", Role: "reader"}) ||
		p.tags["season"] != "2026" || !strings.HasSuffix(p.rule, "rules.hcl:2") {
		t.Errorf("cherry's placement %+v", p)
	}
}

// A rules file with an error: the stage refuses to start, naming the file, the
// line and what to write.
func TestRulesWithAnErrorRefuseToStart(t *testing.T) {
	w := newWorld(t, nil)
	for text, want := range map[string]string{
		"production \"A\" {\n  topic = \"x\n}\n":                                        "rules.hcl:2",
		"production \"A\" {\n  topic = \"x\"\n  foldr = \"y\"\n}\n":                     `rules.hcl:3,3-8: Unsupported argument; An argument named "foldr" is not expected here. Did you mean "folder"?`,
		"\n\nproduction \"A\" {\n  topic = \"x\"\n  folder = \"../{date} {time}\"\n}\n": `rules.hcl:3: production "A": folder: folder "..`,
		"production \"A\" {\n  topic = \"x\"\n  folder = \" / {date} {time}\"\n}\n":     `rules.hcl:1: production "A": folder: " / {date} {time}" has an empty folder name`,
		"production \"A\" {\n  topic = \"(x\"\n}\n":                                     `rules.hcl:1: production "A": topic "(x" is no regular expression`,
		"production \"A\" {\n  meeting_id = \"12a\"\n}\n":                               `meeting_id "12a" is not a meeting number`,
		"production \"A\" {\n  folder = \"{date} {time}\"\n}\n":                         "give topic, meeting_id or host",
		"production \"A\" {\n  host = \"a@b\"\n  tags = { zoomTopic = \"x\" }\n}\n":     "names that begin with zoom are zoomarchive's own",
	} {
		env := stagetest.Merge(w.env, map[string]string{"DRIVE_LAYOUT_RULES": writeRules(t, text)})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, []string{"upload"}, func(k string) string { return env[k] }, os.Stdout, os.Stderr)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "DRIVE_LAYOUT_RULES: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	env := stagetest.Merge(w.env, map[string]string{"DRIVE_LAYOUT": "{year}/{week}/{date} {time}"})
	if err := run(context.Background(), []string{"upload"}, func(k string) string { return env[k] }, os.Stdout, os.Stderr); err == nil ||
		!strings.Contains(err.Error(), "DRIVE_LAYOUT: unknown placeholder {week}") {
		t.Errorf("an unknown placeholder: %v", err)
	}
}

// A production's recording goes in its folders, shared with its group, tagged;
// then the layout changes: what is archived stays where it is and is not uploaded
// again, no folder of the new layout is made for it, and the preview shows both.
func TestProductionLayoutAndNothingMoves(t *testing.T) {
	w := newWorld(t, map[string]string{"DRIVE_LAYOUT_RULES": writeRules(t, rulesHCL)})
	s := w.startUpload(t)
	jobs := w.plan(t, cherry, spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: mib + 5})
	jobs = append(jobs, w.plan(t, board, spec{key: "b-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: 2000})...)
	w.feedAll(t, jobs)
	for _, j := range jobs {
		w.waitVerified(t, j.Key)
	}
	c := w.checkCopy(t, "c-mp4")
	if path := w.drive.Path(c.ID); !strings.HasPrefix(path, "Zoom archive/Productions/Cherry Orchard/2026-04-02 19.00 Cherry Orchard rehearsal/") ||
		c.AppProperties["zoomProduction"] != "Cherry Orchard" || c.AppProperties["season"] != "2026" {
		t.Errorf("the production's file %s, tags %v", path, c.AppProperties)
	}
	folder := w.folderOf(t, "c-mp4")
	if folder.AppProperties["season"] != "2026" || len(folder.Permissions) != 1 || folder.Permissions[0].Type != "group" ||
		folder.Permissions[0].EmailAddress != "cherry-cast@theatre.example" || folder.Permissions[0].Notified {
		t.Errorf("the production's folder: tags %v, shared %+v", folder.AppProperties, folder.Permissions)
	}
	boardPath := w.drive.Path(w.checkCopy(t, "b-mp4").ID)

	s.Stop()
	w.env["DRIVE_LAYOUT"] = "By host/{host_name}/{date} {time} {topic}"
	files := len(w.drive.Files())
	out, err := stagetest.Command(run, w.env, "upload", "layout", "--preview", "--last", "5")
	if err != nil || !strings.Contains(out, "would go to: By host/board/2026-03-14 19.30 Hallitus – kokous") ||
		!strings.Contains(out, "production:  Cherry Orchard (") || !strings.Contains(out, "shared with: cherry-cast@theatre.example (reader, group)") ||
		!strings.Contains(out, "archived in: https://drive.google.com/drive/folders/"+folder.ID+" (stays there)") {
		t.Errorf("the preview: %v\n%s", err, out)
	}
	if len(w.drive.Files()) != files {
		t.Error("the preview changed Drive")
	}
	w.startUpload(t)
	received := w.drive.Received()
	w.plan(t, board, spec{key: "b-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: 2000})
	w.feedAll(t, jobs[1:])
	w.waitVerified(t, "b-mp4")
	if got := w.drive.Path(w.checkCopy(t, "b-mp4").ID); got != boardPath || w.drive.Received() != received {
		t.Errorf("after the layout changed: %s (was %s), %d bytes sent again", got, boardPath, w.drive.Received()-received)
	}
	for _, f := range w.drive.Files() {
		if strings.HasPrefix(w.drive.Path(f.ID), "Zoom archive/By host") {
			t.Errorf("a folder of the new layout was made: %s", w.drive.Path(f.ID))
		}
	}
}

// A template either is refused or names folders that are clean, never empty, and
// at least the recording's own, whatever the recording's topic and host.
func FuzzLayoutTemplate(f *testing.F) {
	for _, s := range []string{defaultLayout, "{production}/{year}/{date} {time} {topic}", "../{date} {time}", "{date {time}", "a//{day} {time}", "/{date}{time}", "{}{date}{time}"} {
		f.Add(s, "Act 1/2 \u202e", "host@theatre.example")
	}
	f.Fuzz(func(t *testing.T, tmpl, topic, host string) {
		tm, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		rec := cherry
		rec.Topic, rec.HostEmail = topic, host
		folders := (layout{tmpl: tm}).place(rec, time.UTC).folders
		if len(folders) == 0 {
			t.Fatalf("%q: no folder", tmpl)
		}
		for _, name := range folders {
			if name == "" || strings.ContainsAny(name, "/\\") || !utf8.ValidString(name) || cleanName(name, 200) != name {
				t.Fatalf("%q with topic %q, host %q: folder %q", tmpl, topic, host, name)
			}
		}
	})
}
