package standins

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Drive is a stand-in of Drive v3 as ../shared/reference/google.md §1, §4 and §8
// describe it: files get/list (a q subset)/create/delete with fields and size as a
// string; resumable sessions that take PUT and POST, answer 308 with or without
// Range (or 200 plus X-Http-Status-Code-Override under X-GUploader-No-308), status
// queries, partial acceptance, a week's expiry; multipart uploads; shared drives;
// and the service-account storage-quota refusal. File bodies are hashed as they
// arrive, never kept.
type Drive struct {
	Server *httptest.Server
	Token  *GoogleToken
	// SessionTTL is how long an upload session lives; a week by default.
	SessionTTL time.Duration

	mu       sync.Mutex
	files    map[string]*DriveFile
	sessions map[string]*session
	faults   []*DriveFault
	full     bool // see SetFull
	nextID   int
	received int64 // body bytes taken by upload sessions, repeats included
}

// DriveFile is a file or folder as the stand-in holds it.
type DriveFile struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	MimeType      string            `json:"mimeType"`
	Parents       []string          `json:"parents,omitempty"`
	AppProperties map[string]string `json:"appProperties,omitempty"`
	Description   string            `json:"description,omitempty"`
	Size          int64             `json:"-"`
	MD5           string            `json:"-"`
	Trashed       bool              `json:"trashed"`
	DriveID       string            `json:"driveId,omitempty"`
	Owner         string            `json:"-"` // the impersonated user, or "" for the service account

	// ContentHints is taken on create and update and, as Drive does, never sent back;
	// fullText queries search its indexableText.
	ContentHints *DriveContentHints `json:"contentHints,omitempty"`
	// Body is the content of a text file (up to keptBody bytes) or the text of a
	// Google Doc converted on upload; alt=media serves the first, fullText searches both.
	Body []byte `json:"-"`
	// Permissions are the grants permissions.create made (the owner's is implied).
	Permissions []DrivePermission `json:"-"`
}

// DrivePermission is one grant; Notified says Drive mailed the grantee.
type DrivePermission struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	Role         string `json:"role"`
	EmailAddress string `json:"emailAddress,omitempty"`
	Notified     bool   `json:"-"`
}

// DriveContentHints is contentHints; IndexableText is "limited to 128KB in length".
type DriveContentHints struct {
	IndexableText string `json:"indexableText,omitempty"`
}

const (
	// maxIndexable is Drive's documented limit of contentHints.indexableText, read
	// as 128 KiB; the stand-in refuses more rather than guess what Drive keeps.
	maxIndexable = 128 << 10
	docMime      = "application/vnd.google-apps.document"
	keptBody     = 4 << 20
)

type session struct {
	meta     DriveFile
	total    int64 // -1 when unknown
	received int64
	md5      hash.Hash
	started  time.Time
	done     *DriveFile
	query    string // the initiation's query: fields and friends
	media    string // X-Upload-Content-Type
	body     []byte // kept for a text file or a Google Doc (keepsBody)
}

// DriveFault changes the next Times answers of one kind of request: "chunk"
// (a PUT/POST with bytes), "status" (a status query), "init" (a session start),
// "create", "list", "get", "delete", "update", "share" (permissions.create) or
// "shares" (permissions.list).
type DriveFault struct {
	Kind    string
	Times   int
	Status  int    // answer with this status and a Drive error body
	Reason  string // errors[0].reason, e.g. rateLimitExceeded, userRateLimitExceeded
	Message string
	// Accept stores only this many bytes of a chunk (a multiple of 256 KiB) and
	// answers 308 with the Range actually stored.
	Accept int64
	// Cut drops the connection after storing the chunk, before answering.
	Cut bool
	// Drop stores nothing of the chunk; the 308's Range tells what the session
	// holds, and has no Range while it holds nothing.
	Drop bool
	// Corrupt stores the chunk's bytes altered: the file's md5Checksum will differ.
	Corrupt bool
}

const folderMime = "application/vnd.google-apps.folder"

// NewDrive starts the stand-in; tokens are checked against tok.
func NewDrive(tok *GoogleToken) *Drive {
	d := &Drive{Token: tok, SessionTTL: 7 * 24 * time.Hour, files: map[string]*DriveFile{}, sessions: map[string]*session{}}
	d.Server = newServer(http.HandlerFunc(d.serve))
	return d
}

// URL is GOOGLE_API_URL for the stand-in.
func (d *Drive) URL() string { return d.Server.URL + "/" }

