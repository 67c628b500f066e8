package events

// Who may do what on the broker. Every program connects with its own identity
// (NATS_CREDS) and may publish and subscribe only to what its entry below lists;
// the broker refuses the rest. Streams and the job bucket are declared by the
// broker's own identity, which no stage holds, so no stage can make, edit or
// delete a stream; a stage may create only its own consumers. Replies come back on
// the identity's own inbox prefix, so one program cannot read another's answers.

// Identities, one credentials file each (<identity>.creds).
const (
	IdentityBroker   = "broker"   // declares streams and the bucket; kept beside the broker
	IdentityHook     = "hook"     // stores webhooks, reads nothing
	IdentityFetch    = "fetch"    // the only one that writes recordings and decides the trash
	IdentityUpload   = "upload"   // reads chunks, writes Drive's results
	IdentityNotify   = "notify"   // reads what it mails, writes its own records
	IdentityOperator = "operator" // people and the nats CLI: everything, as an admin
)

// Stages are the four programs of the pipeline, each of which reports a heartbeat.
var Stages = []string{IdentityHook, IdentityFetch, IdentityUpload, IdentityNotify}

// ClientIdentities are those that connect from outside the broker: the four
// stages and the operator.
var ClientIdentities = []string{IdentityHook, IdentityFetch, IdentityUpload, IdentityNotify, IdentityOperator}

// The durable consumers, each created (and updated) only by the stage it names.
const (
	ConsumerFetchEvents  = "fetch"         // ZOOM_EVENTS: recording events to plan
	ConsumerFetchJobs    = "fetch-jobs"    // FETCH_JOBS: files to download
	ConsumerFetchArchive = "fetch-archive" // ARCHIVE: verified files, for the trash decision
	ConsumerNotify       = "notify"        // ARCHIVE: what is mailed
)

// ChunkConsumer names upload's consumer of one file's chunks.
func ChunkConsumer(fileKey string) string { return "upload-" + fileKey }

// Inbox is the reply prefix of an identity.
func Inbox(identity string) string { return "_INBOX_" + identity }

// Permission is what one identity may publish and subscribe to.
type Permission struct {
	Publish, Subscribe []string
	DenyPublish        []string // carved out of a wildcard in Publish
}

// Permissions lists every identity's rights.
var Permissions = map[string]Permission{
	IdentityBroker:   {Publish: []string{">"}, Subscribe: []string{">"}},
	IdentityOperator: {Publish: []string{">"}, Subscribe: []string{">"}},
	IdentityHook: {
		Publish: []string{SubjectZoomEvents, JobSubject(HeartbeatKey(IdentityHook))},
	},
	IdentityFetch: {
		Publish: join(
			// ZOOM_EVENTS too: backfill stores events as the hook would.
			[]string{SubjectZoomEvents, SubjectFetchJobs, SubjectChunks, FileFailedSubject(">"),
				RecordingArchivedSubject(">"), SubjectReconcileReport},
			jobKeys(FileJobKey(">"), RecordingJobKey(">"), FactsKey(">"), FetchProgressKey(">"), BackfillKey,
				ReconcileKey(">"), HeartbeatKey(IdentityFetch)),
			alerts(AlertZoomRefused, AlertZoomDailyLimit, AlertWebhooksMissing, AlertEventMismatchPrefix+">", AlertTrashHeldPrefix+">"),
			reads(StreamZoomEvents, StreamFetchJobs, StreamChunks, StreamArchive, jobStream),
			purge(StreamChunks),
			ownConsumer(StreamZoomEvents, ConsumerFetchEvents), ownConsumer(StreamFetchJobs, ConsumerFetchJobs),
			ownConsumer(StreamArchive, ConsumerFetchArchive), jobWatchers()),
	},
	IdentityUpload: {
		Publish: join(
			// FETCH_JOBS: asking fetch for a file again from byte 0.
			[]string{FileVerifiedSubject(">"), FileFailedSubject(">"), SubjectFetchJobs, SubjectDriveAudit},
			jobKeys(FileJobKey(">"), UploadProgressKey(">"), folderKeyPrefix+">", HeartbeatKey(IdentityUpload), AuditKey(">"), ShareKey(">")),
			alerts(AlertDriveDailyCap, AlertDriveFull, AlertDriveRefused, AlertGoogleKeyRotation, AlertDriveShare),
			reads(StreamChunks, jobStream), purge(StreamChunks),
			watchers(StreamChunks), jobWatchers()), // a consumer per file on CHUNKS
	},
	IdentityNotify: {
		Publish: join(
			jobKeys(NotifyKey(">"), HeartbeatKey(IdentityNotify)),
			alerts(AlertStageSilentPrefix+">", AlertWebhookRejections, AlertChunkWindowFull, AlertBrokerFull, AlertCertificate,
				AlertGoogleKeyOld, AlertCredentialPrefix+">", AlertZoomStorage),
			reads(StreamArchive, jobStream),
			// How full the streams are, for the chunk-window and broker-full alerts;
			// never a chunk's bytes.
			infos(StreamChunks, StreamZoomEvents, StreamFetchJobs),
			ownConsumer(StreamArchive, ConsumerNotify), watchers(StreamArchive), jobWatchers()),
		// The digest's ordered consumers need any name on ARCHIVE, but not fetch's:
		// nothing of fetch-archive, neither its messages nor their acks.
		DenyPublish: consumerOps(StreamArchive, ConsumerFetchArchive),
	},
}

