package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/api/drive/v3"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// Where a file goes in Drive and what it is called:
//
//	<root>/2026/2026-03/2026-03-14 19.30 Board meeting (812 3456 7890)/
//	    2026-03-14 19.30 Board meeting - shared screen with speaker view (part 2).mp4
//
// (the folders are DRIVE_LAYOUT's and the rules', rules.go), dates in the meeting's time zone; every file and folder tagged with appProperties
// (for search) and a description (for people).

const folderMime = "application/vnd.google-apps.folder"

func localStart(rec events.RecordingInfo, fallback *time.Location) time.Time {
	if loc, err := time.LoadLocation(rec.Timezone); err == nil && rec.Timezone != "" {
		return rec.StartTime.In(loc)
	}
	return rec.StartTime.In(fallback)
}

// meetingNumber is written the way Zoom shows it: 812 3456 7890, 123 456 7890.
func meetingNumber(id int64) string {
	s := strconv.FormatInt(id, 10)
	switch len(s) {
	case 11:
		return s[:3] + " " + s[3:7] + " " + s[7:]
	case 10:
		return s[:3] + " " + s[3:6] + " " + s[6:]
	case 9:
		return s[:3] + " " + s[3:6] + " " + s[6:]
	}
	return s
}

// kinds say in words what a recording_type is.
var kinds = map[string]string{
	"shared_screen_with_speaker_view":     "shared screen with speaker view",
	"shared_screen_with_speaker_view(CC)": "shared screen with speaker view (captions)",
	"shared_screen_with_gallery_view":     "shared screen with gallery view",
	"shared_screen":                       "shared screen",
	"active_speaker":                      "speaker view",
	"gallery_view":                        "gallery view",
	"audio_only":                          "audio only",
	"audio_transcript":                    "transcript",
	"chat_file":                           "chat",
	"closed_caption":                      "closed captions",
	"timeline":                            "timeline",
	"poll":                                "poll",
	"host_video":                          "host video",
	"thumbnail":                           "thumbnail",
	"audio_interpretation":                "interpretation audio",
	"summary":                             "summary",
	"summary_next_steps":                  "summary next steps",
	"summary_smart_chapters":              "summary chapters",
}

// kindOf is what the file is, in words.
func kindOf(job events.FileJob) string {
	if job.Participant {
		return "audio - " + cleanName(job.File.FileName, 60)
	}
	if k, ok := kinds[job.File.RecordingType]; ok {
		return k
	}
	switch job.File.FileType {
	case events.FileCC:
		return "closed captions"
	case events.FileTimeline:
		return "timeline"
	case events.FileChat:
		return "chat"
	case events.FileTranscript:
		return "transcript"
	}
	if job.File.RecordingType != "" {
		return strings.ReplaceAll(job.File.RecordingType, "_", " ")
	}
	return strings.ToLower(job.File.FileType)
}

// fileName is the file's name; part > 0 numbers the segments of a paused meeting.
func fileName(job events.FileJob, part int, fallback *time.Location) string {
	t := localStart(job.Recording, fallback)
	name := fmt.Sprintf("%s %s - %s", t.Format("2006-01-02 15.04"), cleanName(job.Recording.Topic, 100), kindOf(job))
	if part > 0 {
		name += fmt.Sprintf(" (part %d)", part)
	}
	if ext := extension(job.File); ext != "" {
		name += "." + ext
	}
	return name
}

func extension(f events.RecordingFile) string {
	ext := strings.ToLower(f.FileExtension)
	if ext == "" {
		ext = map[string]string{events.FileMP4: "mp4", events.FileM4A: "m4a", events.FileTranscript: "vtt", events.FileCC: "vtt",
			events.FileChat: "txt", events.FileTimeline: "json", events.FileCSV: "csv", events.FileSummary: "json"}[f.FileType]
	}
	return cleanName(ext, 10)
}

// mimeType is the file's MIME type, from its extension.
func mimeType(f events.RecordingFile) string {
	if m, ok := map[string]string{"mp4": "video/mp4", "m4a": "audio/mp4", "vtt": "text/vtt", "txt": "text/plain",
		"json": "application/json", "csv": "text/csv", "jpg": "image/jpeg"}[extension(f)]; ok {
		return m
	}
	return "application/octet-stream"
}

