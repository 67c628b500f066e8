package standins

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"zoomarchive/shared/events"
)

// Zoom is a stand-in of Zoom's Server-to-Server OAuth, recordings API and download
// hosts, following ../shared/reference/zoom.md:
//
//	POST   {API}/oauth/token                          Basic client auth; grant in the body or the query
//	GET    {API}/v2/meetings/{uuid}/recordings        include_fields=download_access_token
//	DELETE {API}/v2/meetings/{uuid}/recordings        action=trash|delete; 204
//	GET    {API}/rec/download/{file id}               Bearer token; 302 to a signed URL on {CDN}
//	GET    {CDN}/file/{file id}?Policy=&Signature=    the bytes, with Range; ignores Authorization
//
// UUIDs that start with '/' or contain '//' must arrive double-encoded; errors are
// {"code","message"} (OAuth ones {"reason","error"}); 429 carries Retry-After as a
// date-time. Faults are injected with Inject.
type Zoom struct {
	AccountID, ClientID, ClientSecret string
	TokenTTL                          time.Duration // access token lifetime; an hour by default
	// RejectS2SDownloads makes downloads accept only download_access_token.
	RejectS2SDownloads bool
	// NoRange makes the CDN ignore Range headers and always send the whole file.
	NoRange bool
	// RaggedPages makes every other page of a listing shorter than page_size, as
	// Zoom's sometimes are.
	RaggedPages bool
	rate        int64 // see SetRate

	API, CDN *httptest.Server

	mu          sync.Mutex
	recordings  map[string]*zoomRecording // by meeting UUID
	users       []ZoomUser
	transcribes map[string]bool      // hosts with cloud audio transcription on, by id
	files       map[string]*zoomFile // by file id
	tokens      map[string]time.Time // S2S access tokens and their expiry
	dlTokens    map[string]time.Time // download_access_tokens
	faults      []*Fault
	scopes      string // see SetScopes
	newSecret   string // see SetClientSecret
	calls       []Call
	signKey     []byte
	bytesServed int64     // file bytes the CDN sent
	next        time.Time // when the rate allows the next byte

	storage []ZoomStorageDay // see SetStorage
}

type zoomRecording struct {
	rec     events.Recording
	trashed bool
	deleted bool
}

type zoomFile struct {
	meeting  string
	content  Content
	ready    time.Time // until then Zoom is still making it: listed as processing, not served
	unlisted bool      // until ready, not listed at all
}

// Call is one request the stand-in answered.
type Call struct {
	Host, Method, Path, Query, Range string
	Status                           int
	At                               time.Time // when the request arrived
}

// Fault changes the next Times answers to requests whose path starts with Path
// (e.g. "/file/", "/v2/meetings/", "/oauth/token", "/rec/download/").
type Fault struct {
	Path        string
	Times       int
	Status      int           // answer with this status (and a Zoom error body) instead
	RetryAfter  string        // with Status 429: the Retry-After value
	DailyLimit  bool          // with Status 429: a daily limit's answer (X-RateLimit-Type: Daily-limit), not the per-second one
	CutAfter    int64         // send this many body bytes, then drop the connection
	Stall       time.Duration // wait this long before answering
	ExtraBytes  int64         // CDN: send this many bytes more than the file (a wrong length)
	ShortBytes  int64         // CDN: send this many bytes fewer, with a matching Content-Length
	StallMidway time.Duration // CDN: after CutAfter bytes, stall instead of dropping
}

// NewZoom starts the two hosts on loopback; Close stops them.
func NewZoom() *Zoom {
	z := &Zoom{
		AccountID: "standin-account", ClientID: "standin-client", ClientSecret: "standin-client-secret",
		TokenTTL: time.Hour,
		scopes: "cloud_recording:read:list_recording_files:admin cloud_recording:delete:meeting_recording:admin " +
			"cloud_recording:read:list_user_recordings:admin user:read:list_users:admin cloud_recording:update:recover_meeting_recordings:admin " +
			"user:read:settings:admin " + ScopeStorageReport,
		recordings: map[string]*zoomRecording{}, files: map[string]*zoomFile{}, transcribes: map[string]bool{},
		tokens: map[string]time.Time{}, dlTokens: map[string]time.Time{},
		signKey: []byte(randomToken()),
	}
	z.API = newServer(http.HandlerFunc(z.serveAPI))
	z.CDN = newServer(http.HandlerFunc(z.serveCDN))
	return z
}

