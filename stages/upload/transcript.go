package main

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/api/drive/v3"
	"google.golang.org/api/googleapi"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// What was said in a recording, from Zoom's audio transcript (WEBVTT), made
// findable once the transcript or a video or audio file of the recording is
// verified (index):
//
//   - the words, with their speakers, go into contentHints.indexableText of every
//     video and audio file of the recording, so that Drive's search finds the video
//     by a line of the play; a transcript verified after its video updates it then;
//   - the transcript is kept beside its VTT as a Google Doc (UPLOAD_TRANSCRIPT_DOC),
//     one paragraph per speaker turn with the time it started;
//   - the transcript's description gets its first line.
//
// None of it holds a file back: the file is verified and announced before.

// docMime is what Drive converts an upload to when the metadata asks for it.
const docMime = "application/vnd.google-apps.document"

// maxIndexable is what upload puts in indexableText at most: Drive documents it as
// "limited to 128KB"; 128 000 bytes is within either reading of KB.
const maxIndexable = 128000

// maxTranscript bounds what is read of a transcript from Drive (a three-hour
// rehearsal's VTT is under 2 MB).
const maxTranscript = 16 << 20

// turn is one speaker's words until another speaks.
type turn struct {
	at      time.Duration // from the start of the recording
	speaker string
	words   string
}

// parseVTT reads Zoom's transcript: cues of "start --> end" and "Name: words"
// (or WebVTT's <v Name>words</v>); consecutive cues of one speaker are one turn.
// Cue numbers, timestamps, NOTE, STYLE and REGION blocks are dropped.
func parseVTT(b []byte) []turn {
	text := strings.ReplaceAll(strings.ReplaceAll(string(bytes.ToValidUTF8(b, nil)), "\r\n", "\n"), "\r", "\n")
	var turns []turn
	for _, block := range strings.Split(text, "\n\n") {
		lines := strings.Split(strings.Trim(block, "\n"), "\n")
		timing := -1
		for i, l := range lines {
			if strings.Contains(l, "-->") {
				timing = i
				break
			}
		}
		if timing < 0 {
			continue // the header, a NOTE, STYLE or REGION block
		}
		start, _, _ := strings.Cut(lines[timing], "-->")
		at, ok := cueTime(strings.TrimSpace(start))
		if !ok {
			continue
		}
		speaker, words := speakerOf(strings.Join(lines[timing+1:], " "))
		if words = strings.Join(strings.Fields(words), " "); words == "" {
			continue
		}
		if n := len(turns); n > 0 && turns[n-1].speaker == speaker {
			turns[n-1].words += " " + words
			continue
		}
		turns = append(turns, turn{at: at, speaker: speaker, words: words})
	}
	return turns
}

// cueTime reads hh:mm:ss.ttt or mm:ss.ttt.
func cueTime(s string) (time.Duration, bool) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	secs := 0.0
	for i, p := range parts {
		n, err := strconv.ParseFloat(p, 64)
		if err != nil || n < 0 || i < len(parts)-1 && strings.Contains(p, ".") {
			return 0, false
		}
		secs = secs*60 + n
	}
	return time.Duration(secs * float64(time.Second)), true
}

// speakerOf splits a cue's text into who speaks and what: <v Name>words, or
// Zoom's "Name: words"; the rest loses its markup.
func speakerOf(s string) (string, string) {
	speaker := ""
	if rest, ok := strings.CutPrefix(s, "<v "); ok {
		if name, words, ok := strings.Cut(rest, ">"); ok {
			speaker, s = name, words
		}
	} else if name, words, ok := strings.Cut(s, ": "); ok && name != "" && utf8.RuneCountInString(name) <= 60 && !strings.ContainsAny(name, "<>") {
		speaker, s = name, words
	}
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	if speaker = strings.TrimSpace(speaker); speaker != "" {
		speaker = cleanName(speaker, 60)
	}
	return speaker, html.UnescapeString(b.String())
}

// line is a turn as the index and the first line say it: "Name: words".
func (t turn) line() string {
	if t.speaker == "" {
		return t.words
	}
	return t.speaker + ": " + t.words
}

