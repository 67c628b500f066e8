// Package bus connects a stage to NATS, each with its own credentials, and holds
// the pipeline's streams. The broker declares them (Topology.Ensure) with its own
// identity; a stage only waits for them to be there.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// Settings are read by every stage.
var Settings = []config.Setting{
	{Name: "NATS_URL", Default: "nats://127.0.0.1:4222", Usage: "broker URL; several comma-separated for a cluster"},
	{Name: "NATS_CREDS", Required: true, Usage: "this program's credentials file from the folder `broker creds` wrote (hook.creds, fetch.creds, ...)"},
	{Name: "METRICS_PPROF", Default: "off", Usage: "on: also serve Go's profiles (/debug/pprof/) on METRICS_ADDR, to see where a run spends CPU and memory"},
}

// TopologySettings are the broker's: it declares the streams and the job bucket,
// which no stage may create or change.
var TopologySettings = []config.Setting{
	{Name: "NATS_REPLICAS", Default: "1", Usage: "stream replicas: 1 for one broker, 3 for a three-node cluster"},
	{Name: "ZOOM_EVENTS_MAX_AGE", Default: "720h", Usage: "how long ZOOM_EVENTS keeps webhooks for replays"},
	{Name: "ZOOM_EVENTS_DEDUPE", Default: "2h", Usage: "window in which a redelivered webhook (same body) is stored once; at least 90m, Zoom retries for 85m"},
	{Name: "CHUNK_WINDOW", Default: "64MiB", Usage: "the most bytes the chunk stream between fetch and upload may hold"},
	{Name: "BROKER_STORAGE", Default: "3GiB", Usage: "the most bytes the broker keeps on disk; every stream and the job bucket get a share of it (docs/broker.md, The broker's limits). 3GiB on the 10 GB droplet"},
}

// archiveMaxAge keeps archive events long enough for a digest and a look back.
const archiveMaxAge = 90 * 24 * time.Hour

// Topology is the set of streams and their limits.
type Topology struct {
	Replicas     int
	EventsMaxAge time.Duration
	EventsDedupe time.Duration
	ChunkWindow  int64
	Storage      int64 // BROKER_STORAGE: the broker's whole disk, shared by Shares
}

// Shares is what each stream and the job bucket may hold of Topology.Storage:
// CHUNKS its window, and of the rest ZOOM_EVENTS, the job bucket and ARCHIVE a
// quarter each and FETCH_JOBS an eighth. The last eighth is no stream's: room
// for an operator's own streams (a replay, a copy) within the same limit.
type Shares struct {
	Events, Jobs, Archive, FetchJobs, Chunks int64
}

// Shares divides t.Storage.
func (t Topology) Shares() Shares {
	rest := t.Storage - t.ChunkWindow
	return Shares{Events: rest / 4, Jobs: rest / 4, Archive: rest / 4, FetchJobs: rest / 8, Chunks: t.ChunkWindow}
}

// storageFits tells whether Storage leaves the other streams room beside CHUNKS.
func (t Topology) storageFits() error {
	if t.Storage < 2*t.ChunkWindow {
		return errors.New("must be at least twice CHUNK_WINDOW: the chunk stream takes CHUNK_WINDOW of it, the other streams share the rest")
	}
	return nil
}

// Config is what a stage needs to reach the broker: where, and as whom; and
// whether its metrics listener serves profiles too (METRICS_PPROF).
type Config struct {
	URL      string
	Creds    string // credentials file
	Identity string // the name inside it
	Profiles bool
	held     *heldCreds // the credentials in use, swapped by Conn.Up's watch
}