// Close stops both hosts.
func (z *Zoom) Close() {
	z.API.CloseClientConnections()
	z.CDN.CloseClientConnections()
	z.API.Close()
	z.CDN.Close()
}

// OAuthURL, APIURL are the settings fetch needs (ZOOM_OAUTH_URL, ZOOM_API_URL).
func (z *Zoom) OAuthURL() string { return z.API.URL + "/oauth/token" }
func (z *Zoom) APIURL() string   { return z.API.URL + "/v2" }

// FileSpec describes one file of a recording to add.
type FileSpec struct {
	ID            string // empty: no id, as Zoom sends some CC and TIMELINE entries
	FileType      string
	Extension     string
	RecordingType string
	Size          int64
	Participant   string // non-empty: a participant_audio_files entry with this name
	Start, End    time.Time
	NoSize        bool // omit file_size
	Unlisted      bool // with AddLateFile: absent from Zoom's lists until made, not listed as processing

	// Text is the file's bytes (a transcript's WEBVTT) instead of generated ones; Size is its length.
	Text string
}

// AddRecording registers a finished recording and returns it as Zoom's webhook and
// API would describe it.
func (z *Zoom) AddRecording(r events.Recording, files ...FileSpec) events.Recording {
	z.mu.Lock()
	defer z.mu.Unlock()
	r.RecordingFiles, r.ParticipantAudioFiles, r.TotalSize, r.RecordingCount = nil, nil, 0, 0
	rec := &zoomRecording{rec: r}
	for _, f := range files {
		z.addFile(rec, f, time.Time{})
	}
	z.recordings[r.UUID] = rec
	return rec.rec
}

// AddLateFile adds a file Zoom makes after the recording, as it makes the audio
// transcript: listed as processing, without a size (or with f.Unlisted not at
// all), until after has passed, then completed. It returns the recording as the file's own event describes it
// (recording.transcript_completed: that file only).
func (z *Zoom) AddLateFile(uuid string, f FileSpec, after time.Duration) events.Recording {
	z.mu.Lock()
	defer z.mu.Unlock()
	rec := z.recordings[uuid]
	rf := z.addFile(rec, f, time.Now().Add(after))
	only := rec.rec
	only.RecordingFiles, only.ParticipantAudioFiles = []events.RecordingFile{rf}, nil
	only.RecordingCount, only.TotalSize = 1, rf.FileSize
	return only
}

// addFile adds one file to rec, ready at ready (at once when zero).
func (z *Zoom) addFile(rec *zoomRecording, f FileSpec, ready time.Time) events.RecordingFile {
	r := &rec.rec
	i := len(r.RecordingFiles) + len(r.ParticipantAudioFiles)
	key := f.ID
	if key == "" {
		key = fmt.Sprintf("noid-%s-%d", events.MeetingKey(r.UUID), i)
	}
	start, end := f.Start, f.End
	if start.IsZero() {
		start, end = r.StartTime, r.StartTime.Add(time.Duration(r.Duration)*time.Minute)
	}
	rf := events.RecordingFile{
		ID: f.ID, MeetingUUID: r.UUID, RecordingStart: &start, RecordingEnd: &end,
		FileType: f.FileType, FileExtension: f.Extension, RecordingType: f.RecordingType,
		Status: events.FileCompleted, DownloadURL: z.API.URL + "/rec/download/" + url.PathEscape(key),
	}
	if !f.NoSize {
		rf.FileSize = events.Int64(f.Size)
	}
	if f.FileType != events.FileTimeline {
		rf.PlayURL = z.API.URL + "/rec/play/" + url.PathEscape(key)
	}
	seed := int64(len(z.files)+1)*7919 + int64(i)
	content := Content{Seed: seed, Size: f.Size}
	if f.Text != "" {
		content = Content{Text: []byte(f.Text), Size: int64(len(f.Text))}
		f.Size = content.Size
		if !f.NoSize {
			rf.FileSize = events.Int64(f.Size)
		}
	}
	z.files[key] = &zoomFile{meeting: r.UUID, content: content, ready: ready, unlisted: f.Unlisted}
	r.TotalSize += events.Int64(f.Size)
	r.RecordingCount++
	if f.Participant != "" {
		rf.FileName, rf.MeetingUUID, rf.RecordingType = f.Participant, "", ""
		r.ParticipantAudioFiles = append(r.ParticipantAudioFiles, rf)
	} else {
		r.RecordingFiles = append(r.RecordingFiles, rf)
	}
	return rf
}