// Close stops the stand-in.
func (d *Drive) Close() { d.Server.Close() }

// AddFolder makes a folder, in a shared drive when shared is true, and returns its id.
func (d *Drive) AddFolder(name string, shared bool) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := &DriveFile{ID: d.newID(), Name: name, MimeType: folderMime, Owner: "admin@example.org"}
	if shared {
		f.DriveID = "0AStandinSharedDrive"
	}
	d.files[f.ID] = f
	return f.ID
}

// Put stores a file of data under parent, as an upload would, and returns its id.
func (d *Drive) Put(parent, name string, data []byte) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	sum := md5.Sum(data)
	f := &DriveFile{ID: d.newID(), Name: name, MimeType: "application/octet-stream", Parents: []string{parent},
		Size: int64(len(data)), MD5: hex.EncodeToString(sum[:]), DriveID: d.files[parent].DriveID}
	d.files[f.ID] = f
	return f.ID
}

// Trash moves a file to Drive's trash, as a person does in Drive's web page.
func (d *Drive) Trash(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.files[id]; ok {
		f.Trashed = true
	}
}

// Inject queues a fault.
func (d *Drive) Inject(f DriveFault) {
	if f.Times == 0 {
		f.Times = 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = append(d.faults, &f)
}

// ExpireSessions makes every open upload session answer 404, as after a week.
func (d *Drive) ExpireSessions() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sessions {
		s.started = time.Now().Add(-d.SessionTTL - time.Minute)
	}
}

// Files are the files and folders not trashed, sorted by id.
func (d *Drive) Files() []DriveFile {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []DriveFile
	for _, f := range d.files {
		if !f.Trashed {
			out = append(out, *f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Path is a file's folder path from its topmost folder, e.g. "Root/2026/2026-03/x".
func (d *Drive) Path(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var parts []string
	for f := d.files[id]; f != nil; {
		parts = append([]string{f.Name}, parts...)
		if len(f.Parents) == 0 {
			break
		}
		f = d.files[f.Parents[0]]
	}
	return strings.Join(parts, "/")
}

// Received is the number of body bytes upload sessions took, repeats included.
func (d *Drive) Received() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.received
}

// Sessions is the number of upload sessions started.
func (d *Drive) Sessions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sessions)
}

func (d *Drive) newID() string {
	d.nextID++
	return fmt.Sprintf("1StandIn%06dxYz", d.nextID)
}

func (d *Drive) takeFault(kind string) *DriveFault {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, f := range d.faults {
		if f.Kind == kind {
			if f.Times--; f.Times <= 0 {
				d.faults = append(d.faults[:i], d.faults[i+1:]...)
			}
			return f
		}
	}
	return nil
}

// driveError writes Google's error body, which googleapi.CheckResponse reads.
func driveError(w http.ResponseWriter, status int, reason, msg string) {
	if reason == "" {
		reason = map[int]string{400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound", 429: "rateLimitExceeded"}[status]
		if reason == "" {
			reason = "backendError"
		}
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	domain := "global"
	if strings.Contains(reason, "RateLimit") || strings.Contains(reason, "rateLimit") {
		domain = "usageLimits"
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"errors": []map[string]string{{"domain": domain, "reason": reason, "message": msg}},
		"code":   status, "message": msg,
	}})
}

func (d *Drive) serve(w http.ResponseWriter, r *http.Request) {
	grant, ok := d.Token.Grant(r)
	if !ok {
		driveError(w, 401, "authError", "Invalid Credentials")
		return
	}
	if !driveScoped(grant.Scopes, r.Method == http.MethodGet) {
		scopeInsufficient(w, "drive.googleapis.com")
		return
	}
	path := r.URL.Path
	switch {
	case path == "/upload/drive/v3/files" && r.URL.Query().Get("upload_id") != "":
		d.chunk(w, r)
	case path == "/upload/drive/v3/files":
		d.startUpload(w, r, grant)
	case path == "/drive/v3/files" && r.Method == http.MethodGet:
		d.list(w, r)
	case path == "/drive/v3/files" && r.Method == http.MethodPost:
		d.create(w, r, grant)
	case strings.HasPrefix(path, "/drive/v3/files/"):
		id := strings.TrimPrefix(path, "/drive/v3/files/")
		d.one(w, r, id)
	default:
		driveError(w, 404, "notFound", "Not Found")
	}
}

// driveScoped tells whether a token's scopes reach Drive: the drive scope for
// anything, the metadata read-only one for reads.
func driveScoped(scopes []string, read bool) bool {
	return contains(scopes, "https://www.googleapis.com/auth/drive") ||
		read && contains(scopes, "https://www.googleapis.com/auth/drive.metadata.readonly")
}

// scopeInsufficient is Google's refusal of a token without the scope a call
// needs: the Drive v3 error list, and the google.rpc status and reason newer
// clients read.
func scopeInsufficient(w http.ResponseWriter, service string) {
	const msg = "Request had insufficient authentication scopes."
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusForbidden)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"errors": []map[string]string{{"domain": "global", "reason": "insufficientPermissions", "message": "Insufficient Permission"}},
		"code":   http.StatusForbidden, "message": msg, "status": "PERMISSION_DENIED",
		"details": []map[string]any{{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
			"domain": "googleapis.com", "metadata": map[string]string{"service": service}}},
	}})
}

