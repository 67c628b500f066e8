package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/option"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/retry"
	"zoomarchive/shared/serviceaccount"
)

// fetch consumes three things:
//
//	ZOOM_EVENTS  recording events  -> one job per file (jobs.go)
//	FETCH_JOBS   one file job      -> its bytes into CHUNKS (download.go)
//	ARCHIVE      file verified     -> once all are, Zoom's copy trashed (archive.go)

var settings = append(append([]config.Setting{
	{Name: serviceaccount.Setting.Name, Required: true, Usage: "path of fetch's own Google service-account key JSON, which may only read Drive's metadata (scope drive.metadata.readonly): fetch checks Drive itself before a recording leaves Zoom"},
	{Name: "ZOOM_ACCOUNT_ID", Required: true, Usage: "the Server-to-Server OAuth app's Account ID"},
	{Name: "ZOOM_CLIENT_ID", Required: true, Usage: "the Server-to-Server OAuth app's Client ID"},
	{Name: "ZOOM_CLIENT_SECRET", Required: true, Secret: true, Usage: "the Server-to-Server OAuth app's Client Secret; from ZOOM_CLIENT_SECRET_FILE it is read again when the file changes, and checked with Zoom at once"},
	{Name: "ZOOM_API_URL", Default: "https://api.zoom.us/v2", Usage: "Zoom's REST API"},
	{Name: "ZOOM_OAUTH_URL", Default: "https://zoom.us/oauth/token", Usage: "Zoom's token endpoint"},
	{Name: "ZOOM_DOWNLOAD_HOSTS", Default: "zoom.us,*.zoom.us", Usage: "the only hosts fetch sends credentials to or downloads from; *.suffix matches subdomains"},
	{Name: "ZOOM_AFTER_ARCHIVE", Default: "trash", Usage: "what to do in Zoom once every file of a recording is verified in Drive: keep, trash or delete"},
	{Name: "ZOOM_DELETE_WITHOUT_HOLD", Default: "no", Usage: "yes: allow ZOOM_AFTER_ARCHIVE=delete with ZOOM_TRASH_AFTER under 168h, so that a recording lost to a mistake cannot be had back from Zoom"},
	{Name: "FETCH_RECONCILE_AT", Default: "04:00", Usage: "time of the daily reconciliation (HH:MM, UTC), or off"},
	{Name: "FETCH_RECONCILE_DAYS", Default: "30", Usage: "how many days back the reconciliation looks"},
	{Name: "FETCH_STUCK_AFTER", Default: "6h", Usage: "a file job in one state this long is reported stuck"},
	{Name: "ZOOM_TRASH_AFTER", Default: "0", Usage: "how long a verified recording stays in Zoom before ZOOM_AFTER_ARCHIVE is applied, e.g. 168h; 0: at once"},
	{Name: "ARCHIVE_FILE_TYPES", Usage: "comma-separated Zoom file types to archive (MP4,M4A,TRANSCRIPT,...); empty archives all"},
	{Name: "ZOOM_DELETE_UNARCHIVED", Default: "no", Usage: "yes: with ARCHIVE_FILE_TYPES and ZOOM_AFTER_ARCHIVE=delete, the types left out are deleted from Zoom for good, unarchived"},
	{Name: "ARCHIVE_MIN_LENGTH", Default: "0", Usage: "a recording shorter than this (e.g. 2m: an accidental one) is neither archived nor removed from Zoom, and the digest lists it with its host and length; 0: every recording is archived"},
	{Name: "ZOOM_TRASH_SHORT_UNARCHIVED", Default: "no", Usage: "yes: recordings shorter than ARCHIVE_MIN_LENGTH are moved to Zoom's trash WITHOUT being archived (recoverable there for 30 days); the digest lists each one"},
	{Name: "ZOOM_TRANSCRIPT_WAIT", Default: "24h", Usage: "how long a recording whose host transcribes to the cloud stays in Zoom waiting for its transcript; 0: no wait"},
	{Name: "METRICS_ADDR", Default: "127.0.0.1:9102", Usage: "listener for /metrics, /healthz and /readyz", Health: "/readyz"},
	{Name: "FETCH_CONCURRENCY", Default: "2", Usage: "files downloaded at once"},
	{Name: "FETCH_CHUNK_SIZE", Default: "1MiB", Usage: "bytes per chunk message"},
	{Name: "FETCH_MAX_ATTEMPTS", Default: "8", Usage: "attempts before a file job is failed"},
	{Name: "FETCH_RETRY_DELAYS", Default: "2m,10m,30m,1h,2h,3h,6h", Usage: "waits before the 2nd, 3rd, ... attempt (the last repeats); the default spreads 8 attempts over 12.7h"},
	{Name: "ZOOM_RETRY_BASE", Default: "1s", Usage: "first wait between quick retries within an attempt (5xx, cut connections), doubling"},
	{Name: "ZOOM_STALL_TIMEOUT", Default: "60s", Usage: "a download that delivers no byte for this long is cut and resumed"},
	{Name: "FETCH_ACK_WAIT", Default: "60s", Usage: "how long a work message waits for its worker's word before the broker hands it out again"},
	{Name: "FETCH_LEASE", Default: "6s", Usage: "how long a file stays a worker's without renewal (renewed every third of it): a killed worker's file is taken over this long after"},
	{Name: "FETCH_MISSING_ALERT", Default: "3", Usage: "recordings of the last two days with no webhook that the reconciliation may find before it alerts that webhooks are not arriving"},
}, serviceaccount.DriveSettings...), bus.Settings...)