// view is a recording as the API shows it now: a file not ready yet is processing,
// without a size. The caller holds z.mu.
func (z *Zoom) view(rec *zoomRecording) events.Recording {
	r := rec.rec
	r.RecordingFiles = nil
	for _, f := range rec.rec.RecordingFiles {
		if zf := z.files[fileKey(f.DownloadURL)]; zf != nil && time.Now().Before(zf.ready) {
			r.TotalSize -= events.Int64(zf.content.Size)
			if zf.unlisted {
				r.RecordingCount--
				continue
			}
			f.Status, f.FileSize = "processing", 0
		}
		r.RecordingFiles = append(r.RecordingFiles, f)
	}
	return r
}

func fileKey(downloadURL string) string {
	key, _ := url.PathUnescape(downloadURL[strings.LastIndex(downloadURL, "/")+1:])
	return key
}

// SetTranscription turns cloud audio transcription on or off for a host, as the
// user's recording settings show it (recording_audio_transcript).
func (z *Zoom) SetTranscription(hostID string, on bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.transcribes[hostID] = on
}

// userSettings is GET /users/{userId}/settings, the recording part of it.
func (z *Zoom) userSettings(w http.ResponseWriter, r *http.Request) {
	if !z.authorized(r, true, false) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	user, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/users/"), "/settings"))
	z.mu.Lock()
	on := z.transcribes[user]
	z.mu.Unlock()
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]any{"recording": map[string]any{
		"local_recording": true, "cloud_recording": true, "record_audio_file": true,
		"recording_audio_transcript": on, "save_chat_text": true, "auto_recording": "none",
	}})
}

// Content is the byte source of a file (by id, or by its download URL's last part).
func (z *Zoom) Content(fileID string) Content {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.files[fileID].content
}

// ZoomUser is an account user; recordings belong to one through their host_id.
type ZoomUser struct {
	ID     string `json:"id"`
	Email  string `json:"email"`
	Status string `json:"status"` // active, inactive, pending
}

// AddUser registers a user of the account.
func (z *Zoom) AddUser(u ZoomUser) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.users = append(z.users, u)
}

// listUsers is GET /users: status (active by default), page_size (30, at most 300)
// and next_page_token ("" on the last page).
func (z *Zoom) listUsers(w http.ResponseWriter, r *http.Request) {
	if !z.authorized(r, true, false) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	q := r.URL.Query()
	status := q.Get("status")
	if status == "" {
		status = "active"
	}
	z.mu.Lock()
	var match []any
	for _, u := range z.users {
		if u.Status == status {
			match = append(match, u)
		}
	}
	z.mu.Unlock()
	z.page(w, q, match, "users", nil)
}

