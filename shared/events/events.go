// Package events is the pipeline's contract: the streams, the subjects, the headers
// and the message types every stage reads or writes. A reader should learn the
// whole pipeline's wire format from this one file.
package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// MaxPayload bounds one message on the broker, headers included: room for a 1 MiB
// webhook body and for chunk messages of a few MiB. nats-server warns above 8 MiB.
const MaxPayload = 8 << 20

// MaxChunkData bounds one chunk message's bytes (FETCH_CHUNK_SIZE), leaving room
// under MaxPayload for its headers; upload pulls one such message at a time at least.
const MaxChunkData = 4 << 20

// MaxEventBody bounds a webhook body the hook stores (HOOK_MAX_BODY at most): Zoom's
// are a few KiB, a recording with many participant audio files some tens.
const MaxEventBody = 1 << 20

// MaxHeaders is the room a message's headers may take beside its body.
const MaxHeaders = 64 << 10

// MaxRecord bounds one message of every stream but CHUNKS, and one job value,
// headers included: nothing but chunks needs more.
const MaxRecord = MaxEventBody + MaxHeaders

// MaxControlLine bounds a protocol line: a program's CONNECT carries its JWT, which
// holds its whole permission list, past the server's default of 4 KiB.
const MaxControlLine = 16 << 10

// ZOOM_EVENTS keeps every verified webhook, body byte for byte, for replays.
const (
	StreamZoomEvents   = "ZOOM_EVENTS"
	SubjectZoomEvents  = "zoom.event.>"
	subjectZoomPrefix  = "zoom.event."
	HeaderZoomRequest  = "Zm-Request-Id"        // x-zm-request-id as Zoom sent it ("" when absent)
	HeaderZoomTime     = "Zm-Request-Timestamp" // x-zm-request-timestamp, epoch seconds
	HeaderNatsMsgID    = "Nats-Msg-Id"          // JetStream dedupe id
	ZoomEventsDedupMin = 90 * time.Minute       // Zoom's last retry comes about 85 min after the first try
)

// FETCH_JOBS: one message per file to download, on archive.fetch.<file key>. A work
// queue: each job is with one fetch worker at a time, redelivered if it dies.
const (
	StreamFetchJobs  = "FETCH_JOBS"
	SubjectFetchJobs = "archive.fetch.>"
	HeaderRestart    = "Archive-Restart" // "true": start the file over from byte 0 (upload lost its chunks)
)

// HeaderBackfill marks a recording event that fetch backfill made from Zoom's
// recordings list rather than Zoom sending it; it is handled the same way.
const HeaderBackfill = "Archive-Backfill"

// BackfillKey holds fetch backfill's cursor in the job bucket.
const BackfillKey = "backfill.cursor"

// ReconcileKey marks the day's reconciliation as taken by one fetch worker.
func ReconcileKey(day string) string { return "reconcile." + day }

// CHUNKS: the window between fetch and upload, on archive.chunk.<file key>: the file's
// bytes in order, then one final message with no body. A work queue bounded by
// CHUNK_WINDOW bytes; upload acknowledges a chunk once Drive has its bytes.
const (
	StreamChunks     = "CHUNKS"
	SubjectChunks    = "archive.chunk.>"
	HeaderFile       = "Archive-File"       // file key
	HeaderGeneration = "Archive-Generation" // bumped each time the file starts over from byte 0
	HeaderOffset     = "Archive-Offset"     // offset of the chunk's first byte in the file
	HeaderFinal      = "Archive-Final"      // "true" on the closing message
	HeaderSize       = "Archive-Size"       // final: the file's length
	HeaderMD5        = "Archive-Md5"        // final: hex MD5 of the bytes fetch read, what Drive must report as md5Checksum
)

// Chunk is what the headers of a CHUNKS message say.
type Chunk struct {
	File       string
	Generation int
	Offset     int64
	// The final message's: the whole file's length and MD5.
	Final bool
	Size  int64
	MD5   string
}

// Msg is the chunk's message carrying data (none for the final one).
func (c Chunk) Msg(data []byte) *nats.Msg {
	m := &nats.Msg{Subject: ChunkSubject(c.File), Data: data, Header: nats.Header{}}
	m.Header.Set(HeaderFile, c.File)
	m.Header.Set(HeaderGeneration, strconv.Itoa(c.Generation))
	m.Header.Set(HeaderOffset, strconv.FormatInt(c.Offset, 10))
	if c.Final {
		m.Header.Set(HeaderFinal, "true")
		m.Header.Set(HeaderSize, strconv.FormatInt(c.Size, 10))
		m.Header.Set(HeaderMD5, c.MD5)
	}
	return m
}

// ID is the chunk's dedupe id: one per generation and offset.
func (c Chunk) ID() string {
	if c.Final {
		return fmt.Sprintf("%s-g%d-final", c.File, c.Generation)
	}
	return fmt.Sprintf("%s-g%d-%d", c.File, c.Generation, c.Offset)
}

