package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"zoomarchive/shared/events"
	"zoomarchive/shared/standins"
)

// Zoom's transcript as it comes: a header, numbered cues, "Name: words"; a cue of
// WebVTT's own voice tag; a NOTE; CR LF line ends.
const cherryVTT = "WEBVTT\r\n\r\nNOTE made by Zoom\r\n\r\n1\r\n00:00:05.120 --> 00:00:07.900\r\nLopakhin: The train has come, thank God.\r\n\r\n" +
	"2\r\n00:00:08.000 --> 00:00:09.500\r\nLopakhin: What time is it?\r\n\r\n" +
	"3\r\n00:01:02.000 --> 00:01:04.000\r\n<v Dunyasha>Nearly two. <i>It is</i> light already.</v>\r\n\r\n" +
	"4\r\n01:00:00.000 --> 01:00:03.000\r\nThe cherry orchard &amp; the house are sold\r\n"

func TestParseVTTKeepsSpeakersAndWords(t *testing.T) {
	got := parseVTT([]byte(cherryVTT))
	want := []turn{
		{5120 * time.Millisecond, "Lopakhin", "The train has come, thank God. What time is it?"},
		{62 * time.Second, "Dunyasha", "Nearly two. It is light already."},
		{time.Hour, "", "The cherry orchard & the house are sold"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("turns\n%v\nwant\n%v", got, want)
	}
	text := indexable(got)
	if text != "Lopakhin: The train has come, thank God. What time is it?\nDunyasha: Nearly two. It is light already.\nThe cherry orchard & the house are sold" {
		t.Errorf("indexable text %q", text)
	}
	if strings.ContainsAny(text, "0123456789") {
		t.Errorf("a timestamp or cue number in %q", text)
	}
	if firstLine(got) != "Lopakhin: The train has come, thank God. What time is it?" {
		t.Errorf("first line %q", firstLine(got))
	}
	doc := string(docHTML("T", got))
	if !strings.Contains(doc, "<p><b>0:00:05 Lopakhin</b> The train has come, thank God. What time is it?</p>") ||
		!strings.Contains(doc, "<p><b>1:00:00</b> The cherry orchard &amp; the house are sold</p>") || strings.Count(doc, "<p>") != 3 {
		t.Errorf("doc %s", doc)
	}
}

// A transcript over Drive's 128 KB: a line said again is kept once, and what is
// still too long is cut at a word, within the limit.
func TestIndexableTextWithinDrivesLimit(t *testing.T) {
	var vtt strings.Builder
	vtt.WriteString("WEBVTT\n\n")
	line := func(i int, speaker, words string) {
		fmt.Fprintf(&vtt, "%d\n00:%02d:%02d.000 --> 00:%02d:%02d.900\n%s: %s\n\n", i, i/60%60, i%60, i/60%60, i%60, speaker, words)
	}
	// Act one run three times: 3 x 1500 turns of about 60 bytes, 270 KB in all.
	for run := 0; run < 3; run++ {
		for i := 0; i < 1500; i++ {
			line(i, []string{"Ranevskaya", "Gaev"}[i%2], fmt.Sprintf("line %d of act one, the orchard in bloom", i))
		}
	}
	text := indexable(parseVTT([]byte(vtt.String())))
	if len(text) > maxIndexable || !strings.Contains(text, "line 1499 of act one") || strings.Count(text, "line 7 of act one") != 1 {
		t.Errorf("a rehearsal run three times: %d bytes, the last line kept: %v", len(text), strings.Contains(text, "line 1499 "))
	}
	// Three acts, each once: 4500 different turns, cut at a word.
	vtt.Reset()
	for i := 0; i < 4500; i++ {
		line(i, "Firs", fmt.Sprintf("words of turn %d, never said twice in this play", i))
	}
	text = indexable(parseVTT([]byte(vtt.String())))
	if len(text) > maxIndexable || len(text) < maxIndexable-100 || !strings.HasPrefix(text, "Firs: words of turn 0,") {
		t.Errorf("a long transcript: %d bytes, begins %q", len(text), text[:30])
	}
	if last := text[strings.LastIndex(text, "\n")+1:]; strings.HasSuffix(last, " ") || !strings.HasPrefix(last, "Firs: ") {
		t.Errorf("cut inside a word or a name: %q", last)
	}
}

var cherry = events.RecordingInfo{
	UUID: "cherry+rehearsal==", MeetingID: 87654321012, HostEmail: "director@theatre.example", Topic: "Cherry Orchard rehearsal",
	Type: 8, StartTime: time.Date(2026, 4, 2, 16, 0, 0, 0, time.UTC), Timezone: "Europe/Helsinki", Duration: 61,
}

// The transcript comes after its video and audio are archived: they get its words
// then, Drive's search finds the video by a line of the play, the transcript is
// kept once as a Google Doc, and every file's description says its length.
func TestTranscriptAfterTheVideoMakesItSearchable(t *testing.T) {
	w := newWorld(t, nil)
	w.startUpload(t)
	jobs := w.plan(t, cherry,
		spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "shared_screen_with_speaker_view", size: 2*mib + 7},
		spec{key: "c-m4a", fileType: "M4A", ext: "M4A", recType: "audio_only", size: 70000},
		spec{key: "c-p1", fileType: "M4A", ext: "M4A", participant: "Lopakhin", size: 30000},
		spec{key: "c-chat", fileType: "CHAT", ext: "TXT", recType: "chat_file", size: 500},
		spec{key: "c-vtt", fileType: "TRANSCRIPT", ext: "VTT", recType: "audio_transcript", text: cherryVTT})
	w.feedAll(t, jobs[:4])
	for _, j := range jobs[:4] {
		w.waitVerified(t, j.Key)
	}
	if f := w.checkCopy(t, "c-mp4"); f.ContentHints != nil || !strings.Contains(f.Description, "Length: 40 min 0 s") {
		t.Errorf("the video before its transcript: hints %+v, description %q", f.ContentHints, f.Description)
	}
	w.feedAll(t, jobs[4:])
	w.waitVerified(t, "c-vtt")
	want := "Dunyasha: Nearly two. It is light already."
	for _, key := range []string{"c-mp4", "c-m4a", "c-p1"} {
		waitFor(t, key+" indexed", func() bool {
			f := w.checkCopy(t, key)
			return f.ContentHints != nil && strings.Contains(f.ContentHints.IndexableText, want)
		})
	}
	if f := w.checkCopy(t, "c-chat"); f.ContentHints != nil {
		t.Errorf("the chat got the transcript's words")
	}
	if got := w.search("nearly TWO. it is light"); len(got) != 3 || got["c-mp4"] == "" {
		t.Errorf("Drive's search by a line finds %v", got)
	}
	// The description and the Doc come after the media files' words.
	waitFor(t, "the transcript's Doc", func() bool { return len(w.docs()) > 0 })
	vtt := w.checkCopy(t, "c-vtt")
	if !strings.Contains(vtt.Description, "First line: Lopakhin: The train has come, thank God.") {
		t.Errorf("the transcript's description %q", vtt.Description)
	}
	docs := w.docs()
	if len(docs) != 1 {
		t.Fatalf("%d Google Docs, want the transcript's one", len(docs))
	}
	d := docs[0]
	if d.Parents[0] != vtt.Parents[0] || w.drive.Path(d.ID) != strings.TrimSuffix(w.drive.Path(vtt.ID), ".vtt") || d.AppProperties["zoomFileKey"] != "" ||
		d.AppProperties["zoomTranscriptOf"] != "c-vtt" {
		t.Errorf("the Doc %s, %+v", w.drive.Path(d.ID), d)
	}
	if !strings.Contains(string(d.Body), "\n0:01:02 Dunyasha Nearly two. It is light already.\n") {
		t.Errorf("the Doc's text %q", d.Body)
	}
}