// indexable is the text for indexableText: a line per turn, speakers and words,
// no times; Drive reads the field as HTML, so < and > go. When it is longer than
// maxIndexable, a line said again (a scene run a second time) is kept once, since
// searching needs it only once; what is still too long is cut at a word, keeping
// the beginning. The Google Doc beside the VTT holds every word and is searched
// by Drive itself.
func indexable(turns []turn) string {
	strip := strings.NewReplacer("<", " ", ">", " ")
	lines := make([]string, len(turns))
	for i, t := range turns {
		lines[i] = strip.Replace(t.line())
	}
	text := strings.Join(lines, "\n")
	if len(text) <= maxIndexable {
		return text
	}
	seen := map[string]bool{}
	var once []string
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			once = append(once, l)
		}
	}
	text = strings.Join(once, "\n")
	if len(text) <= maxIndexable {
		return text
	}
	cut := truncateBytes(text, maxIndexable)
	if i := strings.LastIndexAny(cut, " \n"); i > 0 {
		cut = cut[:i]
	}
	return cut
}

// firstLine is what the transcript's description shows of it.
func firstLine(turns []turn) string {
	if len(turns) == 0 {
		return ""
	}
	return cleanName(turns[0].line(), 200)
}

// clock says an offset as 0:05:12.
func clock(d time.Duration) string {
	d = d.Truncate(time.Second)
	return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// docHTML is the transcript as Drive turns it into a Google Doc: a title, then a
// paragraph per turn, the time it started (from the recording's start) and the
// speaker in bold.
func docHTML(title string, turns []turn) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<html><head><meta charset=\"utf-8\"><title>%s</title></head><body><h1>%s</h1>\n", html.EscapeString(title), html.EscapeString(title))
	for _, t := range turns {
		who := clock(t.at)
		if t.speaker != "" {
			who += " " + t.speaker
		}
		fmt.Fprintf(&b, "<p><b>%s</b> %s</p>\n", html.EscapeString(who), html.EscapeString(t.words))
	}
	b.WriteString("</body></html>\n")
	return b.Bytes()
}

// said tells what a file of a recording is to the index.
func said(fileType string) (transcript, media bool) {
	return fileType == events.FileTranscript, fileType == events.FileMP4 || fileType == events.FileM4A
}

// index makes what was said findable once job's file (Drive's copy got) is
// verified: for a transcript, in every video and audio file of the recording, its
// Doc and its description; for a video or audio file, from the recording's
// transcript when one is in Drive already. Whichever of the two is verified last
// finds the other. What fails is logged and counted; it never fails the file.
func (f *fileUpload) index(ctx context.Context, got driveFile) {
	transcript, media := said(f.job.File.FileType)
	if !transcript && !media {
		return
	}
	var err error
	for try := 0; try < 4; try++ {
		if err = f.st.indexOnce(ctx, f.job, got, transcript); err == nil || ctx.Err() != nil {
			break
		}
		retry.Sleep(ctx, retry.Backoff(f.st.retryBase, try))
	}
	if err != nil {
		f.st.m.indexFailures.Inc()
		f.log.Warn("cannot make the recording's words searchable; the file is archived all the same", "drive_id", got.ID, "err", err)
	}
}

// indexLeftover: a worker that stopped between a file's verification and the end
// of its index left its resume record (deleted last, after the index); the index
// is made again from Drive's copy.
func (st *stage) indexLeftover(ctx context.Context, job events.FileJob, log *slog.Logger) {
	if _, left, err := bus.Peek[upState](ctx, st.kv, events.UploadProgressKey(job.Key)); err != nil || !left {
		return
	}
	up, _, err := bus.Claim[upState](ctx, st.kv, events.UploadProgressKey(job.Key), st.worker, st.lease)
	if err != nil || up == nil {
		return // a live worker's: it indexes the file itself
	}
	defer up.Delete(ctx)
	d, err := st.drive.Files.Get(job.DriveID).SupportsAllDrives(true).Fields("id,name,parents").Context(ctx).Do()
	if err != nil {
		st.m.indexFailures.Inc()
		log.Warn("cannot make the recording's words searchable; the file is archived all the same", "drive_id", job.DriveID, "err", err)
		return
	}
	log.Info("indexing a verified file again: its worker stopped before the index was done")
	f := &fileUpload{st: st, job: job, up: up, log: log}
	f.index(ctx, driveFile{ID: d.Id, Name: d.Name, Parents: d.Parents})
}

