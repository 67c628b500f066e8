package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	texttemplate "text/template"
	"time"

	"zoomarchive/shared/events"
)

// The mails admins get, each a proper RFC 5322 message: UTF-8 subject encoded,
// multipart/alternative with plain text and HTML (escaped, readable on a phone),
// Date and Message-ID. Golden examples are in testdata/golden.

// mail is one message before it is written out.
type mail struct {
	Subject string
	Text    string
	HTML    string
}

// render writes m as an RFC 5322 message from sender to recipients at now; id is
// the Message-ID's unique part (random when empty).
func render(m mail, from string, to []string, now time.Time, id string) []byte {
	if id == "" {
		b := make([]byte, 12)
		rand.Read(b)
		id = hex.EncodeToString(b)
	}
	domain := from[strings.LastIndex(from, "@")+1:]
	boundary := "zoomarchive-" + id
	var b bytes.Buffer
	h := textproto.MIMEHeader{}
	w := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v); h.Set(k, v) }
	w("From", "zoomarchive <"+from+">")
	w("To", strings.Join(to, ", "))
	// CR and LF in a topic must not start a header of their own; long subjects are
	// cut and folded so that no line passes RFC 5322's limits.
	subject := strings.Join(strings.Fields(m.Subject), " ")
	if r := []rune(subject); len(r) > 200 {
		subject = string(r[:199]) + "…"
	}
	w("Subject", fold(mime.QEncoding.Encode("utf-8", subject)))
	w("Date", now.Format(time.RFC1123Z))
	w("Message-ID", "<"+id+"@"+domain+">")
	w("MIME-Version", "1.0")
	w("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary, part.typ)
		qp := quotedprintable.NewWriter(&b)
		qp.Write([]byte(strings.ReplaceAll(part.body, "\n", "\r\n")))
		qp.Close()
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// fold breaks a header value at spaces (between encoded words, too) so that its
// lines stay under 78 characters.
func fold(v string) string {
	var b strings.Builder
	line := len("Subject: ")
	for i, word := range strings.Split(v, " ") {
		if i > 0 {
			if line+1+len(word) > 76 {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}

// page wraps HTML content for a phone: one column, system font, no images.
const page = `<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:-apple-system,Segoe UI,Roboto,sans-serif;max-width:640px;margin:0 auto;padding:12px;line-height:1.4">
{{template "body" .}}
<p style="color:#777;font-size:12px">Sent by zoomarchive.</p></body></html>`

var (
	textT = texttemplate.Must(texttemplate.New("").Funcs(funcs).Parse(mailText))
	htmlT = htmltemplate.Must(htmltemplate.New("page").Funcs(funcs).Parse(page + mailHTML))
)

var funcs = map[string]any{
	"size": humanSize,
	"kind": fileKind,
}

// mailView is what every template sees.
type mailView struct {
	Kind     string // archived, failed, alert, digest
	Local    string // the meeting's start in its time zone
	Archived events.RecordingArchived
	Failed   events.FileFailed
	Alert    events.Alert
	Digest   digest
	Action   string // what happened in Zoom, in words
	Total    int64
	Title    string // the alert's, in words
	Began    string // the alert's times, in NOTIFY_TIMEZONE
	Ended    string
	Until    string
	Shared   string // with whom the recording's folder is shared, in words
}

func build(v mailView, subject string) mail {
	var t, h bytes.Buffer
	if err := textT.ExecuteTemplate(&t, v.Kind, v); err != nil {
		panic(err) // templates are fixed and tested
	}
	tmpl := htmltemplate.Must(htmlT.Clone())
	htmltemplate.Must(tmpl.New("body").Parse(`{{template "` + v.Kind + `-html" .}}`))
	if err := tmpl.ExecuteTemplate(&h, "page", v); err != nil {
		panic(err)
	}
	return mail{Subject: subject, Text: t.String(), HTML: h.String()}
}

func localTime(r events.RecordingInfo, fallback *time.Location) string {
	loc, err := time.LoadLocation(r.Timezone)
	if err != nil || r.Timezone == "" {
		loc = fallback
	}
	return r.StartTime.In(loc).Format("Mon 2 Jan 2006, 15:04 MST")
}

func archivedMail(a events.RecordingArchived, share *events.FolderShare, tz *time.Location) mail {
	v := mailView{Kind: "archived", Archived: a, Local: localTime(a.Recording, tz), Action: zoomAction(a.ZoomAction), Shared: shareLine(share)}
	var late []string
	for _, f := range a.Files {
		v.Total += f.Size
		if f.Late {
			late = append(late, fileKind(f))
		}
	}
	if len(late) > 0 {
		return build(v, fmt.Sprintf("Archived late: %s of %s (%s)", strings.Join(late, ", "), a.Recording.Topic, v.Local))
	}
	return build(v, fmt.Sprintf("Archived: %s (%s)", a.Recording.Topic, v.Local))
}

// shareLine says how upload's sharing of a recording's folder went; "" when the
// folder was not to be shared.
func shareLine(s *events.FolderShare) string {
	if s == nil || len(s.With) == 0 {
		return ""
	}
	var with []string
	for _, g := range s.With {
		with = append(with, g.Email+map[string]string{"reader": " (can view)", "commenter": " (can comment)"}[g.Role])
	}
	who := strings.Join(with, ", ")
	switch {
	case s.Shared && s.Notified:
		return "shared with " + who + "; Google Drive mailed them the link."
	case s.Shared:
		return "shared with " + who + ", without a mail from Google Drive."
	case s.GaveUp:
		return fmt.Sprintf("NOT shared with %s: Google Drive refused %d times (%s). Share the folder by hand.", who, s.Attempts, s.LastError)
	case s.Attempts > 0:
		return fmt.Sprintf("not shared yet with %s: Google Drive refused %d times so far (%s); zoomarchive keeps trying.", who, s.Attempts, s.LastError)
	}
	return "being shared with " + who + "."
}

func failedMail(f events.FileFailed, tz *time.Location) mail {
	v := mailView{Kind: "failed", Failed: f, Local: localTime(f.Recording, tz)}
	return build(v, fmt.Sprintf("Not archived: %s of %s (%s)", strings.ToLower(f.FileType), f.Recording.Topic, v.Local))
}

func alertMail(a events.Alert, tz *time.Location) mail {
	const when = "Mon 2 Jan 2006, 15:04 MST"
	v := mailView{Kind: "alert", Alert: a, Title: alertTitle(a.Kind), Began: a.Since.In(tz).Format(when)}
	if !a.Until.IsZero() {
		v.Until = a.Until.In(tz).Format(when)
	}
	if a.Resolved {
		v.Ended = a.At.In(tz).Format(when)
		return build(v, "zoomarchive: over: "+v.Title)
	}
	if a.Since.IsZero() {
		v.Began = a.At.In(tz).Format(when)
	}
	return build(v, "zoomarchive alert: "+v.Title)
}

func digestMail(d digest) mail {
	return build(mailView{Kind: "digest", Digest: d}, fmt.Sprintf("zoomarchive daily digest %s: %d recording(s) archived", d.Day, d.Recordings))
}

func zoomAction(a string) string {
	switch a {
	case events.ZoomTrashed:
		return "moved to Zoom's trash (recoverable there for 30 days)"
	case events.ZoomDeleted:
		return "deleted from Zoom for good"
	case events.ZoomGone:
		return "already gone from Zoom when zoomarchive came to remove it"
	}
	return "kept in Zoom"
}

// alertTitles are the alerts' titles in words.
var alertTitles = map[string]string{
	events.AlertDriveDailyCap:     "Google Drive's daily upload cap reached",
	events.AlertDriveFull:         "Google Drive is full",
	events.AlertDriveRefused:      "Google refuses the uploads",
	events.AlertDriveShare:        "Google Drive refuses to share a recording's folder",
	events.AlertZoomStorage:       "Zoom's cloud recording storage is filling up",
	events.AlertZoomRefused:       "Zoom refuses the app's credentials",
	events.AlertZoomDailyLimit:    "Zoom's daily API limit reached",
	events.AlertWebhooksMissing:   "Zoom's webhooks are not arriving",
	events.AlertCertificate:       "the HTTPS certificate needs attention",
	events.AlertWebhookRejections: "many rejected webhooks",
	events.AlertChunkWindowFull:   "uploads are not keeping up",
	events.AlertBrokerFull:        "the broker is nearly full",
	events.AlertGoogleKeyOld:      "the Google key is due for rotation",
	events.AlertGoogleKeyRotation: "rotating the Google key failed",
}

func alertTitle(kind string) string {
	if stage, ok := strings.CutPrefix(kind, events.AlertStageSilentPrefix); ok {
		return "stage " + stage + " stopped reporting"
	}
	if stage, ok := strings.CutPrefix(kind, events.AlertCredentialPrefix); ok {
		return "stage " + stage + " cannot use its new credential file"
	}
	if strings.HasPrefix(kind, events.AlertEventMismatchPrefix) {
		return "a recording event did not match Zoom"
	}
	if strings.HasPrefix(kind, events.AlertTrashHeldPrefix) {
		return "a recording stays in Zoom until Drive's copy is proven"
	}
	if title, ok := alertTitles[kind]; ok {
		return title
	}
	return kind
}

func fileKind(f events.ArchivedFile) string {
	if f.Participant != "" {
		return "audio of " + f.Participant
	}
	if f.RecordingType != "" {
		return strings.ReplaceAll(f.RecordingType, "_", " ")
	}
	return strings.ToLower(f.FileType)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

const mailText = `{{define "archived"}}The Zoom recording "{{.Archived.Recording.Topic}}" is archived in Google Drive.

When:     {{.Local}} ({{.Archived.Recording.Duration}} min)
Host:     {{.Archived.Recording.HostEmail}}
Meeting:  {{.Archived.Recording.MeetingID}}
Folder:   {{.Archived.FolderLink}}{{if .Shared}}
          {{.Shared}}{{end}}

Files ({{len .Archived.Files}}, {{size .Total}}):
{{range .Archived.Files}}- {{kind .}}, {{size .Size}}: {{.DriveLink}}{{if .Late}} (archived after the rest: Zoom made it later, or its Drive copy was deleted){{end}}
{{end}}
In Zoom: {{.Action}}.
{{- if .Archived.NoTranscript}}

The host's settings make Zoom transcribe the audio, but no transcript had come when
the wait for it (ZOOM_TRANSCRIPT_WAIT) ended; should it come later, it is archived
then and you get a mail.
{{- end}}
{{end}}{{define "failed"}}A file of the Zoom recording "{{.Failed.Recording.Topic}}" could not be archived.

When:     {{.Local}}
Host:     {{.Failed.Recording.HostEmail}}
File:     {{.Failed.FileType}}{{if .Failed.FileID}} (Zoom file id {{.Failed.FileID}}){{end}}{{if .Failed.Size}}, {{size .Failed.Size}}{{end}}
Attempts: {{.Failed.Attempts}}
Reason:   {{.Failed.Reason}}

The recording stays in Zoom: nothing is removed there until every file is in Drive.

To try again once the cause is fixed, an operator runs on the server:

  {{.Failed.Replay}}
{{end}}{{define "alert"}}{{if .Alert.Resolved}}Over: {{.Title}}.

{{.Alert.Message}}

It began {{.Began}} and was over {{.Ended}}.
{{else}}{{.Alert.Message}}

Since:   {{.Began}}{{if .Until}}
Ends by itself: {{.Until}}{{end}}

You get one more mail when it is over.
{{end}}{{end}}{{define "digest"}}zoomarchive, {{.Digest.Day}}

Recordings archived: {{.Digest.Recordings}} ({{.Digest.Files}} files, {{size .Digest.Bytes}})
Zoom storage freed:  {{size .Digest.Freed}}{{if .Digest.ZoomStorage}}
Zoom cloud storage:  {{.Digest.ZoomStorage}}{{end}}
Files failed:        {{.Digest.FailedToday}} today, {{len .Digest.OpenFailures}} open
Alerts:              {{len .Digest.Alerts}}
{{- if or .Digest.SharedToday .Digest.NotShared}}
Folders shared:      {{.Digest.SharedToday}} with their hosts, {{len .Digest.NotShared}} not (below){{end}}
{{range .Digest.NoTranscript}}
Removed from Zoom without the transcript its host's settings promise: {{.}}{{end}}{{range .Digest.Late}}
Came late, archived: {{.}}{{end}}{{range .Digest.DriveGone}}
Deleted from Drive, archived again (a failure below if Zoom no longer had it): {{.}}{{end}}{{range .Digest.OpenFailures}}
Open failure: {{.}}{{end}}{{range .Digest.NotShared}}
Folder not shared: {{.}}{{end}}{{range .Digest.Short}}
Shorter than ARCHIVE_MIN_LENGTH, not archived, left in Zoom for you to decide: {{.}}{{end}}{{range .Digest.ShortTrashed}}
Shorter than ARCHIVE_MIN_LENGTH, moved to Zoom's trash WITHOUT being archived (recoverable there for 30 days): {{.}}{{end}}{{range .Digest.Alerts}}
Alert: {{.}}{{end}}{{if .Digest.Overflow}}

Over the hourly mail cap, not mailed one by one:{{range .Digest.Overflow}}
- {{.}}{{end}}{{end}}{{with .Digest.Reconcile}}

Reconciliation of the last {{.Days}} days with Zoom:
  in Zoom with no archive job: {{len .Missing}} ({{.Enqueued}} queued now){{range .Missing}}
    - {{.}}{{end}}
  jobs stuck:                  {{len .Stuck}}{{range .Stuck}}
    - {{.}}{{end}}
  in Drive but still in Zoom:  {{len .StillInZoom}}{{range .StillInZoom}}
    - {{.}}{{end}}
  in Zoom's trash, not in Drive: {{len .TrashNotInDrive}}{{range .TrashNotInDrive}}
    - {{.}}{{end}}{{end}}{{if .Digest.Credentials}}

Credentials:{{range .Digest.Credentials}}
  {{.}}{{end}}{{end}}

zoomarchive {{.Digest.Version}}
{{end}}`

const mailHTML = `{{define "archived-html"}}<h2 style="font-size:18px">Archived: {{.Archived.Recording.Topic}}</h2>
<p>{{.Local}} ({{.Archived.Recording.Duration}} min)<br>Host: {{.Archived.Recording.HostEmail}}<br>Meeting {{.Archived.Recording.MeetingID}}</p>
<p><a href="{{.Archived.FolderLink}}">Open the folder in Drive</a>{{if .Shared}}: {{.Shared}}{{end}}</p>
<ul>{{range .Archived.Files}}<li><a href="{{.DriveLink}}">{{kind .}}</a>, {{size .Size}}{{if .Late}} <b>(archived after the rest: Zoom made it later, or its Drive copy was deleted)</b>{{end}}</li>{{end}}</ul>
<p>In Zoom: {{.Action}}.</p>{{if .Archived.NoTranscript}}
<p>The host's settings make Zoom transcribe the audio, but no transcript had come when the wait for it (ZOOM_TRANSCRIPT_WAIT) ended; should it come later, it is archived then and you get a mail.</p>{{end}}
{{end}}{{define "failed-html"}}<h2 style="font-size:18px">Not archived: {{.Failed.FileType}} of {{.Failed.Recording.Topic}}</h2>
<p>{{.Local}}<br>Host: {{.Failed.Recording.HostEmail}}<br>Attempts: {{.Failed.Attempts}}</p>
<p><b>Reason:</b> {{.Failed.Reason}}</p>
<p>The recording stays in Zoom until every file is in Drive. To try again once the cause is fixed, an operator runs:</p>
<pre style="white-space:pre-wrap;background:#f4f4f4;padding:8px">{{.Failed.Replay}}</pre>
{{end}}{{define "alert-html"}}{{if .Alert.Resolved}}<h2 style="font-size:18px">Over: {{.Title}}</h2><p>{{.Alert.Message}}</p>
<p>It began {{.Began}} and was over {{.Ended}}.</p>
{{else}}<h2 style="font-size:18px">{{.Title}}</h2><p>{{.Alert.Message}}</p>
<p>Since {{.Began}}.{{if .Until}} Ends by itself: {{.Until}}.{{end}}</p>
<p>You get one more mail when it is over.</p>
{{end}}{{end}}{{define "digest-html"}}<h2 style="font-size:18px">zoomarchive, {{.Digest.Day}}</h2>
<table><tr><td>Recordings archived</td><td>{{.Digest.Recordings}} ({{.Digest.Files}} files, {{size .Digest.Bytes}})</td></tr>
<tr><td>Zoom storage freed</td><td>{{size .Digest.Freed}}</td></tr>{{if .Digest.ZoomStorage}}
<tr><td>Zoom cloud storage</td><td>{{.Digest.ZoomStorage}}</td></tr>{{end}}
<tr><td>Files failed</td><td>{{.Digest.FailedToday}} today, {{len .Digest.OpenFailures}} open</td></tr>
<tr><td>Alerts</td><td>{{len .Digest.Alerts}}</td></tr>{{if or .Digest.SharedToday .Digest.NotShared}}
<tr><td>Folders shared</td><td>{{.Digest.SharedToday}} with their hosts, {{len .Digest.NotShared}} not (below)</td></tr>{{end}}</table>
{{if .Digest.NoTranscript}}<p>Removed from Zoom without the transcript its host's settings promise:</p><ul>{{range .Digest.NoTranscript}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.Late}}<p>Came late, archived:</p><ul>{{range .Digest.Late}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.DriveGone}}<p>Deleted from Drive, archived again (a failure below if Zoom no longer had it):</p><ul>{{range .Digest.DriveGone}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.OpenFailures}}<p>Open failures:</p><ul>{{range .Digest.OpenFailures}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.NotShared}}<p>Folders not shared:</p><ul>{{range .Digest.NotShared}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.Short}}<p>Shorter than ARCHIVE_MIN_LENGTH, not archived, left in Zoom for you to decide:</p><ul>{{range .Digest.Short}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.ShortTrashed}}<p>Shorter than ARCHIVE_MIN_LENGTH, moved to Zoom's trash <b>without being archived</b> (recoverable there for 30 days):</p><ul>{{range .Digest.ShortTrashed}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.Alerts}}<p>Alerts:</p><ul>{{range .Digest.Alerts}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Digest.Overflow}}<p>Over the hourly mail cap, not mailed one by one:</p><ul>{{range .Digest.Overflow}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Digest.Reconcile}}<p>Reconciliation of the last {{.Days}} days with Zoom:</p><ul>
<li>In Zoom with no archive job: {{len .Missing}} ({{.Enqueued}} queued now){{if .Missing}}<ul>{{range .Missing}}<li>{{.}}</li>{{end}}</ul>{{end}}</li>
<li>Jobs stuck: {{len .Stuck}}{{if .Stuck}}<ul>{{range .Stuck}}<li>{{.}}</li>{{end}}</ul>{{end}}</li>
<li>In Drive but still in Zoom: {{len .StillInZoom}}{{if .StillInZoom}}<ul>{{range .StillInZoom}}<li>{{.}}</li>{{end}}</ul>{{end}}</li>
<li>In Zoom's trash, not in Drive: {{len .TrashNotInDrive}}{{if .TrashNotInDrive}}<ul>{{range .TrashNotInDrive}}<li>{{.}}</li>{{end}}</ul>{{end}}</li>
</ul>{{end}}
{{if .Digest.Credentials}}<p>Credentials:</p><ul>{{range .Digest.Credentials}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p style="color:#666">zoomarchive {{.Digest.Version}}</p>
{{end}}`