// userRecordings is GET /users/{userId}/recordings: from and to (yyyy-mm-dd, UTC,
// at most a month apart), page_size, next_page_token; newest first.
func (z *Zoom) userRecordings(w http.ResponseWriter, r *http.Request) {
	if !z.authorized(r, true, false) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	user, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/users/"), "/recordings"))
	q := r.URL.Query()
	if q.Get("trash") == "true" { // the trash: no dates
		z.mu.Lock()
		var recs []events.Recording
		for _, rec := range z.recordings {
			if (rec.rec.HostID == user || rec.rec.HostEmail == user) && rec.trashed && !rec.deleted {
				recs = append(recs, z.view(rec))
			}
		}
		z.mu.Unlock()
		z.page(w, q, newestFirst(recs), "meetings", nil)
		return
	}
	from, err1 := time.Parse("2006-01-02", q.Get("from"))
	to, err2 := time.Parse("2006-01-02", q.Get("to"))
	if err1 != nil || err2 != nil || to.Before(from) || to.After(from.AddDate(0, 1, 0)) {
		apiError(w, 400, 300, "The maximum range can be a month.")
		return
	}
	z.mu.Lock()
	var recs []events.Recording
	for _, rec := range z.recordings {
		day := rec.rec.StartTime.UTC().Truncate(24 * time.Hour)
		if (rec.rec.HostID == user || rec.rec.HostEmail == user) && !rec.trashed && !day.Before(from) && !day.After(to) {
			recs = append(recs, z.view(rec))
		}
	}
	z.mu.Unlock()
	z.page(w, q, newestFirst(recs), "meetings", map[string]any{"from": q.Get("from"), "to": q.Get("to")})
}

// newestFirst orders recordings as Zoom lists them, so pages stay stable.
func newestFirst(recs []events.Recording) []any {
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].StartTime.Equal(recs[j].StartTime) {
			return recs[i].StartTime.After(recs[j].StartTime)
		}
		return recs[i].UUID < recs[j].UUID
	})
	items := make([]any, len(recs))
	for i, rec := range recs {
		items[i] = rec
	}
	return items
}

// page answers one page of items under key, with Zoom's paging fields.
func (z *Zoom) page(w http.ResponseWriter, q url.Values, items []any, key string, extra map[string]any) {
	size, _ := strconv.Atoi(q.Get("page_size"))
	if size <= 0 {
		size = 30
	}
	size = min(size, 300)
	start, n := 0, 0
	if tok := q.Get("next_page_token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if _, perr := fmt.Sscanf(string(b), "%d/%d", &start, &n); err != nil || perr != nil || start > len(items) {
			apiError(w, 400, 300, "Invalid next_page_token.")
			return
		}
	}
	take := size
	if z.RaggedPages && n%2 == 1 {
		take = max(1, size/2)
	}
	end := min(start+take, len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d/%d", end, n+1)))
	}
	out := map[string]any{"page_size": size, "total_records": len(items), "next_page_token": next, key: items[start:end]}
	for k, v := range extra {
		out[k] = v
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	json.NewEncoder(w).Encode(out)
}

// Inject queues a fault; faults apply in the order injected.
func (z *Zoom) Inject(f Fault) {
	if f.Times == 0 {
		f.Times = 1
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.faults = append(z.faults, &f)
}

// Garble makes the API list one field of a file as raw, a value that does not
// parse (file_size 5.24288e5, say), as if Zoom sent it so.
func (z *Zoom) Garble(uuid, fileID, field, raw string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for i, f := range z.recordings[uuid].rec.RecordingFiles {
		if f.ID != fileID {
			continue
		}
		if field == "file_size" {
			f.FileSize = 0
		}
		f.Extra = map[string]json.RawMessage{field: json.RawMessage(raw)}
		z.recordings[uuid].rec.RecordingFiles[i] = f
	}
}

// TrashByHand moves a recording to the trash as an admin would in Zoom's web portal.
func (z *Zoom) TrashByHand(uuid string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.recordings[uuid].trashed = true
}

// DeleteByHand deletes a recording for good, as an admin does in Zoom's trash.
func (z *Zoom) DeleteByHand(uuid string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.recordings[uuid].trashed, z.recordings[uuid].deleted = true, true
}

// ClearFaults drops every fault not yet used.
func (z *Zoom) ClearFaults() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.faults = nil
}