// search is what Drive's search box finds for words: file keys to names.
func (w *world) search(words string) map[string]string {
	found := map[string]string{}
	for _, f := range w.drive.Files() {
		if f.AppProperties["zoomFileKey"] != "" && f.ContentHints != nil && strings.Contains(strings.ToLower(f.ContentHints.IndexableText), strings.ToLower(words)) {
			found[f.AppProperties["zoomFileKey"]] = f.Name
		}
	}
	return found
}

func (w *world) docs() []standins.DriveFile {
	var docs []standins.DriveFile
	for _, f := range w.drive.Files() {
		if f.MimeType == docMime {
			docs = append(docs, f)
		}
	}
	return docs
}

// The transcript first, its video after (and the transcript replayed): the video
// finds the words when it is verified; UPLOAD_TRANSCRIPT_DOC=off keeps no Doc.
func TestVideoAfterItsTranscriptFindsTheWords(t *testing.T) {
	w := newWorld(t, map[string]string{"UPLOAD_TRANSCRIPT_DOC": "off"})
	w.startUpload(t)
	jobs := w.plan(t, cherry,
		spec{key: "c-vtt", fileType: "TRANSCRIPT", ext: "VTT", recType: "audio_transcript", text: cherryVTT},
		spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "shared_screen_with_speaker_view", size: mib + 3})
	w.feedAll(t, jobs[:1])
	w.waitVerified(t, "c-vtt")
	w.feedAll(t, jobs[1:])
	w.waitVerified(t, "c-mp4")
	waitFor(t, "the video indexed", func() bool {
		f := w.checkCopy(t, "c-mp4")
		return f.ContentHints != nil && strings.Contains(f.ContentHints.IndexableText, "Lopakhin: The train has come")
	})
	if docs := w.docs(); len(docs) != 0 {
		t.Errorf("UPLOAD_TRANSCRIPT_DOC=off made %d Docs", len(docs))
	}
}