// DeleteByHand deletes a file for good, as a person does in Drive's web page.
func (d *Drive) DeleteByHand(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.files, id)
}

// ClearFaults drops every fault not yet used.
func (d *Drive) ClearFaults() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = nil
}

// SetFull uses up (true) or frees the storage quota: while full, every upload
// (session start, chunk, media create) is refused with 403 storageQuotaExceeded;
// folders, which take no space, are still made.
func (d *Drive) SetFull(full bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full = full
}

// refuseFull answers an upload while the storage is full.
func (d *Drive) refuseFull(w http.ResponseWriter) bool {
	d.mu.Lock()
	full := d.full
	d.mu.Unlock()
	if full {
		driveError(w, http.StatusForbidden, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded.")
	}
	return full
}

func (d *Drive) fault(w http.ResponseWriter, kind string) bool {
	if f := d.takeFault(kind); f != nil && f.Status != 0 {
		driveError(w, f.Status, f.Reason, f.Message)
		return true
	}
	return false
}

// placed checks the parent and the owner's right to store there.
func (d *Drive) placed(meta *DriveFile, grant TokenGrant) (int, string, string) {
	if len(meta.Parents) > 1 {
		return 403, "teamDrivesParentLimit", "A shared drive item must have exactly one parent."
	}
	if len(meta.Parents) == 1 {
		p, ok := d.files[meta.Parents[0]]
		if !ok || p.MimeType != folderMime || p.Trashed {
			return 404, "notFound", "File not found: " + meta.Parents[0] + "."
		}
		meta.DriveID = p.DriveID
	}
	for k, v := range meta.AppProperties {
		if len(k)+len(v) > 124 || !utf8.ValidString(v) {
			return 400, "badRequest", "The size of the property " + k + " exceeds the 124 bytes limit."
		}
	}
	if status, reason, msg := hintsFit(meta.ContentHints); status != 0 {
		return status, reason, msg
	}
	meta.Owner = grant.Subject
	if meta.MimeType != folderMime && grant.Subject == "" && meta.DriveID == "" {
		return 403, "storageQuotaExceeded", "Service Accounts do not have storage quota. Leverage shared drives (https://developers.google.com/workspace/drive/api/guides/about-shareddrives), or use OAuth delegation (http://support.google.com/a/answer/7281227) instead."
	}
	return 0, "", ""
}

func (d *Drive) startUpload(w http.ResponseWriter, r *http.Request, grant TokenGrant) {
	q := r.URL.Query()
	switch q.Get("uploadType") {
	case "multipart":
		d.multipart(w, r, grant)
		return
	case "resumable":
	default:
		driveError(w, 400, "badRequest", "Invalid uploadType")
		return
	}
	if r.Method != http.MethodPost || d.fault(w, "init") || d.refuseFull(w) {
		if r.Method != http.MethodPost {
			driveError(w, 405, "", "")
		}
		return
	}
	var meta DriveFile
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		if err := json.Unmarshal(b, &meta); err != nil {
			driveError(w, 400, "parseError", "Parse Error")
			return
		}
	}
	total := int64(-1)
	if v := r.Header.Get("X-Upload-Content-Length"); v != "" {
		total, _ = strconv.ParseInt(v, 10, 64)
	}
	d.mu.Lock()
	status, reason, msg := d.placed(&meta, grant)
	if status != 0 {
		d.mu.Unlock()
		driveError(w, status, reason, msg)
		return
	}
	if meta.MimeType == "" {
		meta.MimeType = r.Header.Get("X-Upload-Content-Type")
	}
	media := r.Header.Get("X-Upload-Content-Type")
	if status, reason, msg := convertible(meta.MimeType, media); status != 0 {
		d.mu.Unlock()
		driveError(w, status, reason, msg)
		return
	}
	id := randomToken()
	q.Set("upload_id", id)
	d.sessions[id] = &session{meta: meta, total: total, md5: md5.New(), started: time.Now(), query: q.Encode(), media: media}
	d.mu.Unlock()
	w.Header().Set("Location", d.Server.URL+"/upload/drive/v3/files?"+q.Encode())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// chunk takes a PUT or POST to a session: bytes, or a status query.
func (d *Drive) chunk(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		driveError(w, 405, "", "")
		return
	}
	d.mu.Lock()
	s := d.sessions[r.URL.Query().Get("upload_id")]
	expired := s != nil && time.Since(s.started) > d.SessionTTL
	d.mu.Unlock()
	if s == nil || expired {
		driveError(w, 404, "notFound", "Upload session not found or expired")
		return
	}
	cr := r.Header.Get("Content-Range")
	first, last, total, ok := parseContentRange(cr)
	if !ok {
		driveError(w, 400, "badRequest", "Invalid Content-Range: "+cr)
		return
	}
	if first < 0 { // a status query: bytes */N
		if d.fault(w, "status") {
			return
		}
		d.mu.Lock()
		if total >= 0 && s.done == nil && total == s.received {
			d.finalize(s)
		}
		d.mu.Unlock()
		d.answer(w, r, s)
		return
	}
	if d.refuseFull(w) {
		io.Copy(io.Discard, r.Body)
		return
	}
	f := d.takeFault("chunk")
	if f != nil && f.Status != 0 {
		io.Copy(io.Discard, r.Body)
		driveError(w, f.Status, f.Reason, f.Message)
		return
	}
	d.mu.Lock()
	if total >= 0 {
		s.total = total
	}
	final := s.total >= 0 && last+1 == s.total
	size := last - first + 1
	switch {
	case s.done != nil:
		d.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		d.answer(w, r, s)
		return
	case first > s.received:
		d.mu.Unlock()
		driveError(w, 400, "badRequest", fmt.Sprintf("Invalid Content-Range: starts at %d, %d bytes received", first, s.received))
		return
	case !final && size%(256<<10) != 0:
		d.mu.Unlock()
		driveError(w, 400, "badRequest", "Chunk size must be a multiple of 256 KiB except for the final chunk")
		return
	}
	keep := size
	if f != nil && f.Accept > 0 {
		keep = min(f.Accept, size)
	}
	if f != nil && f.Drop {
		keep = 0
	}
	d.mu.Unlock()
	// Hash the part beyond what is already stored, up to keep bytes.
	skip := s.received - first
	body := io.LimitReader(r.Body, size)
	n, err := io.CopyN(io.Discard, body, skip)
	d.mu.Lock()
	d.received += n
	d.mu.Unlock()
	if err != nil {
		return
	}
	var sink io.Writer = s.md5
	if keepsBody(s.meta.MimeType, s.media) {
		sink = io.MultiWriter(s.md5, &sessionBody{s: s, d: d})
	}
	wrote, err := io.CopyN(sink, body, max(0, keep-skip))
	if f != nil && f.Corrupt {
		s.md5.Write([]byte{0xff})
	}
	rest, _ := io.Copy(io.Discard, body)
	d.mu.Lock()
	d.received += wrote + rest
	s.received += wrote
	if err == nil && s.total >= 0 && s.received == s.total {
		d.finalize(s)
	}
	d.mu.Unlock()
	if f != nil && f.Cut {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
		return
	}
	d.answer(w, r, s)
}