// cleanName makes text from Zoom safe as a Drive name: no control characters, no
// invisible format characters (a right-to-left override would show a name
// backwards), no slashes, single spaces, at most max runes.
func cleanName(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError:
			return ' '
		case r == '/' || r == '\\':
			return '-'
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		s = "untitled"
	}
	if utf8.RuneCountInString(s) > max {
		s = strings.TrimSpace(string([]rune(s)[:max-1])) + "…"
	}
	return s
}

// tags are the appProperties of a file (or, without file fields, of a recording's
// folder); each key and value together stay within Drive's 124 bytes.
func tags(job events.FileJob, forFile bool) map[string]string {
	r := job.Recording
	t := map[string]string{
		"zoomMeetingUuid": r.UUID,
		"zoomMeetingId":   strconv.FormatInt(r.MeetingID, 10),
		"zoomHost":        r.HostEmail,
		"zoomTopic":       r.Topic,
		"zoomStart":       r.StartTime.UTC().Format(time.RFC3339),
	}
	if forFile {
		t["zoomFileKey"] = job.Key
		t["zoomFileId"] = job.File.ID
		t["zoomFileType"] = job.File.FileType
		t["zoomRecordingType"] = job.File.RecordingType
		if job.Participant {
			t["zoomParticipant"] = job.File.FileName
		}
	}
	for k, v := range t {
		if v == "" {
			delete(t, k)
			continue
		}
		t[k] = truncateBytes(v, 124-len(k))
	}
	return t
}

// truncateBytes cuts s to at most n bytes on a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// describe is the human-readable description of a file or a recording's folder;
// a file's says how long it runs and a transcript's its first line (said).
func describe(job events.FileJob, forFile bool, fallback *time.Location, said string) string {
	r := job.Recording
	t := localStart(r, fallback)
	lines := []string{
		"Zoom recording: " + r.Topic,
		fmt.Sprintf("Meeting %s, UUID %s", meetingNumber(r.MeetingID), r.UUID),
		"Host: " + r.HostEmail,
		fmt.Sprintf("Started %s (%s), %d min", t.Format("2006-01-02 15:04"), t.Location(), r.Duration),
	}
	if forFile {
		lines = append(lines, fmt.Sprintf("File: %s (%s, %s), %d bytes", kindOf(job), job.File.FileType, job.File.RecordingType, job.File.FileSize))
		if f := job.File; f.RecordingStart != nil && f.RecordingEnd != nil && f.RecordingEnd.After(*f.RecordingStart) {
			lines = append(lines, "Length: "+length(f.RecordingEnd.Sub(*f.RecordingStart)))
		}
		if said != "" {
			lines = append(lines, "First line: "+said)
		}
	}
	return strings.Join(append(lines, "Archived by zoomarchive."), "\n")
}

// length says a duration as people do: 1 h 05 min, 40 min 12 s, 45 s.
func length(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%d h %02d min", h, m)
	case m > 0:
		return fmt.Sprintf("%d min %d s", m, sec)
	}
	return fmt.Sprintf("%d s", sec)
}

// part numbers the segments of a paused meeting: files of the same kind, in the
// order they were recorded; 0 when the file is the only one of its kind.
func (st *stage) part(ctx context.Context, job events.FileJob) (int, error) {
	rec, _, err := bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(events.MeetingKey(job.Recording.UUID)))
	if err != nil {
		return 0, err
	}
	var same []events.FileJob
	for _, key := range rec.Files {
		j := job
		if key != job.Key {
			if j, _, err = bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key)); err != nil {
				return 0, err
			}
		}
		if kindOf(j) == kindOf(job) && j.File.FileType == job.File.FileType {
			same = append(same, j)
		}
	}
	if len(same) < 2 {
		return 0, nil
	}
	start := func(j events.FileJob) time.Time {
		if j.File.RecordingStart != nil {
			return *j.File.RecordingStart
		}
		return time.Time{}
	}
	sort.SliceStable(same, func(a, b int) bool { return start(same[a]).Before(start(same[b])) })
	for i, j := range same {
		if j.Key == job.Key {
			return i + 1, nil
		}
	}
	return 0, nil
}