// ParseChunk reads a CHUNKS message's headers; a header missing or malformed is
// an error naming it.
func ParseChunk(h nats.Header) (Chunk, error) {
	c := Chunk{File: h.Get(HeaderFile), Final: h.Get(HeaderFinal) == "true"}
	if c.File == "" {
		return c, fmt.Errorf("chunk without %s", HeaderFile)
	}
	var err error
	num := func(name string) int64 {
		v, perr := strconv.ParseInt(h.Get(name), 10, 64)
		if perr != nil || v < 0 {
			err = errors.Join(err, fmt.Errorf("chunk header %s %q: not a count", name, h.Get(name)))
		}
		return v
	}
	c.Generation, c.Offset = int(num(HeaderGeneration)), num(HeaderOffset)
	if c.Final {
		c.Size, c.MD5 = num(HeaderSize), h.Get(HeaderMD5)
		if len(c.MD5) != 32 {
			err = errors.Join(err, fmt.Errorf("final chunk without its MD5 (%s %q)", HeaderMD5, c.MD5))
		}
	}
	return c, err
}

// ARCHIVE: what happened to files and recordings, kept for notify and operators.
const (
	StreamArchive         = "ARCHIVE"
	subjFileVerified      = "archive.file.verified."
	subjFileFailed        = "archive.file.failed."
	subjRecordingArchived = "archive.recording.archived."
)

// ArchiveSubjects are the subjects of the ARCHIVE stream.
var ArchiveSubjects = []string{"archive.file.>", "archive.recording.>", "archive.alert.>", "archive.report.>"}

// SubjectReconcileReport carries fetch's ReconcileReport.
const SubjectReconcileReport = "archive.report.reconcile"

// SubjectDriveAudit carries upload's DriveAudit.
const SubjectDriveAudit = "archive.report.drive-audit"

// DriveAudit: what upload's daily audit found when it looked for every verified
// file in Drive by its zoomFileKey tag.
type DriveAudit struct {
	At       time.Time `json:"at"`
	Checked  int       `json:"checked"`
	Missing  []string  `json:"missing,omitempty"` // gone from Drive: archived again (or reported lost by fetch)
	Unsure   int       `json:"unsure,omitempty"`  // Drive did not answer for these
	Complete bool      `json:"complete"`
}

// AuditKey marks the day's Drive audit as taken by one upload worker.
func AuditKey(day string) string { return "audit." + day }

// FolderShare, at ShareKey in the job bucket, is upload's sharing of a
// recording's folder (DRIVE_SHARE_HOST): whom with, whether Drive took it, and the
// refusals so far. notify reads it for the archived mail and the digest.
type FolderShare struct {
	Recording  RecordingInfo `json:"recording"`
	FolderID   string        `json:"folder_id"`
	FolderLink string        `json:"folder_link,omitempty"`
	With       []Grant       `json:"with"`
	Notified   bool          `json:"notified,omitempty"` // Drive's own mail went to them
	Shared     bool          `json:"shared,omitempty"`   // Drive holds every grant
	Attempts   int           `json:"attempts,omitempty"` // refused tries
	LastError  string        `json:"last_error,omitempty"`
	GaveUp     bool          `json:"gave_up,omitempty"` // refused too often: to be shared by hand
	NextAt     time.Time     `json:"next_at,omitempty"`
	Owner      string        `json:"owner,omitempty"` // the upload worker sharing it now
	Since      time.Time     `json:"since,omitempty"`
	Updated    time.Time     `json:"updated"`
}

// Grant is one permission on a folder: Type user or group, Role reader or commenter.
type Grant struct {
	Email string `json:"email"`
	Type  string `json:"type"`
	Role  string `json:"role"`
}

// ShareKey holds a recording's FolderShare.
func ShareKey(meetingKey string) string { return "share." + meetingKey }

// ReconcileReport: what fetch's reconciliation found when it compared Zoom's
// recordings of the last Days days (and its trash) with the jobs and Drive.
type ReconcileReport struct {
	At              time.Time `json:"at"`
	Days            int       `json:"days"`
	Missing         []string  `json:"missing,omitempty"`            // in Zoom, no job
	Enqueued        int       `json:"enqueued"`                     // of the missing, queued now
	Stuck           []string  `json:"stuck,omitempty"`              // jobs in one state too long
	StillInZoom     []string  `json:"still_in_zoom,omitempty"`      // every file verified, yet not removed
	TrashNotInDrive []string  `json:"trash_not_in_drive,omitempty"` // in Zoom's trash, not all in Drive

	// Storage is the account's cloud recording storage.
	Storage *ZoomStorage `json:"storage,omitempty"`
}

// ZoomStorage is the account's cloud recording storage as Zoom's usage report
// says it on its last day (Date); NotKnown says why it is not known.
type ZoomStorage struct {
	NotKnown    string  `json:"not_known,omitempty"`
	Date        string  `json:"date,omitempty"`
	Used        string  `json:"used,omitempty"` // as Zoom writes it: "412.5 GB"
	Plan        string  `json:"plan,omitempty"`
	Percent     float64 `json:"percent"` // of the plan; -1 when the plan is no size
	Change      int64   `json:"change"`  // bytes since the day before
	ChangeKnown bool    `json:"change_known,omitempty"`
}