// answer is 308 with Range (none when nothing is stored), or the file when done.
func (d *Drive) answer(w http.ResponseWriter, r *http.Request, s *session) {
	d.mu.Lock()
	done, received, query := s.done, s.received, s.query
	d.mu.Unlock()
	if done != nil {
		q, _ := url.ParseQuery(query)
		writeFile(w, http.StatusCreated, *done, q.Get("fields"))
		return
	}
	if received > 0 {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", received-1))
	}
	w.Header().Set("Content-Length", "0")
	if r.Header.Get("X-GUploader-No-308") == "yes" {
		w.Header().Set("X-Http-Status-Code-Override", "308")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusPermanentRedirect)
}

// finalize turns a complete session into a file; d.mu is held.
func (d *Drive) finalize(s *session) {
	f := s.meta
	f.ID, f.Size, f.MD5 = d.newID(), s.received, hex.EncodeToString(s.md5.Sum(nil))
	keep(&f, s.media, s.body)
	d.files[f.ID] = &f
	s.done = &f
}

func (d *Drive) multipart(w http.ResponseWriter, r *http.Request, grant TokenGrant) {
	if d.fault(w, "create") || d.refuseFull(w) {
		return
	}
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		driveError(w, 400, "badRequest", "multipart/related body expected")
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var meta DriveFile
	part, err := mr.NextPart()
	if err != nil || json.NewDecoder(part).Decode(&meta) != nil {
		driveError(w, 400, "parseError", "Parse Error")
		return
	}
	part, err = mr.NextPart()
	if err != nil {
		driveError(w, 400, "badRequest", "media part missing")
		return
	}
	sum := md5.New()
	var kept bytes.Buffer
	n, _ := io.Copy(io.MultiWriter(sum, &limitedBuffer{&kept}), part)
	media := part.Header.Get("Content-Type")
	if status, reason, msg := convertible(meta.MimeType, media); status != 0 {
		driveError(w, status, reason, msg)
		return
	}
	d.mu.Lock()
	if status, reason, msg := d.placed(&meta, grant); status != 0 {
		d.mu.Unlock()
		driveError(w, status, reason, msg)
		return
	}
	if meta.MimeType == "" {
		meta.MimeType = part.Header.Get("Content-Type")
	}
	meta.ID, meta.Size, meta.MD5 = d.newID(), n, hex.EncodeToString(sum.Sum(nil))
	if keepsBody(meta.MimeType, media) {
		keep(&meta, media, kept.Bytes())
	}
	d.files[meta.ID] = &meta
	d.received += n
	d.mu.Unlock()
	writeFile(w, http.StatusOK, meta, r.URL.Query().Get("fields"))
}