// Whatever a transcript holds, its words for the index fit Drive's field, are
// valid UTF-8 and carry no markup; the Doc's HTML holds no tag but its own.
func FuzzTranscript(f *testing.F) {
	for _, s := range []string{cherryVTT, "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\n<v A>x</v>\n", "00:01.000 --> 00:02.000\nNo one: <script>x</script>\n",
		"WEBVTT\n\n1\n00:00:01.000 --> \n\n", "\xff\xfe 00:00:0\x00 --> ", strings.Repeat("1\n00:00:01.000 --> 00:00:02.000\nA: é\n\n", 50)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		turns := parseVTT(b)
		text := indexable(turns)
		if len(text) > maxIndexable || !utf8.ValidString(text) || strings.ContainsAny(text, "<>") {
			t.Fatalf("indexable text of %q: %d bytes, %q", b, len(text), text)
		}
		doc := string(docHTML("t", turns))
		if strings.Count(doc, "<p>") != len(turns) || strings.Count(doc, "<") != 11+4*len(turns) {
			t.Fatalf("the Doc of %q has tags of its own making only? %s", b, doc)
		}
	})
}

// A worker stopped after its transcript was verified, before the index was made:
// its resume record and final chunk message are left, and the next worker to look
// at the file makes the index from Drive's copy.
func TestIndexMadeAfterAWorkerStoppedMidIndex(t *testing.T) {
	w := newWorld(t, nil)
	w.drive.Inject(standins.DriveFault{Kind: "update", Times: 1000, Status: 500}) // every index fails
	s := w.startUpload(t)
	jobs := w.plan(t, cherry,
		spec{key: "c-mp4", fileType: "MP4", ext: "MP4", recType: "gallery_view", size: mib + 5},
		spec{key: "c-vtt", fileType: "TRANSCRIPT", ext: "VTT", recType: "audio_transcript", text: cherryVTT})
	w.feedAll(t, jobs)
	w.waitVerified(t, "c-mp4")
	w.waitVerified(t, "c-vtt")
	waitFor(t, "the transcript's index failed", func() bool {
		for _, line := range strings.Split(s.Logs.String(), "\n") {
			if strings.Contains(line, "cannot make the recording's words searchable") && strings.Contains(line, `"file_key":"c-vtt"`) {
				return true
			}
		}
		return false
	})
	s.Stop()
	if f := w.checkCopy(t, "c-mp4"); f.ContentHints != nil {
		t.Fatal("the video has words without an index")
	}
	// What the stopped worker leaves: its resume record, with a lease run out, and
	// the transcript's final chunk message, not yet acknowledged.
	ctx := context.Background()
	rec, _ := json.Marshal(map[string]any{"owner": "upload-stopped", "lease_until": time.Now().Add(-time.Minute), "state": upState{}})
	if _, err := w.kv.Put(ctx, events.UploadProgressKey("c-vtt"), rec); err != nil {
		t.Fatal(err)
	}
	w.drive.ClearFaults()
	c := w.content("c-vtt")
	w.publish(t, events.Chunk{File: "c-vtt", Offset: c.Size, Final: true, Size: c.Size, MD5: c.MD5()}.Msg(nil))
	w.startUpload(t)
	waitFor(t, "the video indexed", func() bool {
		f := w.checkCopy(t, "c-mp4")
		return f.ContentHints != nil && strings.Contains(f.ContentHints.IndexableText, "Dunyasha: Nearly two.")
	})
	waitFor(t, "the resume record gone", func() bool {
		_, err := w.kv.Get(ctx, events.UploadProgressKey("c-vtt"))
		return err != nil
	})
	if docs := w.docs(); len(docs) != 1 {
		t.Errorf("%d Docs", len(docs))
	}
}