// AlertSubject carries an Alert of one kind, e.g. archive.alert.drive_daily_cap.
func AlertSubject(kind string) string { return "archive.alert." + kind }

// Alert kinds; stage_silent.<stage> names the stage.
const (
	AlertDriveDailyCap     = "drive_daily_cap"
	AlertDriveFull         = "drive_full"    // upload: Drive's storage is full
	AlertDriveRefused      = "drive_refused" // upload: Google refuses the key, or Drive a file for good
	AlertDriveShare        = "drive_share"   // upload: Drive keeps refusing to share a recording's folder
	AlertZoomRefused       = "zoom_refused"  // fetch: Zoom refuses the app's credentials or scopes
	AlertWebhooksMissing   = "webhooks_missing"
	AlertZoomStorage       = "zoom_storage" // notify: Zoom's cloud storage past NOTIFY_ZOOM_STORAGE_ALERT
	AlertWebhookRejections = "webhook_rejections"
	AlertChunkWindowFull   = "chunk_window_full"
	AlertBrokerFull        = "broker_full"         // notify: a stream that refuses new messages at its limit is nearly full
	AlertCertificate       = "certificate"         // notify: the domain's certificate is about to expire
	AlertGoogleKeyOld      = "google_key_old"      // notify: the Google key is older than KEY_MAX_AGE
	AlertGoogleKeyRotation = "google_key_rotation" // upload rotate-key failed
	AlertZoomDailyLimit    = "zoom_daily_limit"    // fetch: a daily rate limit of Zoom's is used up; requests wait for its reset
	AlertCredentialPrefix  = "credential."         // notify: a stage cannot use its new credential file; names the stage
	AlertStageSilentPrefix = "stage_silent."
	// fetch, one per recording (its meeting key follows): an event named files
	// Zoom's API does not list as the event says; and a recording kept in Zoom
	// because the proof before the trash failed (resolved once it goes).
	AlertEventMismatchPrefix = "event_mismatch."
	AlertTrashHeldPrefix     = "trash_held."
)

// Alert: something an admin should know about now. An alert that can clear is
// raised once when its condition begins (Since) and announced once more, with
// Resolved, when it ends; the open one is kept under AlertKey.
type Alert struct {
	Kind     string    `json:"kind"`
	Message  string    `json:"message"`
	Until    time.Time `json:"until,omitempty"` // when it ends by itself, if known
	At       time.Time `json:"at"`
	Since    time.Time `json:"since,omitempty"`
	Resolved bool      `json:"resolved,omitempty"`
}

// AlertKey holds the open alert of a kind in the job bucket.
func AlertKey(kind string) string { return "alert." + kind }

// The job bucket: file.<file key> holds a FileJob, rec.<meeting key> a RecordingJob,
// fetch.<file key> and upload.<file key> the stages' resume points (held under a
// lease), folder.<hash> a Drive folder's id, share.<meeting key> the sharing of a
// recording's folder. Updates use revision checks.
const BucketJobs = "ARCHIVE_JOBS"

// RestartMsg is a FETCH_JOBS work message that starts the file over from byte 0.
func RestartMsg(fileKey string) *nats.Msg {
	m := nats.NewMsg(FetchJobSubject(fileKey))
	m.Header.Set(HeaderRestart, "true")
	return m
}

// Dedupe ids (Nats-Msg-Id): one per fact, so that a stream drops a repeat within
// its duplicate window. notify names its mails after those on ARCHIVE.
func VerifiedID(fileKey string, generation int) string {
	return fmt.Sprintf("verified-%s-g%d", fileKey, generation)
}

// FetchFailedID: fetch gave the file up after attempts; UploadFailedID: upload did,
// in a generation.
func FetchFailedID(fileKey string, attempts int) string {
	return fmt.Sprintf("failed-%s-%d", fileKey, attempts)
}
func UploadFailedID(fileKey string, generation int) string {
	return fmt.Sprintf("failed-upload-%s-g%d", fileKey, generation)
}

// RefetchID: upload asks for the file again after generation; LostID: the audit
// found its Drive copy gone.
func RefetchID(fileKey string, generation int) string {
	return fmt.Sprintf("refetch-%s-g%d", fileKey, generation)
}
func LostID(fileKey string, generation int) string {
	return fmt.Sprintf("lost-%s-g%d", fileKey, generation)
}

// ResumeID: a file whose worker died, taken over in the lease period that starts at.
func ResumeID(fileKey string, at time.Time) string {
	return fmt.Sprintf("resume-%s-%d", fileKey, at.UnixNano())
}

// BackfillID: a recording backfill put on ZOOM_EVENTS.
func BackfillID(meetingKey string) string { return "backfill-" + meetingKey }