func (st *stage) indexOnce(ctx context.Context, job events.FileJob, got driveFile, transcript bool) error {
	q := fmt.Sprintf("appProperties has { key='zoomMeetingUuid' and value='%s' } and trashed = false", escapeQ(job.Recording.UUID))
	list, err := st.drive.Files.List().Q(q).Fields("files(id,name,mimeType,appProperties,parents)").SupportsAllDrives(true).
		IncludeItemsFromAllDrives(true).Corpora("allDrives").PageSize(1000).Context(ctx).Do()
	if err != nil {
		return err
	}
	var vtts, targets []*drive.File
	for _, d := range list.Files {
		if d.AppProperties["zoomFileKey"] == "" { // the folder, a transcript's Doc
			continue
		}
		isVTT, isMedia := said(d.AppProperties["zoomFileType"])
		switch {
		case isVTT:
			vtts = append(vtts, d)
		case isMedia && (transcript || d.Id == got.ID):
			targets = append(targets, d)
		}
	}
	if transcript && !hasID(vtts, got.ID) { // Drive's search may lag its writes
		vtts = append(vtts, &drive.File{Id: got.ID, Name: got.Name, Parents: got.Parents})
	}
	if !transcript && !hasID(targets, got.ID) {
		targets = append(targets, &drive.File{Id: got.ID})
	}
	if len(vtts) == 0 {
		return nil
	}
	// The parts of a paused meeting, in order.
	sort.Slice(vtts, func(a, b int) bool { return vtts[a].Name < vtts[b].Name })
	var turns, own []turn
	for _, v := range vtts {
		t, err := st.readTranscript(ctx, v.Id)
		if err != nil {
			return fmt.Errorf("transcript %s: %w", v.Id, err)
		}
		turns = append(turns, t...)
		if v.Id == got.ID {
			own = t
		}
	}
	if len(turns) == 0 {
		return nil // a transcript without a word (nobody spoke): nothing to find
	}
	text := indexable(turns)
	for _, d := range targets {
		_, err := st.drive.Files.Update(d.Id, &drive.File{ContentHints: &drive.FileContentHints{IndexableText: text}}).
			SupportsAllDrives(true).Fields("id").Context(ctx).Do()
		if err != nil {
			return fmt.Errorf("indexable text of %s: %w", d.Id, err)
		}
	}
	if !transcript {
		return nil
	}
	_, err = st.drive.Files.Update(got.ID, &drive.File{Description: describe(job, true, st.tz, firstLine(own))}).
		SupportsAllDrives(true).Fields("id").Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("description: %w", err)
	}
	if st.transcriptDoc && len(got.Parents) > 0 {
		return st.transcriptAsDoc(ctx, job, got, own)
	}
	return nil
}

func hasID(files []*drive.File, id string) bool {
	for _, f := range files {
		if f.Id == id {
			return true
		}
	}
	return false
}

// readTranscript reads a VTT back from Drive, which holds it verified.
func (st *stage) readTranscript(ctx context.Context, id string) ([]turn, error) {
	resp, err := st.drive.Files.Get(id).SupportsAllDrives(true).Context(ctx).Download()
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTranscript))
	if err != nil {
		return nil, err
	}
	return parseVTT(b), nil
}

// transcriptAsDoc keeps the transcript as a Google Doc beside its VTT, once: the
// Doc is tagged zoomTranscriptOf (not zoomFileKey, which names the VTT alone).
func (st *stage) transcriptAsDoc(ctx context.Context, job events.FileJob, got driveFile, turns []turn) error {
	q := fmt.Sprintf("appProperties has { key='zoomTranscriptOf' and value='%s' } and trashed = false", escapeQ(job.Key))
	list, err := st.drive.Files.List().Q(q).Fields("files(id)").SupportsAllDrives(true).
		IncludeItemsFromAllDrives(true).Corpora("allDrives").PageSize(10).Context(ctx).Do()
	if err != nil || len(list.Files) > 0 {
		return err
	}
	props := st.tagsFor(job, true)
	delete(props, "zoomFileKey")
	props["zoomTranscriptOf"] = job.Key
	name := strings.TrimSuffix(got.Name, "."+extension(job.File))
	meta := &drive.File{Name: name, MimeType: docMime, Parents: got.Parents[:1], AppProperties: props,
		Description: describe(job, true, st.tz, firstLine(turns)) + "\nThe transcript as a document; the .vtt beside it is Zoom's file."}
	_, err = st.drive.Files.Create(meta).Media(bytes.NewReader(docHTML(name, turns)), googleapi.ContentType("text/html")).
		SupportsAllDrives(true).Fields("id").Context(ctx).Do()
	return err
}