// ExpireTokens makes every access token issued so far invalid, as an hour would.
func (z *Zoom) ExpireTokens() {
	z.mu.Lock()
	defer z.mu.Unlock()
	for t := range z.tokens {
		z.tokens[t] = time.Now().Add(-time.Second)
	}
}

// Calls are the requests answered so far.
func (z *Zoom) Calls() []Call {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]Call(nil), z.calls...)
}

// CallsTo counts answered requests with this method whose path starts with prefix.
func (z *Zoom) CallsTo(method, prefix string) (n int) {
	for _, c := range z.Calls() {
		if c.Method == method && strings.HasPrefix(c.Path, prefix) {
			n++
		}
	}
	return n
}

// Trashed tells whether a recording was moved to the trash (or deleted).
func (z *Zoom) Trashed(uuid string) (trashed, deleted bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	r := z.recordings[uuid]
	return r.trashed, r.deleted
}

// BytesServed is the number of file bytes the CDN sent.
func (z *Zoom) BytesServed() int64 {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.bytesServed
}

func (z *Zoom) takeFault(path string) *Fault {
	z.mu.Lock()
	defer z.mu.Unlock()
	for i, f := range z.faults {
		if strings.HasPrefix(path, f.Path) {
			f.Times--
			if f.Times <= 0 {
				z.faults = append(z.faults[:i], z.faults[i+1:]...)
			}
			return f
		}
	}
	return nil
}

func (z *Zoom) record(r *http.Request, status int, at time.Time) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.calls = append(z.calls, Call{Host: r.Host, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Range: r.Header.Get("Range"), Status: status, At: at})
}

// statusWriter remembers the status for the call log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

func (z *Zoom) serveAPI(w http.ResponseWriter, r *http.Request) {
	sw, at := &statusWriter{ResponseWriter: w, status: 200}, time.Now()
	defer func() { z.record(r, sw.status, at) }()
	w = sw
	w.Header().Set("x-zm-trackingid", "v=2.0;clid=us06;rid=STANDIN_"+randomToken()[:16])
	if f := z.takeFault(r.URL.Path); f != nil {
		time.Sleep(f.Stall)
		if f.Status != 0 {
			z.fail(w, f)
			return
		}
	}
	switch {
	case r.URL.Path == "/oauth/token":
		z.token(w, r)
	case strings.HasPrefix(r.URL.Path, "/v2/meetings/"):
		z.meetingRecordings(w, r)
	case r.URL.Path == "/v2/users":
		z.listUsers(w, r)
	case strings.HasPrefix(r.URL.Path, "/v2/users/") && strings.HasSuffix(r.URL.Path, "/recordings"):
		z.userRecordings(w, r)
	case strings.HasPrefix(r.URL.Path, "/v2/users/") && strings.HasSuffix(r.URL.Path, "/settings"):
		z.userSettings(w, r)
	case strings.HasPrefix(r.URL.Path, "/rec/download/"):
		z.download(w, r)
	case r.URL.Path == "/v2/report/cloud_recording":
		z.storageReport(w, r)
	default:
		apiError(w, http.StatusNotFound, 124, "Not found")
	}
}

func (z *Zoom) fail(w http.ResponseWriter, f *Fault) {
	switch f.Status {
	case http.StatusTooManyRequests:
		w.Header().Set("X-RateLimit-Category", "Light")
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.DailyLimit {
			w.Header().Set("X-RateLimit-Type", "Daily-limit")
			apiError(w, 429, 429, "You have exceeded the daily rate limit (6000) of Light API requests permitted for this particular account. Try again later.")
			return
		}
		w.Header().Set("X-RateLimit-Type", "QPS")
		apiError(w, 429, 429, "You have reached the maximum per-second rate limit for this API. Try again later.")
	case http.StatusUnauthorized:
		apiError(w, 401, 124, "Invalid access token.")
	default:
		apiError(w, f.Status, f.Status, http.StatusText(f.Status))
	}
}