type stage struct {
	log     *slog.Logger
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	zoom    *zoomClient
	worker  string // this process, as the owner of a download lease
	policy  policy // what the settings say of the trash
	drive   *driveReader
	chunk   int
	maxTry  int
	delays  []time.Duration
	stall   time.Duration
	ackWait time.Duration
	// leaseTTL is FETCH_LEASE: how long a file's resume point stays a worker's
	// without renewal; the worker renews it every third of that.
	leaseTTL time.Duration
	m        metrics

	reconcileAt   config.Daily // FETCH_RECONCILE_AT
	reconcileDays int
	stuckAfter    time.Duration
	missingAlert  int // FETCH_MISSING_ALERT

	health       *bus.Health
	zoomAlerted  atomic.Bool // this process raised the alert that Zoom refuses the app
	zoomMayClear atomic.Bool // an alert of it may be open: the next answer Zoom takes clears it
	dailyOpen    atomic.Bool // an alert of Zoom's daily limit may be open: the next answer Zoom takes clears it
}

type metrics struct {
	events     *prometheus.CounterVec
	queued     prometheus.Counter
	bytes      prometheus.Counter
	retries    *prometheus.CounterVec
	windowFull prometheus.Counter
	failed     prometheus.Counter
	archived   *prometheus.CounterVec
	mismatches prometheus.Counter
	held       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		events:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zoomarchive_fetch_events_total", Help: "ZOOM_EVENTS messages by event and outcome."}, []string{"event", "outcome"}),
		queued:     prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_fetch_files_queued_total", Help: "File jobs created."}),
		bytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_fetch_bytes_total", Help: "File bytes put into the chunk stream."}),
		retries:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zoomarchive_fetch_retries_total", Help: "Download retries within an attempt, by reason."}, []string{"reason"}),
		windowFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_fetch_window_full_total", Help: "Chunk publishes refused because the window was full; fetch waited."}),
		failed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_fetch_jobs_failed_total", Help: "File jobs that gave up."}),
		archived:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zoomarchive_fetch_recordings_archived_total", Help: "Recordings fully archived, by what was done in Zoom."}, []string{"zoom_action"}),
		mismatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_fetch_event_mismatches_total", Help: "Recording events that named files otherwise than Zoom's API lists them."}),
		held:       prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_fetch_recordings_held_total", Help: "Trash decisions that kept a recording in Zoom because the proof failed."}),
	}
	reg.MustRegister(m.events, m.queued, m.bytes, m.retries, m.windowFull, m.failed, m.archived, m.mismatches, m.held)
	return m
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return config.Run(ctx, "fetch", "downloads Zoom recordings into the chunk stream", settings, args, getenv, stdout, stderr,
		func(ctx context.Context, v *config.Values) error {
			st, c, err := configure(v, stdout)
			if err != nil {
				return err
			}
			return st.serve(ctx, c)
		}, backfillCommand(stdout), restoreCommand(stdout), reconcileCommand(stdout), retryCommand(stdout), statusCommand(stdout), checkCommand(stdout))
}