func (d *Drive) create(w http.ResponseWriter, r *http.Request, grant TokenGrant) {
	if d.fault(w, "create") {
		return
	}
	var meta DriveFile
	if err := json.NewDecoder(r.Body).Decode(&meta); err != nil {
		driveError(w, 400, "parseError", "Parse Error")
		return
	}
	d.mu.Lock()
	if status, reason, msg := d.placed(&meta, grant); status != 0 {
		d.mu.Unlock()
		driveError(w, status, reason, msg)
		return
	}
	meta.ID = d.newID()
	d.files[meta.ID] = &meta
	d.mu.Unlock()
	writeFile(w, http.StatusOK, meta, r.URL.Query().Get("fields"))
}

func (d *Drive) one(w http.ResponseWriter, r *http.Request, id string) {
	if file, ok := strings.CutSuffix(id, "/permissions"); ok {
		d.permissions(w, r, file)
		return
	}
	copyF, ok := d.found(w, id)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet:
		if d.fault(w, "get") {
			return
		}
		if r.URL.Query().Get("alt") == "media" {
			d.media(w, copyF)
			return
		}
		writeFile(w, http.StatusOK, copyF, r.URL.Query().Get("fields"))
	case http.MethodPatch:
		d.update(w, r, id)
	case http.MethodDelete:
		if d.fault(w, "delete") {
			return
		}
		d.mu.Lock()
		delete(d.files, id)
		d.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		driveError(w, 405, "", "")
	}
}

func (d *Drive) list(w http.ResponseWriter, r *http.Request) {
	if d.fault(w, "list") {
		return
	}
	q := r.URL.Query()
	match, err := parseQuery(q.Get("q"))
	if err != nil {
		driveError(w, 400, "invalid", "Invalid Value: "+err.Error())
		return
	}
	d.mu.Lock()
	var out []map[string]any
	ids := make([]string, 0, len(d.files))
	for id := range d.files {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fields := q.Get("fields")
	inner := ""
	if i := strings.Index(fields, "files("); i >= 0 {
		inner = strings.TrimSuffix(fields[i+len("files("):], ")")
		inner = inner[:strings.Index(inner+")", ")")]
	}
	for _, id := range ids {
		f := d.files[id]
		if f.DriveID != "" && q.Get("supportsAllDrives") != "true" {
			continue
		}
		if match(f) {
			out = append(out, fileJSON(*f, inner))
		}
	}
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]any{"kind": "drive#fileList", "incompleteSearch": false, "files": out})
}

func writeFile(w http.ResponseWriter, status int, f DriveFile, fields string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(fileJSON(f, fields))
}