// ReadConfig reads Settings for the program identity, recording problems in v:
// credentials that cannot be read, or that are another program's.
func ReadConfig(v *config.Values, identity string) Config {
	c := Config{URL: v.String("NATS_URL"), Creds: v.String("NATS_CREDS"), Profiles: v.OnOff("METRICS_PPROF")}
	if c.Creds == "" {
		return c
	}
	b, err := os.ReadFile(c.Creds)
	if err == nil {
		c.held, err = readHeld(b)
	}
	switch {
	case err != nil:
		v.Invalid("NATS_CREDS", fmt.Sprintf("%s: %v", c.Creds, err))
	case c.held.name != identity:
		v.Invalid("NATS_CREDS", fmt.Sprintf("%s holds the identity %q, not %q: give each program its own file", c.Creds, c.held.name, identity))
	default:
		c.Identity = identity
		return c
	}
	c.held = nil
	return c
}

// ReadTopology reads TopologySettings, recording problems in v.
func ReadTopology(v *config.Values) Topology {
	t := Topology{
		Replicas:     v.Int("NATS_REPLICAS", 1),
		EventsMaxAge: v.Duration("ZOOM_EVENTS_MAX_AGE"),
		EventsDedupe: v.Duration("ZOOM_EVENTS_DEDUPE"),
		ChunkWindow:  v.Bytes("CHUNK_WINDOW"),
		Storage:      v.Bytes("BROKER_STORAGE"),
	}
	if t.ChunkWindow > 0 && t.ChunkWindow < events.MaxPayload {
		v.Invalid("CHUNK_WINDOW", fmt.Sprintf("must be at least %dMiB, the broker's largest message: it holds whole chunk messages", events.MaxPayload>>20))
	}
	if err := t.storageFits(); t.Storage > 0 && err != nil {
		v.Invalid("BROKER_STORAGE", err.Error())
	}
	if t.EventsDedupe > 0 && t.EventsDedupe < events.ZoomEventsDedupMin {
		v.Invalid("ZOOM_EVENTS_DEDUPE", fmt.Sprintf("%s is shorter than Zoom's retry schedule; use at least %s", t.EventsDedupe, events.ZoomEventsDedupMin))
	}
	if t.EventsMaxAge > 0 && t.EventsMaxAge < t.EventsDedupe {
		v.Invalid("ZOOM_EVENTS_MAX_AGE", "must be at least ZOOM_EVENTS_DEDUPE")
	}
	return t
}

// Connect dials the broker as c's identity and keeps reconnecting for as long as
// the stage runs; it returns at once even when the broker is down, so a stage can
// start first and report "not ready" until the broker comes. Replies come on the
// identity's own inbox, the only one its permissions let it read.
func Connect(c Config, log *slog.Logger) (*nats.Conn, error) {
	return nats.Connect(c.URL, append(c.Options(),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("broker disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("broker reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("broker connected", "url", nc.ConnectedUrlRedacted(), "as", c.Identity)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			// Reconnects never run out; only the broker refusing the credentials
			// again and again ends the connection (or the stage's own stop).
			if err := nc.LastError(); err != nil {
				log.Error("broker connection given up; NATS_CREDS must be fixed and the program restarted", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A permission the code lacks shows here first: the broker names the subject.
			log.Error(RefusedOperation, "err", err)
		}),
	)...)
}

// Options connect as c's identity: its credentials, its name, and replies on its
// own inbox, the only one its permissions let it read.
func (c Config) Options() []nats.Option {
	creds := nats.UserCredentials(c.Creds)
	if c.held != nil {
		creds = nats.UserJWT(c.held.userJWT, c.held.sign)
	}
	return []nats.Option{nats.Name("zoomarchive-" + c.Identity), creds, nats.CustomInboxPrefix(events.Inbox(c.Identity))}
}

// RefusedOperation is the log line of anything the broker refused a program:
// the tests fail on it, so a permission the code lacks shows at once.
const RefusedOperation = "broker refused an operation"

// Refused is the broker's refusal of c's credentials, or nil: a stage with wrong
// credentials stops with it rather than retry forever.
func Refused(nc *nats.Conn, c Config) error {
	err := nc.LastError()
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return fmt.Errorf("NATS_CREDS %s: the broker refused them: %w", c.Creds, err)
	}
	return nil
}