// runConf is what configure reads besides the stage itself.
type runConf struct {
	bus         bus.Config
	reg         *prometheus.Registry
	metricsAddr string
	concurrency int
	secretFile  string // ZOOM_CLIENT_SECRET_FILE, watched for a rotation
	key         *serviceaccount.Key
	keyFile     string // fetch's Google key, watched for a new one
}

// minDeleteHold is the retention hold ZOOM_AFTER_ARCHIVE=delete needs without
// its opt-in: a week to notice a mistake before it is final.
const minDeleteHold = 7 * 24 * time.Hour

// configure reads every setting of the stage (for it and for its commands) and
// returns one error naming every problem.
func configure(v *config.Values, stdout io.Writer) (*stage, runConf, error) {
	hosts := hostList(v.List("ZOOM_DOWNLOAD_HOSTS"))
	apiURL, oauthURL := v.String("ZOOM_API_URL"), v.String("ZOOM_OAUTH_URL")
	for _, name := range []string{"ZOOM_API_URL", "ZOOM_OAUTH_URL"} {
		if u, err := url.Parse(v.String(name)); err != nil || u.Host == "" {
			v.Invalid(name, "not a URL")
		} else if err := hosts.allows(u); err != nil {
			v.Invalid(name, err.Error()+"; credentials go to ZOOM_DOWNLOAD_HOSTS only")
		}
	}
	st := &stage{
		policy: policy{action: v.String("ZOOM_AFTER_ARCHIVE"), hold: v.DurationOrZero("ZOOM_TRASH_AFTER"),
			transcriptWait: v.DurationOrZero("ZOOM_TRANSCRIPT_WAIT"), minLength: v.DurationOrZero("ARCHIVE_MIN_LENGTH")},
		chunk:    int(v.Bytes("FETCH_CHUNK_SIZE")),
		maxTry:   v.Int("FETCH_MAX_ATTEMPTS", 1),
		stall:    v.Duration("ZOOM_STALL_TIMEOUT"),
		ackWait:  v.Duration("FETCH_ACK_WAIT"),
		leaseTTL: v.Duration("FETCH_LEASE"),

		reconcileAt:   v.Daily("FETCH_RECONCILE_AT"),
		reconcileDays: v.Int("FETCH_RECONCILE_DAYS", 1),
		stuckAfter:    v.Duration("FETCH_STUCK_AFTER"),
		missingAlert:  v.Int("FETCH_MISSING_ALERT", 1),
	}
	if st.ackWait > 0 && st.leaseTTL > 0 && st.ackWait <= st.leaseTTL/3 {
		v.Invalid("FETCH_ACK_WAIT", fmt.Sprintf("must be longer than a third of FETCH_LEASE (%s): a working file's message is kept alive that often", st.leaseTTL))
	}
	switch trashShort := v.String("ZOOM_TRASH_SHORT_UNARCHIVED"); {
	case trashShort != "yes" && trashShort != "no":
		v.Invalid("ZOOM_TRASH_SHORT_UNARCHIVED", fmt.Sprintf("%q is not yes or no", trashShort))
	case trashShort == "yes" && st.policy.minLength <= 0:
		v.Invalid("ZOOM_TRASH_SHORT_UNARCHIVED", "yes needs ARCHIVE_MIN_LENGTH, the length under which recordings are trashed unarchived")
	default:
		st.policy.trashShort = trashShort == "yes"
	}
	switch optIn := v.String("ZOOM_DELETE_WITHOUT_HOLD"); {
	case st.policy.action != "keep" && st.policy.action != "trash" && st.policy.action != "delete":
		v.Invalid("ZOOM_AFTER_ARCHIVE", fmt.Sprintf("%q is not keep, trash or delete", st.policy.action))
	case optIn != "yes" && optIn != "no":
		v.Invalid("ZOOM_DELETE_WITHOUT_HOLD", fmt.Sprintf("%q is not yes or no", optIn))
	case st.policy.action == "delete" && st.policy.hold < minDeleteHold && optIn != "yes":
		v.Invalid("ZOOM_AFTER_ARCHIVE", fmt.Sprintf("delete removes recordings from Zoom for good, so a mistake (in zoomarchive, Drive or a setting) "+
			"could not be undone; with delete, set ZOOM_TRASH_AFTER to at least %s (Drive's copy is checked again before the delete), "+
			"use trash (recoverable in Zoom for 30 days), or set ZOOM_DELETE_WITHOUT_HOLD=yes if that risk is wanted", minDeleteHold))
	}
	if st.chunk > events.MaxChunkData {
		v.Invalid("FETCH_CHUNK_SIZE", fmt.Sprintf("at most %dMiB: a chunk and its headers must fit the broker's message limit", events.MaxChunkData>>20))
	}
	if types := v.List("ARCHIVE_FILE_TYPES"); len(types) > 0 {
		st.policy.types = map[string]bool{}
		for _, t := range types {
			st.policy.types[strings.ToUpper(t)] = true
		}
		switch optIn := v.String("ZOOM_DELETE_UNARCHIVED"); {
		case optIn != "yes" && optIn != "no":
			v.Invalid("ZOOM_DELETE_UNARCHIVED", fmt.Sprintf("%q is not yes or no", optIn))
		case st.policy.action == "delete" && optIn != "yes":
			v.Invalid("ZOOM_AFTER_ARCHIVE", "delete with ARCHIVE_FILE_TYPES deletes the file types left out of the archive from Zoom for good; "+
				"use trash (recoverable for 30 days), or set ZOOM_DELETE_UNARCHIVED=yes if that loss is wanted")
		}
	}
	for _, d := range v.List("FETCH_RETRY_DELAYS") {
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			v.Invalid("FETCH_RETRY_DELAYS", fmt.Sprintf("%q is not a positive duration", d))
		}
		st.delays = append(st.delays, dur)
	}
	googleURL := v.String("GOOGLE_API_URL")
	if !strings.HasSuffix(googleURL, "/") {
		googleURL += "/"
	}
	key := serviceaccount.TokenSource(v, serviceaccount.DriveMetadataScope, v.String("DRIVE_IMPERSONATE"))
	accountID, clientID, secret := v.String("ZOOM_ACCOUNT_ID"), v.String("ZOOM_CLIENT_ID"), v.String("ZOOM_CLIENT_SECRET")
	retryBase := v.Duration("ZOOM_RETRY_BASE")
	c := runConf{bus: bus.ReadConfig(v, events.IdentityFetch), reg: obs.Registry(), metricsAddr: v.String("METRICS_ADDR"), concurrency: v.Int("FETCH_CONCURRENCY", 1),
		secretFile: v.SecretFile("ZOOM_CLIENT_SECRET"), key: key, keyFile: v.String(serviceaccount.Setting.Name)}
	if err := v.Err(); err != nil {
		return nil, c, err
	}
	ds, err := drive.NewService(context.Background(), option.WithTokenSource(key), option.WithEndpoint(googleURL+"drive/v3/"))
	if err != nil {
		return nil, c, err
	}
	st.drive = &driveReader{files: ds.Files, root: v.String("DRIVE_FOLDER_ID")}
	st.log = obs.Logger(stdout, "fetch")
	st.zoom = newZoomClient(apiURL, oauthURL, accountID, clientID, secret, hosts, retryBase, c.reg)
	st.m = newMetrics(c.reg)
	st.worker = "fetch-" + nats.NewInbox()[len("_INBOX."):]
	return st, c, nil
}

