package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"zoomarchive/shared/events"
)

// The layout: which folders a recording goes in (DRIVE_LAYOUT, a template of
// folder names), and the productions (DRIVE_LAYOUT_RULES, an optional rules file)
// that may give a recording its own folders, a Google Group to share them with and
// tags. place decides; nothing already archived moves (a file found by its tag
// stays where it is).
//
// The rules file is HCL, the language of this project's Terraform files: comments,
// no meaning in indentation, strings always quoted, and errors that name the file,
// line and column and suggest the argument meant. The parser is already in go.mod.

// defaultLayout is the layout before DRIVE_LAYOUT: 2026/2026-03/2026-03-14 19.30 Topic (812 3456 7890).
const defaultLayout = "{year}/{year}-{month}/{date} {time} {topic} ({meeting})"

// placeholders are what a template may say, each with what it becomes.
var placeholders = map[string]func(p fill) string{
	"year":       func(p fill) string { return p.t.Format("2006") },
	"month":      func(p fill) string { return p.t.Format("01") },
	"day":        func(p fill) string { return p.t.Format("02") },
	"date":       func(p fill) string { return p.t.Format("2006-01-02") },
	"time":       func(p fill) string { return p.t.Format("15.04") },
	"topic":      func(p fill) string { return cleanName(p.rec.Topic, 100) },
	"host":       func(p fill) string { return p.rec.HostEmail },
	"host_name":  func(p fill) string { n, _, _ := strings.Cut(p.rec.HostEmail, "@"); return n },
	"meeting":    func(p fill) string { return meetingNumber(p.rec.MeetingID) },
	"production": func(p fill) string { return p.production },
}

const placeholderList = "{year} {month} {day} {date} {time} {topic} {host} {host_name} {meeting} {production}"

type fill struct {
	rec        events.RecordingInfo
	t          time.Time // the start, in the meeting's time zone
	production string
}

// template is a layout: folder names from the root down, each literal text and
// placeholders.
type template struct {
	segments []string
}

// parseTemplate checks a layout: known placeholders, closed braces, no empty
// folder, no . or .., nothing absolute, and a last folder per recording.
func parseTemplate(s string) (template, error) {
	if strings.HasPrefix(s, "/") {
		return template{}, fmt.Errorf("%q starts with /: folders are under DRIVE_FOLDER_ID, write them without the leading /", s)
	}
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		rest := seg
		for {
			open := strings.IndexAny(rest, "{}")
			if open < 0 {
				break
			}
			if rest[open] == '}' {
				return template{}, fmt.Errorf("%q: a } without its {", seg)
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 || strings.Contains(rest[open+1:open+end], "{") {
				return template{}, fmt.Errorf("%q: a { without its }", seg)
			}
			name := rest[open+1 : open+end]
			if placeholders[name] == nil {
				return template{}, fmt.Errorf("unknown placeholder {%s} in %q; use one of %s", name, s, placeholderList)
			}
			rest = rest[open+end+1:]
		}
		literal := strings.TrimSpace(expand(seg, func(string) string { return "" }))
		switch {
		case literal == "." || literal == "..":
			return template{}, fmt.Errorf("folder %q in %q would leave the archive root; name folders under DRIVE_FOLDER_ID only", seg, s)
		case strings.TrimSpace(seg) == "":
			return template{}, fmt.Errorf("%q has an empty folder name (two / in a row, or one at the end); remove it", s)
		case i == len(segs)-1 && (!strings.Contains(seg, "{date}") && !strings.Contains(seg, "{day}") || !strings.Contains(seg, "{time}")):
			return template{}, fmt.Errorf("the last folder of %q is the recording's own and needs {date} (or {day}) and {time}, e.g. \"{date} {time} {topic}\"", s)
		}
	}
	return template{segments: segs}, nil
}

// expand replaces each {name} in s by value(name).
func expand(s string, value func(string) string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			return b.String() + s
		}
		end := strings.IndexByte(s[open:], '}')
		b.WriteString(s[:open])
		b.WriteString(value(s[open+1 : open+end]))
		s = s[open+end+1:]
	}
}