// fileJSON is the file's resource with only the fields asked for (by default
// kind, id, name and mimeType); size is a JSON string, as Drive sends it.
func fileJSON(f DriveFile, fields string) map[string]any {
	all := map[string]any{"kind": "drive#file", "id": f.ID, "name": f.Name, "mimeType": f.MimeType, "trashed": f.Trashed}
	if len(f.Parents) > 0 {
		all["parents"] = f.Parents
	}
	if len(f.AppProperties) > 0 {
		all["appProperties"] = f.AppProperties
	}
	if f.Description != "" {
		all["description"] = f.Description
	}
	if f.DriveID != "" {
		all["driveId"] = f.DriveID
	}
	if f.MimeType == folderMime {
		all["webViewLink"] = "https://drive.google.com/drive/folders/" + f.ID
	} else if f.MimeType == docMime {
		all["webViewLink"] = "https://docs.google.com/document/d/" + f.ID + "/edit?usp=drivesdk"
	} else {
		all["size"] = strconv.FormatInt(f.Size, 10)
		all["md5Checksum"] = f.MD5
		all["webViewLink"] = "https://drive.google.com/file/d/" + f.ID + "/view?usp=drivesdk"
	}
	keep := []string{"kind", "id", "name", "mimeType"}
	if fields != "" && fields != "*" {
		keep = strings.Split(fields, ",")
	} else if fields == "*" {
		return all
	}
	out := map[string]any{}
	for _, k := range keep {
		if v, ok := all[strings.TrimSpace(k)]; ok {
			out[strings.TrimSpace(k)] = v
		}
	}
	return out
}

// parseContentRange reads "bytes a-b/N", "bytes a-b/*", "bytes */N" or "bytes */*";
// first is -1 for a status query, total -1 when unknown.
func parseContentRange(v string) (first, last, total int64, ok bool) {
	v, ok = strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	rng, tot, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		var err error
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, 0, false
		}
	}
	if rng == "*" {
		return -1, -1, total, true
	}
	a, b, ok := strings.Cut(rng, "-")
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || last < first {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// parseQuery understands the q terms zoomarchive uses, joined by "and":
// name = '…', '…' in parents, trashed = true|false, mimeType = '…' / != '…',
// appProperties has { key='…' and value='…' }, fullText contains '…'.
func parseQuery(q string) (func(*DriveFile) bool, error) {
	var terms []func(*DriveFile) bool
	rest := strings.TrimSpace(q)
	for rest != "" {
		var term func(*DriveFile) bool
		switch {
		case strings.HasPrefix(rest, "appProperties has {"):
			body, after, ok := strings.Cut(strings.TrimPrefix(rest, "appProperties has {"), "}")
			if !ok {
				return nil, fmt.Errorf("unclosed {")
			}
			k, v, err := parseKeyValue(body)
			if err != nil {
				return nil, err
			}
			term = func(f *DriveFile) bool { return f.AppProperties[k] == v }
			rest = after
		case strings.HasPrefix(rest, "fullText contains "):
			s, after, err := quoted(strings.TrimPrefix(rest, "fullText contains "))
			if err != nil {
				return nil, err
			}
			term = func(f *DriveFile) bool { return fullText(f, s) }
			rest = after
		case strings.HasPrefix(rest, "'"):
			s, after, err := quoted(rest)
			if err != nil {
				return nil, err
			}
			after = strings.TrimSpace(after)
			if !strings.HasPrefix(after, "in parents") {
				return nil, fmt.Errorf("expected 'in parents'")
			}
			term = func(f *DriveFile) bool { return contains(f.Parents, s) }
			rest = strings.TrimPrefix(after, "in parents")
		default:
			field, after, _ := strings.Cut(rest, " ")
			after = strings.TrimSpace(after)
			op := "="
			if strings.HasPrefix(after, "!=") {
				op = "!="
			}
			after = strings.TrimSpace(strings.TrimPrefix(after, op))
			var val string
			var err error
			switch {
			case strings.HasPrefix(after, "'"):
				val, after, err = quoted(after)
			case strings.HasPrefix(after, "true"), strings.HasPrefix(after, "false"):
				val, after, _ = strings.Cut(after, " ")
			default:
				err = fmt.Errorf("value expected after %s", field)
			}
			if err != nil {
				return nil, err
			}
			get := map[string]func(*DriveFile) string{
				"name":     func(f *DriveFile) string { return f.Name },
				"mimeType": func(f *DriveFile) string { return f.MimeType },
				"trashed":  func(f *DriveFile) string { return strconv.FormatBool(f.Trashed) },
			}[field]
			if get == nil {
				return nil, fmt.Errorf("unsupported field %q", field)
			}
			term = func(f *DriveFile) bool { return (get(f) == val) == (op == "=") }
			rest = after
		}
		terms = append(terms, term)
		rest = strings.TrimSpace(rest)
		if rest != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, "and "); !ok {
				return nil, fmt.Errorf("expected 'and' at %q", rest)
			}
		}
	}
	return func(f *DriveFile) bool {
		for _, t := range terms {
			if !t(f) {
				return false
			}
		}
		return true
	}, nil
}