// zoomRefused: Zoom refuses the app. The admins hear of it once, /readyz fails,
// and files wait for it instead of using up their attempts.
func (st *stage) zoomRefused(ctx context.Context, err error) {
	st.health.Set("zoom", err)
	st.zoomMayClear.Store(true)
	if st.zoomAlerted.Swap(true) {
		return
	}
	st.log.Error("zoom refuses the app; downloads and the trash wait", "err", err)
	a := events.Alert{Kind: events.AlertZoomRefused, Message: "Zoom refuses zoomarchive's Server-to-Server OAuth app: " + err.Error() +
		". In the Zoom App Marketplace, check that the app is activated, its scopes, and that ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET match it (then: sudo docker compose up -d fetch). " +
		"Nothing is lost meanwhile: recordings stay in Zoom and their webhooks wait in the broker."}
	if err := bus.RaiseAlert(ctx, st.js, st.kv, a); err != nil {
		st.zoomAlerted.Store(false)
		st.log.Warn("cannot raise an alert", "kind", a.Kind, "err", err)
	}
}

// newClientSecret takes a new ZOOM_CLIENT_SECRET_FILE (the app's secret rotated in
// the Marketplace) and asks Zoom for a token with it at once. A secret Zoom refuses
// while the earlier one still works is not taken (a slip, or the Marketplace not
// changed yet); an unreadable or empty file changes nothing. Either way it says so
// in one log line, and a secret not taken fails /readyz until the file is fixed.
func (st *stage) newClientSecret(ctx context.Context, cred *bus.FileCredential, secret string, err error) {
	if err == nil && secret == "" {
		err = errors.New("it is empty")
	}
	if err != nil {
		st.log.Error("ZOOM_CLIENT_SECRET_FILE cannot be used; the secret in use stays", "err", err)
		cred.Refused("", fmt.Errorf("ZOOM_CLIENT_SECRET_FILE cannot be used (the earlier secret stays in use): %w", err))
		return
	}
	old := st.zoom.useSecret(secret)
	_, err = st.zoom.accessToken(ctx)
	switch {
	case err == nil:
		st.log.Info("zoom takes the new client secret; it is in use")
	case refusal(err):
		st.zoom.useSecret(old)
		if _, oldErr := st.zoom.accessToken(ctx); oldErr == nil {
			st.log.Error("zoom refuses the new client secret; the earlier one still works and stays in use", "err", err)
			cred.Refused("", fmt.Errorf("ZOOM_CLIENT_SECRET_FILE: Zoom refuses the new secret (the earlier one stays in use): %w", err))
			return
		}
		st.zoom.useSecret(secret) // neither works: the new one is the one to fix
		st.log.Error("zoom refuses the new client secret, and the earlier one no longer works either", "err", err)
	default:
		st.log.Warn("cannot check the new client secret with Zoom yet; it is in use", "err", err)
	}
	cred.Taken("")
}