func apiError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
}

func oauthError(w http.ResponseWriter, status int, reason, errCode string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"reason": reason, "error": errCode})
}

func (z *Zoom) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, 405, "Method not allowed", "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	z.mu.Lock()
	want := z.clientSecret()
	z.mu.Unlock()
	if !ok || id != z.ClientID || secret != want {
		oauthError(w, 401, "Invalid client_id or client_secret", "invalid_client")
		return
	}
	r.ParseForm() // the grant may be in the body or the query
	if r.Form.Get("grant_type") != "account_credentials" {
		oauthError(w, 400, "Unsupported grant type", "unsupported_grant_type")
		return
	}
	if r.Form.Get("account_id") != z.AccountID {
		oauthError(w, 400, "Invalid account_id", "invalid_request")
		return
	}
	tok := randomToken()
	z.mu.Lock()
	z.tokens[tok] = time.Now().Add(z.TokenTTL)
	scopes := z.scopes
	z.mu.Unlock()
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "token_type": "bearer", "expires_in": int(z.TokenTTL.Seconds()),
		"scope":   scopes,
		"api_url": z.API.URL,
	})
}

// authorized checks a Bearer token (or access_token query) against S2S tokens and,
// when dl is true, download_access_tokens.
func (z *Zoom) authorized(r *http.Request, s2s, dl bool) bool {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if q := r.URL.Query().Get("access_token"); q != "" {
		tok = q
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	now := time.Now()
	if exp, ok := z.tokens[tok]; s2s && ok && now.Before(exp) {
		return true
	}
	if exp, ok := z.dlTokens[tok]; dl && ok && now.Before(exp) {
		return true
	}
	return false
}

// meetingUUID takes the {uuid} path segment the way Zoom does: decoded twice when
// it was encoded twice, and a UUID that starts with '/' or holds '//' is not found
// unless it was.
func meetingUUID(escapedPath string) (uuid string, ok bool) {
	seg := strings.TrimPrefix(escapedPath, "/v2/meetings/")
	seg, _, _ = strings.Cut(seg, "/")
	once, err := url.PathUnescape(seg)
	if err != nil {
		return "", false
	}
	if !strings.Contains(once, "%") {
		return once, !strings.HasPrefix(once, "/") && !strings.Contains(once, "//")
	}
	twice, err := url.PathUnescape(once)
	return twice, err == nil
}

func (z *Zoom) meetingRecordings(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/recordings/status") && r.Method == http.MethodPut {
		z.recover(w, r)
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/recordings") {
		apiError(w, 404, 124, "Not found")
		return
	}
	if !z.authorized(r, true, false) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	uuid, ok := meetingUUID(r.URL.EscapedPath())
	z.mu.Lock()
	rec := z.recordings[uuid]
	var now events.Recording
	if rec != nil {
		now = z.view(rec)
	}
	z.mu.Unlock()
	// A trashed recording is gone for reading and for trashing; only a delete for good
	// still reaches it.
	if !ok || rec == nil || rec.deleted || rec.trashed && (r.Method == http.MethodGet || r.URL.Query().Get("action") != "delete") {
		apiError(w, 404, 3301, "There is no recording for this meeting.")
		return
	}
	switch r.Method {
	case http.MethodGet:
		var m map[string]json.RawMessage
		b, _ := json.Marshal(now)
		json.Unmarshal(b, &m)
		if strings.Contains(r.URL.Query().Get("include_fields"), "download_access_token") {
			tok := randomToken()
			z.mu.Lock()
			z.dlTokens[tok] = time.Now().Add(24 * time.Hour)
			z.mu.Unlock()
			m["download_access_token"], _ = json.Marshal(tok)
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		json.NewEncoder(w).Encode(m)
	case http.MethodDelete:
		z.mu.Lock()
		switch r.URL.Query().Get("action") {
		case "", "trash":
			rec.trashed = true
		case "delete":
			rec.trashed, rec.deleted = true, true
		default:
			z.mu.Unlock()
			apiError(w, 400, 300, "Invalid action")
			return
		}
		z.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		apiError(w, 405, 405, "Method not allowed")
	}
}

// recover is PUT /meetings/{uuid}/recordings/status {"action":"recover"}: a
// trashed recording comes back; one deleted for good does not.
func (z *Zoom) recover(w http.ResponseWriter, r *http.Request) {
	if !z.authorized(r, true, false) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	var body struct{ Action string }
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Action != "recover" {
		apiError(w, 400, 300, "Invalid action")
		return
	}
	uuid, ok := meetingUUID(strings.TrimSuffix(r.URL.EscapedPath(), "/status"))
	z.mu.Lock()
	defer z.mu.Unlock()
	rec := z.recordings[uuid]
	if !ok || rec == nil || rec.deleted || !rec.trashed {
		apiError(w, 404, 3301, "There is no recording for this meeting.")
		return
	}
	rec.trashed = false
	w.WriteHeader(http.StatusNoContent)
}

func (z *Zoom) download(w http.ResponseWriter, r *http.Request) {
	if !z.authorized(r, !z.RejectS2SDownloads, true) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	id, _ := url.PathUnescape(strings.TrimPrefix(r.URL.Path, "/rec/download/"))
	z.mu.Lock()
	f := z.files[id]
	gone := f == nil || z.recordings[f.meeting].trashed || time.Now().Before(f.ready)
	z.mu.Unlock()
	if gone {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		io.WriteString(w, "<html><body>This recording does not exist.</body></html>")
		return
	}
	exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	policy := base64.RawURLEncoding.EncodeToString([]byte(`{"file":"` + id + `","exp":` + exp + `}`))
	http.Redirect(w, r, z.CDN.URL+"/file/"+url.PathEscape(id)+"?Policy="+policy+"&Signature="+z.sign(policy)+
		"&Key-Pair-Id=STANDIN&response-content-type=video%2Fmp4", http.StatusFound)
}

func (z *Zoom) sign(policy string) string {
	mac := hmac.New(sha256.New, z.signKey)
	mac.Write([]byte(policy))
	return hex.EncodeToString(mac.Sum(nil))
}

func (z *Zoom) serveCDN(w http.ResponseWriter, r *http.Request) {
	sw, at := &statusWriter{ResponseWriter: w, status: 200}, time.Now()
	defer func() { z.record(r, sw.status, at) }()
	w = sw
	id, _ := url.PathUnescape(strings.TrimPrefix(r.URL.Path, "/file/"))
	q := r.URL.Query()
	if !hmac.Equal([]byte(z.sign(q.Get("Policy"))), []byte(q.Get("Signature"))) {
		http.Error(w, "<Error><Code>AccessDenied</Code></Error>", http.StatusForbidden)
		return
	}
	z.mu.Lock()
	f := z.files[id]
	z.mu.Unlock()
	if f == nil {
		http.Error(w, "<Error><Code>NoSuchKey</Code></Error>", http.StatusNotFound)
		return
	}
	fault := z.takeFault(r.URL.Path)
	if fault != nil {
		time.Sleep(fault.Stall)
		if fault.Status != 0 {
			z.fail(w, fault)
			return
		}
	}
	c := f.content
	size := c.Size
	if fault != nil {
		size += fault.ExtraBytes - fault.ShortBytes
	}
	var start int64
	if rg := r.Header.Get("Range"); rg != "" && !z.NoRange {
		v, ok := strings.CutPrefix(rg, "bytes=")
		from, rest, _ := strings.Cut(v, "-")
		n, err := strconv.ParseInt(from, 10, 64)
		if !ok || rest != "" || err != nil || n >= size {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size-1, size))
	}
	w.Header().Set("Content-Type", q.Get("response-content-type"))
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.FormatInt(size-start, 10))
	if start > 0 {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	body := io.MultiReader(c.Reader(min(start, c.Size)), zeros(max(0, size-max(start, c.Size))))
	body = io.LimitReader(body, size-start)
	if fault != nil && fault.CutAfter > 0 {
		n, _ := io.Copy(w, io.LimitReader(body, fault.CutAfter))
		z.addServed(n)
		http.NewResponseController(sw.ResponseWriter).Flush()
		if fault.StallMidway > 0 {
			time.Sleep(fault.StallMidway)
		}
		// Drop the connection mid-body, as a cut link does.
		if conn, _, err := http.NewResponseController(sw.ResponseWriter).Hijack(); err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
		return
	}
	n, _ := io.Copy(w, z.paced(body))
	z.addServed(n)
}