func parseKeyValue(body string) (string, string, error) {
	body = strings.TrimSpace(body)
	body, ok := strings.CutPrefix(body, "key=")
	if !ok {
		body, ok = strings.CutPrefix(body, "key =")
	}
	if !ok {
		return "", "", fmt.Errorf("key= expected")
	}
	k, after, err := quoted(strings.TrimSpace(body))
	if err != nil {
		return "", "", err
	}
	after = strings.TrimSpace(after)
	after, ok = strings.CutPrefix(after, "and ")
	if !ok {
		return "", "", fmt.Errorf("and value= expected")
	}
	after = strings.TrimSpace(after)
	after = strings.TrimPrefix(strings.TrimPrefix(after, "value"), " ")
	after = strings.TrimSpace(strings.TrimPrefix(after, "="))
	v, _, err := quoted(after)
	return k, v, err
}

// quoted reads a '…' string with \' and \\ escapes.
func quoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, "'") {
		return "", "", fmt.Errorf("quote expected")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '\'':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", fmt.Errorf("unclosed quote")
}

// hintsFit refuses an indexableText over Drive's limit.
func hintsFit(h *DriveContentHints) (int, string, string) {
	if h != nil && len(h.IndexableText) > maxIndexable {
		return 400, "badRequest", fmt.Sprintf("contentHints.indexableText is %d bytes; it is limited to 128KB", len(h.IndexableText))
	}
	return 0, "", ""
}

// convertible: an upload whose metadata asks for a Google Doc is converted from
// text or HTML; Drive refuses a media type it cannot convert.
func convertible(target, media string) (int, string, string) {
	if target != docMime {
		return 0, "", ""
	}
	if mt, _, _ := mime.ParseMediaType(media); mt == "text/html" || mt == "text/plain" {
		return 0, "", ""
	}
	return 400, "badRequest", "Conversion of " + media + " to " + docMime + " is not supported."
}

// keepsBody: the stand-in keeps a text file's bytes and a Google Doc's text.
func keepsBody(target, media string) bool {
	return target == docMime || strings.HasPrefix(target, "text/") || target == "" && strings.HasPrefix(media, "text/")
}

// keep stores what keepsBody allows on f; a converted Doc holds its text (HTML's
// paragraphs as lines) and, like every Google Doc, no md5Checksum.
func keep(f *DriveFile, media string, body []byte) {
	if f.MimeType != docMime {
		if len(body) < keptBody && int64(len(body)) == f.Size {
			f.Body = body
		}
		return
	}
	f.Size, f.MD5 = 0, ""
	if mt, _, _ := mime.ParseMediaType(media); mt == "text/html" {
		body = htmlText(body)
	}
	f.Body = body
}

// htmlText is the text of an HTML body, a line per paragraph.
func htmlText(b []byte) []byte {
	var out bytes.Buffer
	in := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '<':
			in = true
			if bytes.HasPrefix(b[i:], []byte("</p>")) {
				out.WriteByte('\n')
			}
		case c == '>':
			in = false
		case !in:
			out.WriteByte(c)
		}
	}
	r := strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#34;", `"`, "&#39;", "'", "&amp;", "&")
	return []byte(r.Replace(out.String()))
}

// sessionBody collects a resumable session's bytes, up to keptBody; d.mu guards it.
type sessionBody struct {
	s *session
	d *Drive
}

func (b *sessionBody) Write(p []byte) (int, error) {
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	if len(b.s.body)+len(p) <= keptBody {
		b.s.body = append(b.s.body, p...)
	}
	return len(p), nil
}

// limitedBuffer keeps up to keptBody bytes and takes (drops) the rest.
type limitedBuffer struct{ b *bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.b.Len()+len(p) <= keptBody {
		l.b.Write(p)
	}
	return len(p), nil
}

// media answers alt=media: a kept text file's bytes. A Google Doc is refused as
// Drive refuses it (export is the way); other bodies are not kept by the stand-in.
func (d *Drive) media(w http.ResponseWriter, f DriveFile) {
	switch {
	case f.MimeType == docMime:
		driveError(w, 403, "fileNotDownloadable", "Only files with binary content can be downloaded. Use Export with Docs Editors files.")
	case f.Body == nil && f.Size > 0:
		driveError(w, 501, "notImplemented", "the Drive stand-in keeps the bytes of text files only")
	default:
		w.Header().Set("Content-Type", f.MimeType)
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
		w.Write(f.Body)
	}
}