// Ensure creates or updates every stream and bucket of the topology. No stream
// takes rollups, and only CHUNKS may be purged (fetch and upload drop one file's
// chunks nobody will read); each holds at most its share of Storage, and at its
// limit refuses what is new (DiscardNew) but ARCHIVE, which drops its oldest: an
// alert must always get through (docs/broker.md, The broker's limits). An existing stream
// of an earlier version is updated to this: the broker takes rollups away and
// denies purges on a stream that had them.
func (t Topology) Ensure(ctx context.Context, js jetstream.JetStream) error {
	if err := t.storageFits(); err != nil {
		return fmt.Errorf("BROKER_STORAGE %d bytes: %w", t.Storage, err)
	}
	share := t.Shares()
	streams := []jetstream.StreamConfig{{
		// Full: the hook answers 503 and Zoom retries; notify says the broker is full.
		Name:        events.StreamZoomEvents,
		Description: "Verified Zoom webhooks, raw bodies, kept for replays",
		Subjects:    []string{events.SubjectZoomEvents},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      t.EventsMaxAge,
		MaxBytes:    share.Events,
		MaxMsgSize:  events.MaxRecord,
		Duplicates:  t.EventsDedupe,
		Discard:     jetstream.DiscardNew,
		DenyPurge:   true,
	}, {
		Name:        events.StreamFetchJobs,
		Description: "One message per file to download from Zoom",
		Subjects:    []string{events.SubjectFetchJobs},
		Retention:   jetstream.WorkQueuePolicy,
		MaxBytes:    share.FetchJobs,
		MaxMsgSize:  events.MaxRecord,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
		DenyPurge:   true,
	}, {
		// The window: a full stream refuses new chunks (DiscardNew) and fetch waits.
		// Purges stay: fetch and upload drop one file's chunks (WithPurgeSubject).
		Name:        events.StreamChunks,
		Description: "File bytes in flight from fetch to upload",
		Subjects:    []string{events.SubjectChunks},
		Retention:   jetstream.WorkQueuePolicy,
		MaxBytes:    share.Chunks,
		MaxMsgSize:  events.MaxPayload,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
	}, {
		Name:        events.StreamArchive,
		Description: "Files verified or failed, recordings archived",
		Subjects:    events.ArchiveSubjects,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      archiveMaxAge,
		MaxBytes:    share.Archive,
		MaxMsgSize:  events.MaxRecord,
		Duplicates:  10 * time.Minute,
		Discard:     jetstream.DiscardOld,
		DenyPurge:   true,
	}}
	for _, sc := range streams {
		sc.Storage, sc.Replicas, sc.AllowDirect = jetstream.FileStorage, t.Replicas, true
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateStream(ctx, jobsBucket(t.Replicas, share.Jobs)); err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketJobs, err)
	}
	return nil
}

// jobsBucket is the job bucket's stream: a key-value bucket as nats.go makes one
// (one value per key, no message deletes), except that direct gets are off and
// so are rollups. A direct get may be answered by a follower that has not seen the
// latest write, and a job read as missing would drop its work; with direct gets
// off every read goes to the stream's leader. A rollup ("Nats-Rollup: all") is a
// purge of the whole bucket by anyone who may put one key, and nothing here
// purges a key (kv.Purge): DenyPurge, no rollups.
func jobsBucket(replicas int, maxBytes int64) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + events.BucketJobs,
		Description:       "Per-file and per-recording job state",
		Subjects:          []string{"$KV." + events.BucketJobs + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          maxBytes,
		MaxMsgSize:        events.MaxRecord,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		DenyDelete:        true,
		DenyPurge:         true,
		Duplicates:        2 * time.Minute,
		Discard:           jetstream.DiscardNew,
	}
}