// SetClientSecret changes the app's secret, as regenerating it in the Marketplace
// does: the old one is refused from then on.
func (z *Zoom) SetClientSecret(secret string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.newSecret = secret
}

// clientSecret is the secret in force; the caller holds z.mu.
func (z *Zoom) clientSecret() string {
	if z.newSecret != "" {
		return z.newSecret
	}
	return z.ClientSecret
}

// SetScopes sets what the app was granted, as the token answer lists them
// (space-separated); by default every scope fetch uses.
func (z *Zoom) SetScopes(scopes string) {
	z.mu.Lock()
	z.scopes = scopes
	z.mu.Unlock()
}

// SetRate limits the CDN to bytes a second over all downloads, as a droplet's link
// would; 0 is as fast as loopback goes.
func (z *Zoom) SetRate(bytes int64) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rate = bytes
}

// paced reads at most the set rate, shared by every download.
func (z *Zoom) paced(r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		n, err := r.Read(p[:min(len(p), 32<<10)])
		z.mu.Lock()
		rate := z.rate
		if rate <= 0 {
			z.mu.Unlock()
			return n, err
		}
		if z.next.IsZero() || time.Until(z.next) < -time.Second {
			z.next = time.Now()
		}
		z.next = z.next.Add(time.Duration(n) * time.Second / time.Duration(rate))
		wait := time.Until(z.next)
		z.mu.Unlock()
		time.Sleep(wait)
		return n, err
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func (z *Zoom) addServed(n int64) {
	z.mu.Lock()
	z.bytesServed += n
	z.mu.Unlock()
}

type zeroReader struct{ n int64 }

func zeros(n int64) io.Reader { return &zeroReader{n} }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ScopeStorageReport is the scope of GET /report/cloud_recording.
const ScopeStorageReport = "report:read:cloud_recording:admin"

// ZoomStorageDay is one day of the cloud recording usage report, its sizes
// written as Zoom writes them ("412.5 GB", "1 TB").
type ZoomStorageDay struct {
	Date      string `json:"date"`
	Usage     string `json:"usage"`
	PlanUsage string `json:"plan_usage"`
	FreeUsage string `json:"free_usage"`
}

// SetStorage sets the days the usage report answers (within from and to).
func (z *Zoom) SetStorage(days ...ZoomStorageDay) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.storage = days
}

// storageReport is GET /report/cloud_recording?from&to: the account's cloud
// recording storage by day; without ScopeStorageReport, Zoom's 4711.
func (z *Zoom) storageReport(w http.ResponseWriter, r *http.Request) {
	if !z.authorized(r, true, false) {
		apiError(w, 401, 124, "Invalid access token.")
		return
	}
	z.mu.Lock()
	granted := strings.Fields(z.scopes)
	days := append([]ZoomStorageDay(nil), z.storage...)
	z.mu.Unlock()
	if !contains(granted, ScopeStorageReport) {
		apiError(w, 403, 4711, "Invalid access token, does not contain scopes:["+ScopeStorageReport+"].")
		return
	}
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if from == "" || to == "" {
		apiError(w, 300, 300, "The from and to fields are required.")
		return
	}
	var in []ZoomStorageDay
	for _, d := range days {
		if d.Date >= from && d.Date <= to {
			in = append(in, d)
		}
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]any{"from": from, "to": to, "cloud_recording_storage": in})
}