// Subjects and keys of one file or recording.
func FetchJobSubject(fileKey string) string     { return "archive.fetch." + fileKey }
func ChunkSubject(fileKey string) string        { return "archive.chunk." + fileKey }
func FileVerifiedSubject(fileKey string) string { return subjFileVerified + fileKey }
func FileFailedSubject(fileKey string) string   { return subjFileFailed + fileKey }
func RecordingArchivedSubject(meetingKey string) string {
	return subjRecordingArchived + meetingKey
}
func FileJobKey(fileKey string) string         { return "file." + fileKey }
func FactsKey(fileKey string) string           { return "facts." + fileKey }
func RecordingJobKey(meetingKey string) string { return "rec." + meetingKey }
func FetchProgressKey(fileKey string) string   { return "fetch." + fileKey }
func UploadProgressKey(fileKey string) string  { return "upload." + fileKey }

// FileKeyOf is the file key at the end of a FetchJobSubject, a ChunkSubject, a
// FetchProgressKey or an UploadProgressKey.
func FileKeyOf(name string) string {
	for _, prefix := range []string{FetchJobSubject(""), ChunkSubject(""), FetchProgressKey(""), UploadProgressKey("")} {
		if key, ok := strings.CutPrefix(name, prefix); ok {
			return key
		}
	}
	return ""
}

// HeartbeatKey holds a stage's Heartbeat; NotifyKey notify's own records (mails
// sent, mails over the hourly cap, the last digest).
func HeartbeatKey(stage string) string { return "heartbeat." + stage }
func NotifyKey(name string) string     { return "notify." + name }

// Heartbeat: a stage says it is alive, every half minute, with counters a watcher
// may read (the hook's rejected webhooks).
type Heartbeat struct {
	Stage  string           `json:"stage"`
	At     time.Time        `json:"at"`
	Stats  map[string]int64 `json:"stats,omitempty"`
	Faults []string         `json:"faults,omitempty"` // what the stage knows is wrong and waits for a person to fix
	// Credentials: what the stage uses, by name (Credential*), for the digest's ages
	// and for rotate-key, which waits until every holder of the Google key has the new one.
	Credentials map[string]Credential `json:"credentials,omitempty"`
}

// The credentials a stage names in its heartbeat.
const (
	CredentialGoogleKey     = "google_key"          // each of GoogleKeyHolders; ID is the key's private_key_id
	CredentialZoomClient    = "zoom_client_secret"  // fetch
	CredentialWebhookSecret = "zoom_webhook_secret" // the hook
	CredentialBroker        = "broker_identity"     // every stage; ID is the user's public key
)

// GoogleKeyHolders are the stages that each hold a Google key of their own (one
// identity per job): upload rotate-key rotates each and waits until its stage
// reports the new one under CredentialGoogleKey.
var GoogleKeyHolders = []string{IdentityUpload, IdentityFetch, IdentityNotify}

// Credential is what a stage says of a credential it uses, never the secret: which
// one (the Google key's id), and since when (its file last changed, or its issue).
type Credential struct {
	ID    string    `json:"id,omitempty"`
	Since time.Time `json:"since"`
	// Problem: the file holds something the stage could not take (why); the one
	// in use stays. RefusedID names it when it is a Google key.
	Problem   string `json:"problem,omitempty"`
	RefusedID string `json:"refused_id,omitempty"`
}

const folderKeyPrefix = "folder."

// FolderKey names a Drive folder by its parent and name, so that two workers never
// create twins.
func FolderKey(parentID, name string) string {
	sum := sha256.Sum256([]byte(parentID + "/" + name))
	return folderKeyPrefix + hex.EncodeToString(sum[:12])
}

// MeetingKey names a recording in subjects and keys: meeting UUIDs hold '/', '+'
// and '=', which neither may contain.
func MeetingKey(uuid string) string {
	sum := sha256.Sum256([]byte(uuid))
	return hex.EncodeToString(sum[:12])
}

// FileKey names a file in subjects and keys: Zoom's file id when it is a plain
// token, else a hash of it; CC and TIMELINE entries may come without an id, and then
// the meeting, type and start time name them.
func FileKey(meetingUUID string, f RecordingFile) string {
	if f.ID != "" && len(f.ID) <= 64 && isToken(f.ID) {
		return f.ID
	}
	name := f.ID
	if name == "" {
		start := ""
		if f.RecordingStart != nil {
			start = f.RecordingStart.UTC().Format(time.RFC3339)
		}
		name = strings.Join([]string{meetingUUID, f.FileType, f.FileExtension, f.RecordingType, start}, "|")
	}
	sum := sha256.Sum256([]byte(name))
	return "h" + hex.EncodeToString(sum[:16])
}

