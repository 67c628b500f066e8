package events

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func readRecording(t *testing.T, name string) (Envelope, RecordingPayload) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: envelope: %v", name, err)
	}
	var p RecordingPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		t.Fatalf("%s: payload: %v", name, err)
	}
	return env, p
}

// The official example as ZoomNet keeps it.
func TestDocumentedRecordingCompleted(t *testing.T) {
	env, p := readRecording(t, "zoomnet.recording.completed.json")
	r := p.Object
	if env.Event != EventRecordingCompleted || env.EventTS != 1626230691572 || env.DownloadToken == "" {
		t.Errorf("envelope %+v", env)
	}
	if r.ID != 1234567890 || r.UUID != "4444AAAiAAAAAiAiAiiAii==" || r.Type != 4 || r.IsWebinar() {
		t.Errorf("object %+v", r)
	}
	if len(r.RecordingFiles) != 2 || len(r.ParticipantAudioFiles) != 1 {
		t.Fatalf("files %d + %d", len(r.RecordingFiles), len(r.ParticipantAudioFiles))
	}
	f := r.RecordingFiles[1]
	if f.ID != "388ffb46-1541-460d-8447-4624451a1db7" || f.FileType != FileMP4 || f.FileSize != 282825 || f.RecordingType != "shared_screen_with_speaker_view" {
		t.Errorf("file %+v", f)
	}
	if r.StartTime.Unix() != 1626212691 || f.RecordingStart == nil || r.Duration != 60 {
		t.Errorf("times %v %v", r.StartTime, f.RecordingStart)
	}
	// Fields the contract does not name (password, auto_delete...) are kept.
	if string(r.Extra["auto_delete_date"]) != `"2028-07-12"` || r.Extra["password"] == nil {
		t.Errorf("unknown fields dropped: %v", r.Extra)
	}
}

// A payload as real deliveries look: numbers as strings, a UUID that needs double
// encoding, two segments, a TIMELINE without play_url, a file type Zoom has not
// documented, participant audio.
func TestRealisticRecordingCompleted(t *testing.T) {
	_, p := readRecording(t, "recording.completed.json")
	r := p.Object
	if r.ID != 81234567890 || r.Type != 8 || r.UUID != "/ajXp+112QmS7gqgP//3ep==" {
		t.Errorf("id %d type %d uuid %q", r.ID, r.Type, r.UUID)
	}
	var mp4, timeline, unknown int
	for _, f := range r.RecordingFiles {
		switch f.FileType {
		case FileMP4:
			mp4++
		case FileTimeline:
			timeline++
			if f.PlayURL != "" || f.DownloadURL == "" {
				t.Errorf("timeline %+v", f)
			}
		case "HOLOGRAM":
			unknown++
			if f.RecordingType != "volumetric_view" || f.FileExtension != "H3D" {
				t.Errorf("unknown type not kept as sent: %+v", f)
			}
		}
	}
	if mp4 != 2 || timeline != 1 || unknown != 1 {
		t.Errorf("mp4 segments %d, timelines %d, unknown types %d", mp4, timeline, unknown)
	}
	if len(r.ParticipantAudioFiles) != 2 || r.ParticipantAudioFiles[0].FileName != "Aino Virtanen" {
		t.Errorf("participant audio %+v", r.ParticipantAudioFiles)
	}
	if string(r.Extra["some_future_flag"]) != "true" {
		t.Errorf("unknown field dropped: %v", r.Extra)
	}
}

// Written again, a recording keeps every field Zoom sent.
func TestRoundTripKeepsUnknownFields(t *testing.T) {
	for _, name := range []string{"zoomnet.recording.completed.json", "recording.completed.json"} {
		_, p := readRecording(t, name)
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var again RecordingPayload
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Errorf("%s: round trip changed the payload", name)
		}
		for _, key := range []string{`"recording_play_passcode"`, `"on_prem"`} {
			if !bytes.Contains(b, []byte(key)) {
				t.Errorf("%s: %s lost on the way out", name, key)
			}
		}
	}
}