// folderRecord, at folder.<hash> in the job bucket, says who is creating a folder
// and, once made, its id: two workers never create twins, and restarts need no lookup.
type folderRecord struct {
	ID    string    `json:"id,omitempty"`
	Link  string    `json:"link,omitempty"`
	Owner string    `json:"owner,omitempty"`
	Since time.Time `json:"since"`
}

// folder finds or creates the folder name under parent.
func (st *stage) folder(ctx context.Context, parent, name string, props map[string]string, desc string) (folderRecord, error) {
	key := events.FolderKey(parent, name)
	for try := 0; ; try++ {
		st.mu.Lock()
		cached, ok := st.folders[key]
		st.mu.Unlock()
		if ok {
			return cached, nil
		}
		rec, claimed, err := st.claimFolder(ctx, key)
		if err != nil {
			return rec, err
		}
		if rec.ID != "" {
			st.mu.Lock()
			st.folders[key] = rec
			st.mu.Unlock()
			return rec, nil
		}
		if !claimed {
			if try > 300 {
				return rec, fmt.Errorf("folder %q: another worker has been creating it for too long", name)
			}
			if err := retry.Sleep(ctx, 100*time.Millisecond); err != nil {
				return rec, err
			}
			continue
		}
		// Ours to make: look first (a crashed worker may have made it), then create.
		id, link, err := st.findFolder(ctx, parent, name)
		if err == nil && id == "" {
			var f *drive.File
			f, err = st.drive.Files.Create(&drive.File{Name: name, MimeType: folderMime, Parents: []string{parent},
				AppProperties: props, Description: desc}).SupportsAllDrives(true).Fields("id,webViewLink").Context(ctx).Do()
			if err == nil {
				id, link = f.Id, f.WebViewLink
			}
		}
		if err != nil {
			st.kv.Delete(ctx, key) // let the next try claim it again
			return rec, fmt.Errorf("folder %q: %w", name, err)
		}
		rec, err = bus.Update(ctx, st.kv, key, func(r *folderRecord, _ bool) error {
			*r = folderRecord{ID: id, Link: link, Since: time.Now().UTC()}
			return nil
		})
		if err != nil {
			return rec, err
		}
	}
}

// claimFolder reads the folder's record, creating it as ours when absent or when
// its creator seems to have died (a minute without result).
func (st *stage) claimFolder(ctx context.Context, key string) (folderRecord, bool, error) {
	claimed := false
	rec, err := bus.Update(ctx, st.kv, key, func(r *folderRecord, exists bool) error {
		if exists && (r.ID != "" || time.Since(r.Since) < time.Minute) {
			claimed = false
			return bus.ErrNoChange
		}
		*r = folderRecord{Owner: st.worker, Since: time.Now().UTC()}
		claimed = true
		return nil
	})
	return rec, claimed, err
}

func (st *stage) findFolder(ctx context.Context, parent, name string) (string, string, error) {
	q := fmt.Sprintf("name = '%s' and '%s' in parents and mimeType = '%s' and trashed = false", escapeQ(name), escapeQ(parent), folderMime)
	list, err := st.drive.Files.List().Q(q).Fields("files(id,webViewLink)").SupportsAllDrives(true).
		IncludeItemsFromAllDrives(true).Corpora("allDrives").PageSize(10).Context(ctx).Do()
	if err != nil {
		return "", "", err
	}
	if len(list.Files) == 0 {
		return "", "", nil
	}
	return list.Files[0].Id, list.Files[0].WebViewLink, nil
}

// existing finds a file already uploaded for this Zoom file, by its tag.
func (st *stage) existing(ctx context.Context, key string) (*drive.File, error) {
	q := fmt.Sprintf("appProperties has { key='zoomFileKey' and value='%s' } and trashed = false", escapeQ(key))
	list, err := st.drive.Files.List().Q(q).Fields("files(" + fileFields + ")").SupportsAllDrives(true).
		IncludeItemsFromAllDrives(true).Corpora("allDrives").PageSize(10).Context(ctx).Do()
	if err != nil {
		return nil, err
	}
	if len(list.Files) == 0 {
		return nil, nil
	}
	return list.Files[0], nil
}

// escapeQ escapes a value for a Drive query: ' and \ get a backslash.
func escapeQ(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}