// zoomDailyLimit: a daily limit of Zoom's is used up, and every request waits
// until its reset; the admins hear of it once, and files keep their attempts.
func (st *stage) zoomDailyLimit(ctx context.Context, until time.Time) {
	st.log.Warn("zoom's daily rate limit reached; every request waits for its reset", "until", until.UTC())
	st.dailyOpen.Store(true)
	a := events.Alert{Kind: events.AlertZoomDailyLimit, Until: until.UTC(), Message: "Zoom answered that a daily API limit of the account's plan is used up " +
		"(a large backfill, or other apps of the account). zoomarchive waits for the reset, at " + until.UTC().Format(time.RFC1123) +
		", then goes on by itself. Nothing is lost meanwhile: recordings stay in Zoom and their webhooks wait in the broker."}
	if err := bus.RaiseAlert(ctx, st.js, st.kv, a); err != nil {
		st.log.Warn("cannot raise an alert", "kind", a.Kind, "err", err)
	}
}

// zoomWorks: Zoom took a request, so a refusal or a daily limit is over.
func (st *stage) zoomWorks(ctx context.Context) {
	// An answer to a request made before the limit (or to the token endpoint's
	// own count) says nothing of the reset: only one after it does.
	if time.Now().After(st.zoom.pace.Until()) && st.dailyOpen.Swap(false) {
		if err := bus.ClearAlert(ctx, st.js, st.kv, events.AlertZoomDailyLimit, "Zoom takes requests again after its daily limit's reset."); err != nil {
			st.dailyOpen.Store(true)
			st.log.Warn("cannot resolve an alert", "kind", events.AlertZoomDailyLimit, "err", err)
		}
	}
	if !st.zoomMayClear.Swap(false) {
		return
	}
	st.health.Set("zoom", nil)
	st.zoomAlerted.Store(false)
	if err := bus.ClearAlert(ctx, st.js, st.kv, events.AlertZoomRefused, "Zoom takes zoomarchive's app again."); err != nil {
		st.zoomMayClear.Store(true)
		st.log.Warn("cannot resolve an alert", "kind", events.AlertZoomRefused, "err", err)
	}
}