// update is files.update (PATCH): name, description, appProperties (merged; a
// null value removes the key) and contentHints.
func (d *Drive) update(w http.ResponseWriter, r *http.Request, id string) {
	if d.fault(w, "update") {
		return
	}
	var patch struct {
		Name          string             `json:"name"`
		Description   *string            `json:"description"`
		AppProperties map[string]*string `json:"appProperties"`
		ContentHints  *DriveContentHints `json:"contentHints"`
	}
	if err := json.NewDecoder(r.Body).Decode(&patch); err != nil {
		driveError(w, 400, "parseError", "Parse Error")
		return
	}
	if status, reason, msg := hintsFit(patch.ContentHints); status != 0 {
		driveError(w, status, reason, msg)
		return
	}
	d.mu.Lock()
	f, ok := d.files[id]
	if !ok {
		d.mu.Unlock()
		driveError(w, 404, "notFound", "File not found: "+id+".")
		return
	}
	if patch.Name != "" {
		f.Name = patch.Name
	}
	if patch.Description != nil {
		f.Description = *patch.Description
	}
	for k, v := range patch.AppProperties {
		if f.AppProperties == nil {
			f.AppProperties = map[string]string{}
		}
		if v == nil {
			delete(f.AppProperties, k)
		} else {
			f.AppProperties[k] = *v
		}
	}
	if patch.ContentHints != nil {
		f.ContentHints = patch.ContentHints
	}
	out := *f
	d.mu.Unlock()
	writeFile(w, http.StatusOK, out, r.URL.Query().Get("fields"))
}

// fullText: the words in the name, the description, the indexable text or the
// body, letter case and runs of spaces aside (Drive matches words and phrases).
func fullText(f *DriveFile, words string) bool {
	norm := func(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }
	hay := f.Name + "\n" + f.Description + "\n" + string(f.Body)
	if f.ContentHints != nil {
		hay += "\n" + f.ContentHints.IndexableText
	}
	return strings.Contains(norm(hay), norm(words))
}

// Search is what Drive's search box finds for words (fullText contains), files
// not trashed, sorted by id.
func (d *Drive) Search(words string) []DriveFile {
	var out []DriveFile
	for _, f := range d.Files() {
		if fullText(&f, words) {
			out = append(out, f)
		}
	}
	return out
}

// found is a copy of file id, or false once it has answered 404 as Drive does.
func (d *Drive) found(w http.ResponseWriter, id string) (DriveFile, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.files[id]
	if !ok {
		driveError(w, 404, "notFound", "File not found: "+id+".")
		return DriveFile{}, false
	}
	return *f, true
}

// permissions is permissions.create (POST, with sendNotificationEmail, true unless
// said) and permissions.list (GET) of a file or folder.
func (d *Drive) permissions(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := d.found(w, id); !ok {
		return
	}
	switch r.Method {
	case http.MethodGet:
		if d.fault(w, "shares") {
			return
		}
		d.mu.Lock()
		perms := append([]DrivePermission{}, d.files[id].Permissions...)
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		json.NewEncoder(w).Encode(map[string]any{"kind": "drive#permissionList", "permissions": perms})
	case http.MethodPost:
		if d.fault(w, "share") {
			return
		}
		var p DrivePermission
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			driveError(w, 400, "parseError", "Parse Error")
			return
		}
		roles := map[string]bool{"reader": true, "commenter": true, "writer": true, "fileOrganizer": true, "organizer": true}
		types := map[string]bool{"user": true, "group": true, "domain": true, "anyone": true}
		if !roles[p.Role] || !types[p.Type] || (p.Type == "user" || p.Type == "group") && !strings.Contains(p.EmailAddress, "@") {
			driveError(w, 400, "invalidSharingRequest", "Bad Request. User message: \"The permission is not valid.\"")
			return
		}
		p.Notified = r.URL.Query().Get("sendNotificationEmail") != "false"
		d.mu.Lock()
		f, ok := d.files[id]
		if ok {
			p.ID = fmt.Sprintf("perm%d", len(f.Permissions)+1)
			f.Permissions = append(f.Permissions, p)
		}
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		json.NewEncoder(w).Encode(p)
	default:
		driveError(w, 405, "", "")
	}
}
