package standins

import (
	"encoding/json"
	"net/http"

	"zoomarchive/shared/events"
)

// State is what the stand-ins hold, as cmd/standins serves it in the compose
// stack test, which cannot look inside their container otherwise.
type State struct {
	Zoom   []StateFile `json:"zoom"`   // the recording's files as Zoom has them
	Drive  []StateFile `json:"drive"`  // what Drive holds, not trashed (folders have no MD5)
	Mails  []StateMail `json:"mails"`  // what Gmail sent
	Trash  []string    `json:"trash"`  // Zoom's recording delete calls answered 2xx
	Served int64       `json:"served"` // file bytes Zoom's CDN sent
	// GoogleKeys are the keys that exist, by service account.
	GoogleKeys map[string][]string `json:"google_keys"`
	// Completed is the recording.completed body for the recording.
	Completed json.RawMessage `json:"completed"`
}

// StateFile is one file: a Drive path or a Zoom file id, its size and MD5.
type StateFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	MD5  string `json:"md5"`
}

// StateMail is one mail Gmail sent.
type StateMail struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
}

// Snapshot is the State of one recording in z, its recording.completed body, what
// d and g received, and the keys of every service account of d's token endpoint.
func Snapshot(z *Zoom, d *Drive, g *Gmail, rec events.Recording, completed []byte) State {
	s := State{Completed: completed, Served: z.BytesServed(), GoogleKeys: map[string][]string{}}
	for _, a := range d.Token.Accounts() {
		s.GoogleKeys[a] = d.Token.KeysOf(a)
	}
	for _, f := range append(rec.RecordingFiles, rec.ParticipantAudioFiles...) {
		md5hex := z.Content(f.ID).MD5()
		s.Zoom = append(s.Zoom, StateFile{Name: f.ID, Size: int64(f.FileSize), MD5: md5hex})
	}
	for _, f := range d.Files() {
		s.Drive = append(s.Drive, StateFile{Name: d.Path(f.ID), Size: f.Size, MD5: f.MD5})
	}
	for _, m := range g.Sent() {
		s.Mails = append(s.Mails, StateMail{To: m.Header.Get("To"), Subject: m.Subject, Text: m.Text})
	}
	for _, c := range z.Calls() {
		if c.Method == http.MethodDelete && c.Status < 300 {
			s.Trash = append(s.Trash, c.Path+"?"+c.Query)
		}
	}
	return s
}