func TestInt64AcceptsNumbersAndStrings(t *testing.T) {
	var v struct{ A, B, C, D Int64 }
	if err := json.Unmarshal([]byte(`{"A":9007199254740993,"B":"81234567890","C":null,"D":""}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 9007199254740993 || v.B != 81234567890 || v.C != 0 || v.D != 0 {
		t.Errorf("%+v", v)
	}
	for _, bad := range []string{`1.5`, `"x"`, `true`, `"1e3"`} {
		if json.Unmarshal([]byte(`{"A":`+bad+`}`), &v) == nil {
			t.Errorf("%s accepted as an integer", bad)
		}
	}
}

func TestZoomEventSubject(t *testing.T) {
	for ev, want := range map[string]string{
		"recording.completed":            "zoom.event.recording.completed",
		"recording.transcript_completed": "zoom.event.recording.transcript_completed",
		"meeting.participant_joined":     "zoom.event.meeting.participant_joined",
	} {
		if got, err := ZoomEventSubject(ev); err != nil || got != want {
			t.Errorf("%s: %q %v", ev, got, err)
		}
		if back := ZoomEventName(want); back != ev {
			t.Errorf("ZoomEventName(%q) = %q", want, back)
		}
	}
	for _, bad := range []string{"", "a..b", ".a", "a.", "recording.*", "recording.>", "a b", "a\r\nb", strings.Repeat("a", 129)} {
		if _, err := ZoomEventSubject(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFileKeyOf(t *testing.T) {
	for _, subject := range []string{FetchJobSubject("k1-Ab_9"), ChunkSubject("k1-Ab_9"), FetchProgressKey("k1-Ab_9"), UploadProgressKey("k1-Ab_9")} {
		if got := FileKeyOf(subject); got != "k1-Ab_9" {
			t.Errorf("FileKeyOf(%q) = %q", subject, got)
		}
	}
	if got := FileKeyOf(FileVerifiedSubject("k")); got != "" {
		t.Errorf("a subject of another kind gave %q", got)
	}
}

// FuzzRecordingPayload: any bytes either fail to parse or survive a round trip.
func FuzzRecordingPayload(f *testing.F) {
	for _, name := range []string{"zoomnet.recording.completed.json", "recording.completed.json"} {
		b, _ := os.ReadFile("testdata/" + name)
		var env Envelope
		json.Unmarshal(b, &env)
		f.Add([]byte(env.Payload))
	}
	f.Add([]byte(`{"object":{"type":"5","id":"1","recording_files":[{}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p RecordingPayload
		if json.Unmarshal(b, &p) != nil {
			return
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("parsed but cannot be written: %v", err)
		}
		var again RecordingPayload
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("written form does not parse: %v\n%s", err, out)
		}
		out2, _ := json.Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip not stable:\n%s\n%s", out, out2)
		}
	})
}

// A number that does not parse is that field's problem, named, never a zero that
// turns the length checks off; numbers as strings stay accepted.
func TestUnparsableNumbersAreNamedNotZeroed(t *testing.T) {
	body := `{"uuid":"u1==","id":"abc","topic":"T","recording_files":[
		{"id":"f1","file_type":"MP4","file_size":1.5e9},
		{"id":"f2","file_type":"M4A","file_size":-4},
		{"id":"f3","file_type":"M4A","file_size":"1234"},
		{"id":"f4","file_type":"CC"}]}`
	var r Recording
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("one bad field failed the whole recording: %v", err)
	}
	if len(r.Invalid) != 1 || !strings.HasPrefix(r.Invalid[0], `id "abc"`) {
		t.Errorf("recording problems %q, want the id named", r.Invalid)
	}
	want := map[string]string{"f1": "file_size 1.5e9", "f2": "file_size -4", "f3": "", "f4": ""}
	for _, f := range r.RecordingFiles {
		got := strings.Join(f.Invalid, "; ")
		if w := want[f.ID]; w == "" && got != "" || w != "" && !strings.HasPrefix(got, w) {
			t.Errorf("%s: problems %q, want %q", f.ID, got, w)
		}
		if n := len(f.Problems(r)); n != len(f.Invalid)+1 {
			t.Errorf("%s: %d problems with the recording's, want %d", f.ID, n, len(f.Invalid)+1)
		}
	}
	if r.RecordingFiles[2].FileSize != 1234 {
		t.Errorf("a size sent as a string read as %d", r.RecordingFiles[2].FileSize)
	}
	// Written and read again, the bad values come back as they were sent.
	b, _ := json.Marshal(r)
	var again Recording
	json.Unmarshal(b, &again)
	if !reflect.DeepEqual(again.Invalid, r.Invalid) || !reflect.DeepEqual(again.RecordingFiles[0].Invalid, r.RecordingFiles[0].Invalid) {
		t.Errorf("round trip lost the bad values: %s", b)
	}
}

func TestChunkHeadersRoundTrip(t *testing.T) {
	md5hex := strings.Repeat("a", 32)
	for _, c := range []Chunk{
		{File: "k1", Generation: 2, Offset: 8 << 20},
		{File: "k1", Generation: 0, Offset: 0},
		{File: "k1", Generation: 3, Offset: 5, Final: true, Size: 5, MD5: md5hex},
	} {
		m := c.Msg([]byte("bytes"))
		if m.Subject != ChunkSubject(c.File) {
			t.Errorf("%+v: subject %s", c, m.Subject)
		}
		got, err := ParseChunk(m.Header)
		if err != nil || got != c {
			t.Errorf("%+v: read back as %+v, %v", c, got, err)
		}
	}
	if a, b := (Chunk{File: "k", Offset: 4}).ID(), (Chunk{File: "k", Generation: 1, Offset: 4}).ID(); a == b {
		t.Errorf("two generations share the dedupe id %s", a)
	}
	if a, b := (Chunk{File: "k", Offset: 4}).ID(), (Chunk{File: "k", Offset: 4, Final: true}).ID(); a == b {
		t.Errorf("a chunk and the final share the dedupe id %s", a)
	}
}

func TestChunkHeadersMalformed(t *testing.T) {
	good := Chunk{File: "k", Generation: 1, Offset: 10, Final: true, Size: 10, MD5: strings.Repeat("a", 32)}
	for name, spoil := range map[string]func(h nats.Header){
		"no file":                 func(h nats.Header) { h.Del(HeaderFile) },
		"no offset":               func(h nats.Header) { h.Del(HeaderOffset) },
		"negative offset":         func(h nats.Header) { h.Set(HeaderOffset, "-1") },
		"generation not a number": func(h nats.Header) { h.Set(HeaderGeneration, "2x") },
		"final without a size":    func(h nats.Header) { h.Del(HeaderSize) },
		"final without md5":       func(h nats.Header) { h.Del(HeaderMD5) },
	} {
		m := good.Msg(nil)
		spoil(m.Header)
		if _, err := ParseChunk(m.Header); err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}