func isToken(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Job states of a file: fetch takes it from queued to fetched (every byte in CHUNKS),
// upload from fetched to verified; failed after the last attempt.
const (
	JobQueued   = "queued"
	JobFetching = "fetching"
	JobFetched  = "fetched"
	JobVerified = "verified"
	JobFailed   = "failed"
)

// RecordingInfo is what every message about a recording carries: enough to file,
// name and describe it without asking Zoom again.
type RecordingInfo struct {
	UUID      string    `json:"uuid"`
	MeetingID int64     `json:"meeting_id"`
	AccountID string    `json:"account_id,omitempty"`
	HostID    string    `json:"host_id,omitempty"`
	HostEmail string    `json:"host_email,omitempty"`
	Topic     string    `json:"topic"`
	Type      int64     `json:"type"`
	StartTime time.Time `json:"start_time"`
	Timezone  string    `json:"timezone,omitempty"`
	Duration  int64     `json:"duration"`
}

// Info is the recording without its files.
func (r Recording) Info() RecordingInfo {
	return RecordingInfo{UUID: r.UUID, MeetingID: int64(r.ID), AccountID: r.AccountID, HostID: r.HostID,
		HostEmail: r.HostEmail, Topic: r.Topic, Type: int64(r.Type), StartTime: r.StartTime,
		Timezone: r.Timezone, Duration: int64(r.Duration)}
}

// FileJob is one file's state in the job bucket. File.DownloadURL needs a token to
// use, but is still never logged.
type FileJob struct {
	Key         string        `json:"key"`
	Recording   RecordingInfo `json:"recording"`
	File        RecordingFile `json:"file"`
	Participant bool          `json:"participant,omitempty"` // from participant_audio_files
	EventSeq    uint64        `json:"event_seq"`             // the ZOOM_EVENTS message it came from
	State       string        `json:"state"`
	Generation  int           `json:"generation"` // see HeaderGeneration
	Attempts    int           `json:"attempts"`
	LastError   string        `json:"last_error,omitempty"`
	Size        int64         `json:"size,omitempty"`       // set when fetched
	MD5         string        `json:"md5,omitempty"`        // set when fetched
	DriveID     string        `json:"drive_id,omitempty"`   // set when verified
	DriveLink   string        `json:"drive_link,omitempty"` // set when verified
	FolderID    string        `json:"folder_id,omitempty"`  // set when verified
	FolderLink  string        `json:"folder_link,omitempty"`
	Mismatches  int           `json:"mismatches,omitempty"` // Drive copies that did not verify
	// Lost: upload's audit found the verified Drive copy gone; the file is archived
	// again, from Zoom's trash if need be.
	Lost bool `json:"lost,omitempty"`
	// Unannounced is the dedupe id of the failure announcement still to go out:
	// whichever stage finds a failed job with it sends it (bus.AnnounceFailure).
	Unannounced string    `json:"unannounced,omitempty"`
	Updated     time.Time `json:"updated"`
}

// FileFacts is fetch's own record of one file (FactsKey), which only fetch may
// write: the file as Zoom's API lists it (never as a webhook says), and what
// fetch read of it. Downloads and the trash decision rest on it, not on the
// FileJob, which upload writes too.
type FileFacts struct {
	Key         string        `json:"key"`
	File        RecordingFile `json:"file"`
	Participant bool          `json:"participant,omitempty"`
	// Planned counts the times Zoom's listing changed the file; bytes read under
	// an earlier count are not this file's.
	Planned int `json:"planned"`
	// What fetch read from Zoom under Planned, in Generation: set when fetched.
	Read       int       `json:"read,omitempty"` // the Planned the bytes were read under
	Generation int       `json:"generation,omitempty"`
	Size       int64     `json:"size,omitempty"`
	MD5        string    `json:"md5,omitempty"`
	Updated    time.Time `json:"updated"`
}

// Fetched tells whether f holds fetch's reading of the file as now planned.
func (f FileFacts) Fetched() bool { return f.MD5 != "" && f.Read == f.Planned }

// RecordingJob tracks one recording until Zoom's copy is dealt with.
type RecordingJob struct {
	Key        string        `json:"key"`
	Recording  RecordingInfo `json:"recording"`
	Files      []string      `json:"files"` // file keys
	State      string        `json:"state"` // RecArchiving, RecZoomPending, RecArchived
	ZoomAction string        `json:"zoom_action,omitempty"`
	ZoomCalls  int           `json:"zoom_calls,omitempty"` // times Zoom was asked to remove it
	TrashAt    time.Time     `json:"trash_at,omitempty"`   // with ZOOM_TRASH_AFTER: not before
	Owner      string        `json:"owner,omitempty"`      // the fetch worker that set RecZoomPending
	// TranscriptDue: the host transcribes to the cloud and Zoom has not listed the
	// transcript yet; Zoom's copy is held until it is archived or this time passes
	// (ZOOM_TRANSCRIPT_WAIT), and then NoTranscript says it never came.
	TranscriptDue time.Time `json:"transcript_due,omitempty"`
	NoTranscript  bool      `json:"no_transcript,omitempty"`
	// Held says why the trash decision keeps the recording in Zoom (the proof
	// failed); empty once it goes.
	Held string `json:"held,omitempty"`
	// Length is how long the recording runs (RecShort), as Zoom's files say.
	Length time.Duration `json:"length,omitempty"`
	// Late: files an event added after the recording was archived (a transcript
	// Zoom made after the trash); they are fetched, from the trash if need be.
	Late []string `json:"late,omitempty"`
	// Announced counts the recording's announcements (RecordingArchived); the
	// next one's dedupe id is made from it.
	Announced int       `json:"announced,omitempty"`
	Updated   time.Time `json:"updated"`
}

// Recording states: RecZoomPending is set before Zoom is asked to trash or delete, so
// that the call is made by one worker, and a retry after a crash knows it was asked.
const (
	RecArchiving   = "archiving"
	RecZoomPending = "zoom_pending"
	RecArchived    = "archived"
	// RecShort: shorter than ARCHIVE_MIN_LENGTH, so neither archived nor, unless
	// ZOOM_TRASH_SHORT_UNARCHIVED says so, removed from Zoom; the digest lists it.
	RecShort = "short"
)

// What was done in Zoom once every file was verified (ZOOM_AFTER_ARCHIVE).
const (
	ZoomKept     = "kept"
	ZoomTrashed  = "trashed"
	ZoomDeleted  = "deleted"
	ZoomGone     = "gone"     // no longer in Zoom when asked: removed by hand, or never found
	ZoomRestored = "restored" // taken back out of the trash with fetch restore
)

// FileVerified: upload proved Drive holds the file's exact bytes.
type FileVerified struct {
	Key         string `json:"key"`
	MeetingUUID string `json:"meeting_uuid"`
	FileID      string `json:"file_id,omitempty"`
	Size        int64  `json:"size"`
	MD5         string `json:"md5"`
	DriveID     string `json:"drive_id"`
	DriveLink   string `json:"drive_link"`
	FolderID    string `json:"folder_id"`
	FolderLink  string `json:"folder_link"`
}

// Verified is the announcement of a verified job.
func (j FileJob) Verified() FileVerified {
	return FileVerified{Key: j.Key, MeetingUUID: j.Recording.UUID, FileID: j.File.ID, Size: j.Size, MD5: j.MD5,
		DriveID: j.DriveID, DriveLink: j.DriveLink, FolderID: j.FolderID, FolderLink: j.FolderLink}
}

// FileFailed: a file job gave up after its last attempt.
type FileFailed struct {
	Key       string        `json:"key"`
	Recording RecordingInfo `json:"recording"`
	FileType  string        `json:"file_type"`
	FileID    string        `json:"file_id,omitempty"`
	Size      int64         `json:"size,omitempty"`
	Attempts  int           `json:"attempts"`
	Reason    string        `json:"reason"`
	Replay    string        `json:"replay"` // RetryCommand: what an operator runs to try again
}

// Failed is the announcement of a failed job: LastError is the reason; the tries
// it took are fetch's attempts or upload's copies that did not verify.
func (j FileJob) Failed() FileFailed {
	return FileFailed{Key: j.Key, Recording: j.Recording, FileType: j.File.FileType, FileID: j.File.ID,
		Size: int64(j.File.FileSize), Attempts: max(j.Attempts, j.Mismatches), Reason: j.LastError, Replay: RetryCommand(j.Key)}
}

// RetryCommand is the one command an operator pastes on the server to start a
// failed file over (fetch retry, in the compose project cloud-init lays down;
// --no-deps, so that compose leaves the running services alone); the failure
// mail shows it.
func RetryCommand(fileKey string) string {
	return "cd /opt/zoomarchive && sudo docker compose run --rm --no-deps fetch retry " + fileKey
}

// RecordingArchived: every file of a recording is verified in Drive and Zoom's copy
// was dealt with as ZoomAction says.
//
// A recording is announced again when files come after it was archived; those
// files are marked Late.
type RecordingArchived struct {
	Key          string         `json:"key"`
	Recording    RecordingInfo  `json:"recording"`
	Files        []ArchivedFile `json:"files"`
	FolderLink   string         `json:"folder_link,omitempty"`
	ZoomAction   string         `json:"zoom_action"`
	NoTranscript bool           `json:"no_transcript,omitempty"` // the transcript the host's settings promise never came
}

// ArchivedID is the dedupe id of a recording's announcement after announced
// earlier ones: a file archived after the rest makes a new one.
func ArchivedID(meetingKey string, announced int) string {
	if announced == 0 {
		return "archived-" + meetingKey
	}
	return "archived-" + meetingKey + "-" + strconv.Itoa(announced)
}

// ArchivedFile is one file of a RecordingArchived.
type ArchivedFile struct {
	Key           string `json:"key"`
	FileID        string `json:"file_id,omitempty"`
	FileType      string `json:"file_type"`
	RecordingType string `json:"recording_type,omitempty"`
	Participant   string `json:"participant,omitempty"`
	Size          int64  `json:"size"`
	DriveLink     string `json:"drive_link"`
	Late          bool   `json:"late,omitempty"` // came after the recording was archived
}

// Zoom event names the pipeline acts on.
const (
	EventURLValidation       = "endpoint.url_validation"
	EventRecordingCompleted  = "recording.completed"
	EventTranscriptCompleted = "recording.transcript_completed"
)

// RecordingEvents are the events the Zoom app must send for nothing to be lost:
// the transcript comes after the recording, in an event of its own.
var RecordingEvents = []string{EventRecordingCompleted, EventTranscriptCompleted}

// FileCompleted is the status of a recording file Zoom has finished; any other
// (processing) means its bytes are not there yet.
const FileCompleted = "completed"

// ZoomEventName is the event name of a subject ZoomEventSubject made.
func ZoomEventName(subject string) string { return strings.TrimPrefix(subject, subjectZoomPrefix) }

// ZoomEventSubject is the subject an event is stored under, zoom.event.<event name>.
// Event names are dot-separated words; anything that could act as a NATS wildcard or
// break a subject is refused.
func ZoomEventSubject(event string) (string, error) {
	if event == "" || len(event) > 128 {
		return "", fmt.Errorf("event name must be 1 to 128 characters")
	}
	for _, tok := range strings.Split(event, ".") {
		if tok == "" {
			return "", fmt.Errorf("event name %q has an empty part", event)
		}
		for _, c := range tok {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return "", fmt.Errorf("event name %q has a character other than letters, digits, '_', '-' and '.'", event)
			}
		}
	}
	return subjectZoomPrefix + event, nil
}