// folders names the folders of a recording from the root down; a folder whose
// placeholders are all empty (no production) is left out.
func (t template) folders(p fill) []string {
	var out []string
	for _, seg := range t.segments {
		name := expand(seg, func(n string) string {
			// A value's slashes never make folders: cleanName turns them into -.
			return strings.NewReplacer("/", "-", `\`, "-").Replace(placeholders[n](p))
		})
		if strings.TrimSpace(name) == "" {
			continue
		}
		out = append(out, cleanName(name, 200))
	}
	return out
}

// rule is one production of the rules file.
type rule struct {
	Name      string            `hcl:"name,label"`
	Topic     string            `hcl:"topic,optional"`
	MeetingID string            `hcl:"meeting_id,optional"`
	Host      string            `hcl:"host,optional"`
	Folder    string            `hcl:"folder,optional"`
	Group     string            `hcl:"share_with_group,optional"`
	GroupRole string            `hcl:"group_role,optional"`
	Tags      map[string]string `hcl:"tags,optional"`
	Def       hcl.Range         `hcl:",def_range"`

	topic   *regexp.Regexp
	meeting int64
	folder  *template
}

type rulesFile struct {
	Productions []rule `hcl:"production,block"`
}

// layout is the layout template and the rules, in the file's order.
type layout struct {
	tmpl  template
	rules []rule
	file  string
}

// placement is where a recording goes and what comes with it.
type placement struct {
	production string
	folders    []string
	group      *events.Grant
	tags       map[string]string
	rule       string // file:line of the rule that matched, for the preview
}

// place decides a recording's placement: the first rule that matches (every
// criterion it gives), else the layout alone.
func (l layout) place(rec events.RecordingInfo, fallback *time.Location) placement {
	p := fill{rec: rec, t: localStart(rec, fallback)}
	for _, r := range l.rules {
		if !r.matches(rec) {
			continue
		}
		p.production = r.Name
		tmpl := l.tmpl
		if r.folder != nil {
			tmpl = *r.folder
		}
		out := placement{production: r.Name, folders: tmpl.folders(p), tags: r.Tags, rule: fmt.Sprintf("%s:%d", l.file, r.Def.Start.Line)}
		if r.Group != "" {
			out.group = &events.Grant{Email: strings.ToLower(r.Group), Type: "group", Role: r.GroupRole}
		}
		return out
	}
	return placement{folders: l.tmpl.folders(p)}
}

// shares: a rule shares its production's folders with a group.
func (l layout) shares() bool {
	for _, r := range l.rules {
		if r.Group != "" {
			return true
		}
	}
	return false
}

func (r rule) matches(rec events.RecordingInfo) bool {
	return (r.topic == nil || r.topic.MatchString(rec.Topic)) &&
		(r.meeting == 0 || r.meeting == rec.MeetingID) &&
		(r.Host == "" || strings.EqualFold(r.Host, rec.HostEmail))
}

// readLayout reads DRIVE_LAYOUT and the rules file (when named); each problem
// it tells invalid names the setting, or the file and line, and what to write instead.
func readLayout(tmpl, file string, invalid func(name, why string)) layout {
	t, err := parseTemplate(tmpl)
	if err != nil {
		invalid("DRIVE_LAYOUT", err.Error())
	}
	l := layout{tmpl: t, file: file}
	if file == "" {
		return l
	}
	src, err := os.ReadFile(file)
	if err != nil {
		invalid("DRIVE_LAYOUT_RULES", err.Error())
		return l
	}
	f, diags := hclsyntax.ParseConfig(src, file, hcl.InitialPos)
	var rf rulesFile
	if !diags.HasErrors() {
		diags = gohcl.DecodeBody(f.Body, nil, &rf)
	}
	for _, d := range diags.Errs() {
		invalid("DRIVE_LAYOUT_RULES", d.Error())
	}
	if diags.HasErrors() {
		return l
	}
	for i := range rf.Productions {
		r := &rf.Productions[i]
		at := func(format string, a ...any) {
			invalid("DRIVE_LAYOUT_RULES", fmt.Sprintf("%s:%d: production %q: %s", file, r.Def.Start.Line, r.Name, fmt.Sprintf(format, a...)))
		}
		if strings.TrimSpace(r.Name) == "" {
			at("the production needs a name: production \"Cherry Orchard\" { … }")
		}
		if r.Topic == "" && r.MeetingID == "" && r.Host == "" {
			at("give topic, meeting_id or host, or the rule matches every recording")
		}
		if r.Topic != "" {
			if r.topic, err = regexp.Compile(r.Topic); err != nil {
				at("topic %q is no regular expression (%v); for words that may be written in any case, write \"(?i)cherry orchard\"", r.Topic, err)
			}
		}
		if r.MeetingID != "" {
			if r.meeting, err = strconv.ParseInt(strings.ReplaceAll(r.MeetingID, " ", ""), 10, 64); err != nil || r.meeting <= 0 {
				at("meeting_id %q is not a meeting number; write it as Zoom shows it, e.g. \"812 3456 7890\"", r.MeetingID)
			}
		}
		if r.Folder != "" {
			if t, err := parseTemplate(r.Folder); err != nil {
				at("folder: %v", err)
			} else {
				r.folder = &t
			}
		}
		if r.Group != "" && !strings.Contains(r.Group, "@") {
			at("share_with_group %q is not a group's address, e.g. \"cherry-cast@theatre.example\"", r.Group)
		}
		switch r.GroupRole {
		case "":
			r.GroupRole = "reader"
		case "reader", "commenter":
		default:
			at("group_role %q: write reader or commenter", r.GroupRole)
		}
		if len(r.Tags) > 10 {
			at("%d tags: Drive keeps 30 app properties a file and zoomarchive uses up to 11; give 10 at most", len(r.Tags))
		}
		for k, v := range r.Tags {
			switch {
			case strings.HasPrefix(strings.ToLower(k), "zoom"):
				at("tag %q: names that begin with zoom are zoomarchive's own; choose another", k)
			case len(k)+len(v) > 124 || k == "":
				at("tag %q: Drive takes a name and value of 124 bytes at most together; shorten it", k)
			}
		}
	}
	l.rules = rf.Productions
	return l
}

// tagsFor are a file's (or, without file fields, its recording folder's)
// appProperties: tags, and the production's with its name.
func (st *stage) tagsFor(job events.FileJob, forFile bool) map[string]string {
	t := tags(job, forFile)
	p := st.layout.place(job.Recording, st.tz)
	for k, v := range p.tags {
		t[k] = v
	}
	if p.production != "" {
		t["zoomProduction"] = truncateBytes(p.production, 124-len("zoomProduction"))
	}
	return t
}