func (st *stage) serve(ctx context.Context, rc runConf) error {
	conn, err := bus.Open(ctx, rc.bus, st.log, rc.reg, rc.metricsAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	st.js, st.kv, st.health = conn.JS, conn.KV, conn.Health
	st.zoomMayClear.Store(true)
	st.zoom.refused = func(err error) { st.zoomRefused(ctx, err) }
	st.zoom.accepted = func() { st.zoomWorks(ctx) }
	st.zoom.dailyLimit = func(until time.Time) { st.zoomDailyLimit(ctx, until) }
	if rc.secretFile != "" {
		cred := conn.FileCredential(events.CredentialZoomClient, rc.secretFile, "")
		config.WatchFile(ctx, rc.secretFile, config.WatchEvery, func(secret string, err error) {
			st.newClientSecret(ctx, cred, secret, err)
		})
	}
	rc.key.Watch(ctx, rc.keyFile, st.log, conn)
	if err := st.zoomReady(ctx); refusal(err) {
		st.zoomRefused(ctx, err)
		return fmt.Errorf("zoom refuses the app; fix it, then start fetch again: %w", err)
	} else if err != nil && ctx.Err() == nil {
		st.log.Warn("cannot reach Zoom yet; going on", "err", err)
	}
	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
		handle func(context.Context, jetstream.Msg)
		n      int
	}{
		{events.StreamZoomEvents, jetstream.ConsumerConfig{Durable: events.ConsumerFetchEvents, FilterSubject: events.SubjectZoomEvents, MaxAckPending: 64}, st.planEvent, 1},
		// Failing jobs wait in NakWithDelay for hours; they must not use up the pending
		// slots, so FETCH_CONCURRENCY is the number of workers, not MaxAckPending.
		{events.StreamFetchJobs, jetstream.ConsumerConfig{Durable: events.ConsumerFetchJobs, MaxAckPending: 10000}, st.fetchJob, rc.concurrency},
		{events.StreamArchive, jetstream.ConsumerConfig{Durable: events.ConsumerFetchArchive, FilterSubject: events.FileVerifiedSubject(">"), MaxAckPending: 64}, st.afterVerified, 1},
	}
	var wg sync.WaitGroup
	for _, c := range consumers {
		c.cfg.AckPolicy, c.cfg.AckWait, c.cfg.DeliverPolicy = jetstream.AckExplicitPolicy, st.ackWait, jetstream.DeliverAllPolicy
		cons, err := st.js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", c.cfg.Durable, c.stream, err)
		}
		for range c.n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bus.Consume(ctx, cons, st.log, c.handle)
			}()
		}
	}
	go bus.Daily(ctx, st.kv, st.reconcileAt, events.ReconcileKey, st.worker, func(ctx context.Context) error {
		_, err := st.reconcile(ctx, st.reconcileDays, false)
		return err
	}, st.log)
	go func() {
		// At start (a restart after a kill finds its own files) and then as often as
		// a lease lasts (another worker's death).
		for {
			st.resumeAbandoned(ctx)
			if retry.Sleep(ctx, st.leaseTTL) != nil {
				return
			}
		}
	}()
	st.log.Info("ready", "metrics", conn.MetricsAddr, "concurrency", rc.concurrency, "after_archive", st.policy.action, "worker", st.worker)
	st.log.Info("the Zoom app's event subscription must send these events to the hook; without the second, a late transcript waits for the daily reconciliation",
		"events", events.RecordingEvents)
	<-ctx.Done()
	wg.Wait()
	st.log.Info("stopped")
	return nil
}