// Envelope is a Zoom webhook body. Payload stays raw: its shape depends on Event.
// DownloadToken is a credential: never log it.
type Envelope struct {
	Event         string                     `json:"event"`
	EventTS       Int64                      `json:"event_ts"` // epoch milliseconds
	DownloadToken string                     `json:"download_token,omitempty"`
	Payload       json.RawMessage            `json:"payload"`
	Extra         map[string]json.RawMessage `json:"-"`
}

// URLValidation is the payload of endpoint.url_validation.
type URLValidation struct {
	PlainToken string `json:"plainToken"`
}

// RecordingPayload is the payload of recording.completed, recording.transcript_completed,
// recording.trashed and recording.deleted, for meetings and webinars alike.
type RecordingPayload struct {
	AccountID string                     `json:"account_id"`
	Object    Recording                  `json:"object"`
	Extra     map[string]json.RawMessage `json:"-"`
}

// Recording is one meeting instance's cloud recording. UUID may contain '/', '+'
// and '=='; ID is the meeting number, which all instances of a meeting share.
type Recording struct {
	UUID                  string                     `json:"uuid"`
	ID                    Int64                      `json:"id"`
	AccountID             string                     `json:"account_id,omitempty"`
	HostID                string                     `json:"host_id,omitempty"`
	HostEmail             string                     `json:"host_email,omitempty"`
	Topic                 string                     `json:"topic"`
	Type                  Int64                      `json:"type"` // 1-4, 7, 8 meetings; 5, 6, 9 webinars; 99 uploaded
	StartTime             time.Time                  `json:"start_time"`
	Timezone              string                     `json:"timezone,omitempty"`
	Duration              Int64                      `json:"duration"` // minutes from the meeting's start
	TotalSize             Int64                      `json:"total_size"`
	RecordingCount        Int64                      `json:"recording_count"`
	ShareURL              string                     `json:"share_url,omitempty"`
	RecordingFiles        []RecordingFile            `json:"recording_files"`
	ParticipantAudioFiles []RecordingFile            `json:"participant_audio_files,omitempty"`
	Extra                 map[string]json.RawMessage `json:"-"`
	Invalid               []string                   `json:"-"` // see RecordingFile.Invalid
}