// JobSubject is the subject a write of key in the job bucket is published on.
func JobSubject(key string) string { return "$KV." + BucketJobs + "." + key }

const (
	jsAPI     = "$JS.API."
	jobStream = "KV_" + BucketJobs
)

func jobKeys(keys ...string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = JobSubject(k)
	}
	return out
}

// alerts: raising and clearing alerts of these kinds (AlertSubject and AlertKey).
func alerts(kinds ...string) []string {
	var out []string
	for _, k := range kinds {
		out = append(out, AlertSubject(k), JobSubject(AlertKey(k)))
	}
	return out
}

// reads: a stream's info and single messages (the job bucket's gets).
func reads(streams ...string) []string {
	var out []string
	for _, s := range streams {
		out = append(out, jsAPI+"STREAM.INFO."+s, jsAPI+"STREAM.MSG.GET."+s, jsAPI+"DIRECT.GET."+s, jsAPI+"DIRECT.GET."+s+".>")
	}
	return out
}

// infos: a stream's info alone (its limits and how full it is), no message.
func infos(streams ...string) []string {
	var out []string
	for _, s := range streams {
		out = append(out, jsAPI+"STREAM.INFO."+s)
	}
	return out
}

// purge: dropping messages of the stream. The purge request names its filter in
// the body, which permissions cannot see; the streams that must not lose messages
// deny purges themselves (bus.Topology.Ensure).
func purge(stream string) []string { return []string{jsAPI + "STREAM.PURGE." + stream} }

// ownConsumer: create, read, pull from and acknowledge one named consumer ('*':
// any).
func ownConsumer(stream, name string) []string {
	return append(consumerOps(stream, name), "$JS.FC."+stream+".>")
}

// consumerOps: everything that names one consumer: create, read, delete, pull
// from it and acknowledge its messages.
func consumerOps(stream, name string) []string {
	c := stream + "." + name
	return []string{jsAPI + "CONSUMER.CREATE." + c, jsAPI + "CONSUMER.CREATE." + c + ".>", jsAPI + "CONSUMER.INFO." + c,
		jsAPI + "CONSUMER.DELETE." + c, jsAPI + "CONSUMER.MSG.NEXT." + c, "$JS.ACK." + c + ".>"}
}

// watchers: short-lived consumers of any name, for key listings and ordered reads
// of a stream that keeps its messages.
func watchers(stream string) []string { return ownConsumer(stream, "*") }

// jobWatchers: watchers of the job bucket. nats.go's key watcher recreates its
// ordered consumer after a gap (a broker restart) through the create subject that
// names no consumer; on the job bucket nothing but reading rides on that.
func jobWatchers() []string { return append(watchers(jobStream), jsAPI+"CONSUMER.CREATE."+jobStream) }

func join(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