// Files are the recording's files and its participants' audio files.
func (r Recording) Files() []RecordingFile {
	return append(append([]RecordingFile(nil), r.RecordingFiles...), r.ParticipantAudioFiles...)
}

// IsWebinar tells webinars (types 5, 6 and 9) from meetings.
func (r Recording) IsWebinar() bool { return r.Type == 5 || r.Type == 6 || r.Type == 9 }

// RecordingFile is one entry of recording_files or participant_audio_files. CC and
// TIMELINE entries may lack id, status, file_size, recording_type and play_url.
// FileType and RecordingType are open sets: values not listed below are kept as sent.
type RecordingFile struct {
	ID             string                     `json:"id,omitempty"`
	MeetingUUID    string                     `json:"meeting_id,omitempty"` // Zoom names it meeting_id, but it holds the UUID
	RecordingStart *time.Time                 `json:"recording_start,omitempty"`
	RecordingEnd   *time.Time                 `json:"recording_end,omitempty"`
	FileType       string                     `json:"file_type"`
	FileExtension  string                     `json:"file_extension,omitempty"`
	FileName       string                     `json:"file_name,omitempty"` // participant audio: the participant's name
	FileSize       Int64                      `json:"file_size,omitempty"`
	RecordingType  string                     `json:"recording_type,omitempty"`
	Status         string                     `json:"status,omitempty"`
	PlayURL        string                     `json:"play_url,omitempty"`
	DownloadURL    string                     `json:"download_url,omitempty"`
	FilePath       string                     `json:"file_path,omitempty"` // on-prem recordings have this instead of download_url
	Extra          map[string]json.RawMessage `json:"-"`
	// Invalid names the numbers Zoom sent that do not parse, e.g. a float or a
	// negative file_size; their raw values stay in Extra. A file with one (or of a
	// recording with one) fails with it instead of being read as zero.
	Invalid []string `json:"-"`
}

// Problems are what makes f unusable as Zoom sent it: its own invalid fields and
// its recording's.
func (f RecordingFile) Problems(r Recording) []string {
	return append(append([]string(nil), r.Invalid...), f.Invalid...)
}

// File types Zoom documents; others arrive and are kept.
const (
	FileMP4        = "MP4"
	FileM4A        = "M4A"
	FileTranscript = "TRANSCRIPT"
	FileChat       = "CHAT"
	FileCC         = "CC"
	FileTimeline   = "TIMELINE"
	FileCSV        = "CSV"
	FileSummary    = "SUMMARY"
)

// Int64 is a JSON integer that Zoom sometimes sends as a string ("type": "2").
type Int64 int64

func (n *Int64) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*n = 0
			return nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = Int64(v)
	return nil
}

// Unknown fields are kept in Extra so that a value read and written again loses
// nothing Zoom sent; Zoom adds fields without notice.

func (e *Envelope) UnmarshalJSON(b []byte) error {
	type plain Envelope
	return unmarshalKeeping(b, (*plain)(e), &e.Extra)
}

func (e Envelope) MarshalJSON() ([]byte, error) {
	type plain Envelope
	return marshalKeeping(plain(e), e.Extra)
}

func (p *RecordingPayload) UnmarshalJSON(b []byte) error {
	type plain RecordingPayload
	return unmarshalKeeping(b, (*plain)(p), &p.Extra)
}

func (p RecordingPayload) MarshalJSON() ([]byte, error) {
	type plain RecordingPayload
	return marshalKeeping(plain(p), p.Extra)
}

func (r *Recording) UnmarshalJSON(b []byte) error {
	type plain Recording
	return unmarshalChecked(b, (*plain)(r), &r.Extra, &r.Invalid, "id", "type", "duration", "total_size", "recording_count")
}

func (r Recording) MarshalJSON() ([]byte, error) {
	type plain Recording
	return marshalKeeping(plain(r), r.Extra)
}

func (f *RecordingFile) UnmarshalJSON(b []byte) error {
	type plain RecordingFile
	return unmarshalChecked(b, (*plain)(f), &f.Extra, &f.Invalid, "file_size")
}

func (f RecordingFile) MarshalJSON() ([]byte, error) {
	type plain RecordingFile
	return marshalKeeping(plain(f), f.Extra)
}

func unmarshalKeeping(b []byte, v any, extra *map[string]json.RawMessage) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	known := jsonKeys(reflect.TypeOf(v).Elem())
	for k := range all {
		if known[k] {
			delete(all, k)
		}
	}
	*extra = nil
	if len(all) > 0 {
		*extra = all
	}
	return nil
}

// unmarshalChecked is unmarshalKeeping that takes a bad value of one of the
// numeric fields (not a whole number, or below zero) as a problem of the value,
// not of the whole message: the field is named in invalid, its raw value kept in
// extra, and the rest is read.
func unmarshalChecked(b []byte, v any, extra *map[string]json.RawMessage, invalid *[]string, numeric ...string) error {
	*invalid = nil
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	bad := map[string]json.RawMessage{}
	for _, name := range numeric {
		raw, ok := all[name]
		if !ok {
			continue
		}
		var n Int64
		if err := n.UnmarshalJSON(raw); err != nil || n < 0 {
			*invalid = append(*invalid, fmt.Sprintf("%s %s is not a whole number of zero or more", name, raw))
			bad[name] = raw
			delete(all, name)
		}
	}
	if len(bad) > 0 {
		b, _ = json.Marshal(all)
	}
	if err := unmarshalKeeping(b, v, extra); err != nil {
		return err
	}
	if len(bad) > 0 && *extra == nil {
		*extra = map[string]json.RawMessage{}
	}
	for name, raw := range bad {
		(*extra)[name] = raw
	}
	return nil
}

func marshalKeeping(v any, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, raw := range extra {
		all[k] = raw // a known field here is a value that did not parse: sent on as it came
	}
	return json.Marshal(all)
}

var keyCache sync.Map // reflect.Type -> map[string]bool

func jsonKeys(t reflect.Type) map[string]bool {
	if m, ok := keyCache.Load(t); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	keyCache.Store(t, m)
	return m
}
