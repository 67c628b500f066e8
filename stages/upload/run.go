package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/option"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/retry"
	"zoomarchive/shared/serviceaccount"
)

// upload reads CHUNKS: every file with chunks waiting gets a worker (at most
// UPLOAD_CONCURRENCY) that streams them into a Drive resumable upload (file.go),
// files it where people find it (layout.go) and verifies it.

var settings = append(append([]config.Setting{
	serviceaccount.Setting,
	serviceaccount.IAMSetting,
	adminSetting,
}, serviceaccount.DriveSettings...), append([]config.Setting{
	{Name: "DRIVE_CHUNK_SIZE", Default: "8MiB", Usage: "bytes per Drive upload request, a multiple of 256KiB; one per file in flight is kept in memory"},
	{Name: "DRIVE_TIMEZONE", Default: "UTC", Usage: "time zone of folder and file names for meetings that have none"},
	{Name: "UPLOAD_CONCURRENCY", Default: "2", Usage: "files uploaded at once"},
	{Name: "UPLOAD_MAX_MISMATCHES", Default: "3", Usage: "Drive copies that fail verification before the file job is failed"},
	{Name: "UPLOAD_AUDIT_AT", Default: "04:30", Usage: "time of the daily Drive audit (HH:MM, UTC), which archives again what was deleted from Drive; or off"},
	{Name: "UPLOAD_MAX_REFUSALS", Default: "3", Usage: "sessions in a row Drive may refuse a file for good (not for room: that pauses) before the file job is failed"},
	{Name: "UPLOAD_RECHECK", Default: "10m", Usage: "while Drive is full or Google refuses the key, how long uploads wait before trying again"},
	{Name: "UPLOAD_RETRY_BASE", Default: "1s", Usage: "first wait before a chunk is tried again (5xx, 429, rate limits, cut connections), doubling"},
	{Name: "UPLOAD_IDLE", Default: "30s", Usage: "a file whose chunks stop coming for this long gives its place to another"},
	{Name: "UPLOAD_LEASE", Default: "6s", Usage: "how long a file stays a worker's without renewal (renewed every third of it): a killed worker's file is taken over this long after"},
	{Name: "UPLOAD_TRANSCRIPT_DOC", Default: "on", Usage: "on: keep each audio transcript also as a Google Doc beside its VTT, a paragraph per speaker turn with its time; off: the VTT only"},
	{Name: "DRIVE_SHARE_HOST", Default: "off", Usage: "share each recording's folder with its host: reader, commenter, or off; only hosts of DRIVE_SHARE_DOMAINS"},
	{Name: "DRIVE_SHARE_DOMAINS", Usage: "comma-separated domains whose hosts get their recordings' folders shared (DRIVE_SHARE_HOST), e.g. theatre.example"},
	{Name: "DRIVE_SHARE_NOTIFY", Default: "off", Usage: "on: Drive mails the host when a folder is shared with them; off: shared silently (the archived mail to the admins says with whom)"},
	{Name: "DRIVE_LAYOUT", Default: defaultLayout, Usage: "folders of a recording under DRIVE_FOLDER_ID, from the top: " + placeholderList + "; the last folder is the recording's own and needs {date} (or {day}) and {time}"},
	{Name: "DRIVE_LAYOUT_RULES", Usage: "a rules file (HCL) that maps recordings to productions by topic, meeting id or host, each with its own folders, a Google Group to share with and tags; empty: none"},
	{Name: "METRICS_ADDR", Default: "127.0.0.1:9103", Usage: "listener for /metrics, /healthz and /readyz", Health: "/readyz"},
}, bus.Settings...)...)

type stage struct {
	log         *slog.Logger
	js          jetstream.JetStream
	kv          jetstream.KeyValue
	drive       *drive.Service
	res         *resumable
	root        string
	tz          *time.Location
	worker      string
	chunk       int64
	maxMismatch int
	retryBase   time.Duration
	idle        time.Duration
	lease       time.Duration
	m           metrics

	mu      sync.Mutex
	folders map[string]folderRecord
	reread  map[string]bool // files whose next consumer is made for a reread after a gap
	paused  retry.Gate      // the Drive daily upload cap, or its storage full
	health  *bus.Health

	maxRefusals int           // UPLOAD_MAX_REFUSALS
	auditAt     config.Daily  // UPLOAD_AUDIT_AT
	recheck     time.Duration // UPLOAD_RECHECK
	// transcriptDoc: UPLOAD_TRANSCRIPT_DOC
	transcriptDoc bool
	layout        layout          // DRIVE_LAYOUT, DRIVE_LAYOUT_RULES
	sharing       sharing         // DRIVE_SHARE_*
	shareEvery    time.Duration   // how often refused shares are looked at, and their first wait
	pendingShares map[string]bool // share keys to try again (share.go)
	// mayBeOpen: alerts this process may have raised, or a previous one left open;
	// the next file verified clears them.
	mayBeOpen sync.Map
}

type metrics struct {
	bytes      prometheus.Counter
	sessions   prometheus.Counter
	dropped    *prometheus.CounterVec
	resumed    prometheus.Counter
	retries    *prometheus.CounterVec
	verified   prometheus.Counter
	mismatches prometheus.Counter
	paused     prometheus.Gauge
	// indexFailures: verified files whose recording's words could not be made searchable.
	indexFailures prometheus.Counter
	shares        prometheus.Counter
	shareFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		bytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_bytes_total", Help: "Bytes sent to Drive, repeats included."}),
		sessions:   prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_sessions_total", Help: "Resumable sessions started."}),
		dropped:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zoomarchive_upload_sessions_dropped_total", Help: "Drive sessions dropped to start a file over, by reason (dropReason)."}, []string{"reason"}),
		resumed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_resumed_total", Help: "Uploads continued in an existing session after a restart."}),
		retries:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zoomarchive_upload_retries_total", Help: "Chunk retries, by reason."}, []string{"reason"}),
		verified:   prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_files_verified_total", Help: "Files verified in Drive."}),
		mismatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_mismatches_total", Help: "Drive copies that failed verification."}),
		paused:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "zoomarchive_upload_paused", Help: "1 while uploads wait for Drive: its daily cap to reset, or room in its storage."}),
	}
	m.indexFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_index_failures_total",
		Help: "Verified transcripts, videos and audio files whose recording's words could not be put in Drive's index (indexable text, the transcript's Doc)."})
	m.shares = prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_shares_total", Help: "Recordings' folders shared with their hosts."})
	m.shareFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_upload_share_failures_total", Help: "Tries to share a recording's folder that Drive refused."})
	reg.MustRegister(m.bytes, m.sessions, m.dropped, m.resumed, m.retries, m.verified, m.mismatches, m.paused, m.indexFailures, m.shares, m.shareFailures)
	return m
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return config.Run(ctx, "upload", "streams the chunk stream into Google Drive", settings, args, getenv, stdout, stderr,
		func(ctx context.Context, v *config.Values) error {
			st, c, err := configure(ctx, v, stdout)
			if err != nil {
				return err
			}
			return st.serve(ctx, c)
		}, checkCommand(stdout), auditCommand(stdout), rotateCommand(stdout), layoutCommand(stdout))
}

// runConf is what configure reads besides the stage itself.
type runConf struct {
	bus         bus.Config
	reg         *prometheus.Registry
	metricsAddr string
	concurrency int
	subject     string // DRIVE_IMPERSONATE
	key         *serviceaccount.Key
	keyFile     string // watched for a new key
}

// configure reads every setting (for the stage and its check) and returns one
// error naming every problem.
func configure(ctx context.Context, v *config.Values, stdout io.Writer) (*stage, runConf, error) {
	root, subject := v.String("DRIVE_FOLDER_ID"), v.String("DRIVE_IMPERSONATE")
	apiURL := v.String("GOOGLE_API_URL")
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/"
	}
	st := &stage{
		root: root, chunk: v.Bytes("DRIVE_CHUNK_SIZE"), maxMismatch: v.Int("UPLOAD_MAX_MISMATCHES", 1),
		maxRefusals: v.Int("UPLOAD_MAX_REFUSALS", 1), recheck: v.Duration("UPLOAD_RECHECK"), auditAt: v.Daily("UPLOAD_AUDIT_AT"),
		retryBase: v.Duration("UPLOAD_RETRY_BASE"), idle: v.Duration("UPLOAD_IDLE"), lease: v.Duration("UPLOAD_LEASE"),
		folders: map[string]folderRecord{}, reread: map[string]bool{}, transcriptDoc: v.OnOff("UPLOAD_TRANSCRIPT_DOC"),
		sharing: readSharing(v), pendingShares: map[string]bool{},
		layout: readLayout(v.String("DRIVE_LAYOUT"), v.String("DRIVE_LAYOUT_RULES"), v.Invalid),
	}
	st.shareEvery = 60 * st.retryBase // a minute by default
	if st.chunk%quantum != 0 {
		v.Invalid("DRIVE_CHUNK_SIZE", "must be a multiple of 256KiB")
	}
	var err error
	if st.tz, err = time.LoadLocation(v.String("DRIVE_TIMEZONE")); err != nil {
		v.Invalid("DRIVE_TIMEZONE", err.Error())
	}
	tokens := serviceaccount.TokenSource(v, drive.DriveScope, subject)
	bc, metricsAddr, concurrency := bus.ReadConfig(v, events.IdentityUpload), v.String("METRICS_ADDR"), v.Int("UPLOAD_CONCURRENCY", 1)
	if err := v.Err(); err != nil {
		return nil, runConf{}, err
	}
	reg := obs.Registry()
	st.log = obs.Logger(stdout, "upload")
	st.m = newMetrics(reg)
	st.worker = "upload-" + nats.NewInbox()[len("_INBOX."):]
	client := driveClient(tokens)
	st.res = &resumable{client: client, base: apiURL}
	if st.drive, err = drive.NewService(ctx, option.WithHTTPClient(client), option.WithEndpoint(apiURL+"drive/v3/")); err != nil {
		return nil, runConf{}, err
	}
	return st, runConf{bus: bc, reg: reg, metricsAddr: metricsAddr, concurrency: concurrency, subject: subject,
		key: tokens, keyFile: v.String(serviceaccount.Setting.Name)}, nil
}

// dialed is the stage for a one-off command, on the broker as upload; a broker
// that does not answer within 30 s ends the command.
func dialed(ctx context.Context, v *config.Values) (*stage, runConf, *bus.Conn, error) {
	st, rc, err := configure(ctx, v, io.Discard)
	if err != nil {
		return nil, rc, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := bus.Dial(dctx, rc.bus, st.log)
	if err != nil && dctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("the broker (NATS_URL) did not answer within 30 s: %w", err)
	}
	if err != nil {
		return nil, rc, nil, err
	}
	st.js, st.kv = conn.JS, conn.KV
	return st, rc, conn, nil
}

// driveClient is authenticated and does not follow redirects: Drive's 308 is an answer.
func driveClient(tokens oauth2.TokenSource) *http.Client {
	return &http.Client{
		Transport: &oauth2.Transport{Source: tokens, Base: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (st *stage) serve(ctx context.Context, rc runConf) error {
	if err := st.checkDrive(ctx, rc.subject); err != nil {
		return err
	}
	conn, err := bus.Open(ctx, rc.bus, st.log, rc.reg, rc.metricsAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	st.js, st.kv, st.health = conn.JS, conn.KV, conn.Health
	rc.key.Watch(ctx, rc.keyFile, st.log, conn)
	// Alerts a previous process left open are cleared by the first file verified.
	for _, kind := range driveAlerts {
		st.mayBeOpen.Store(kind, true)
	}
	st.log.Info("ready", "metrics", conn.MetricsAddr, "concurrency", rc.concurrency, "chunk_size", st.chunk, "worker", st.worker)
	st.resendRefetches(ctx)
	go st.retryShares(ctx)
	go bus.Daily(ctx, st.kv, st.auditAt, events.AuditKey, st.worker, func(ctx context.Context) error {
		_, err := st.audit(ctx)
		return err
	}, st.log)
	st.schedule(ctx, rc.concurrency)
	st.log.Info("stopped")
	return nil
}

// checkDrive looks at DRIVE_FOLDER_ID with the credentials before anything else, so
// that a wrong key, a refused delegation, a folder not shared or a service account
// without storage is reported at start, in words.
func (st *stage) checkDrive(ctx context.Context, subject string) error {
	for try := 0; ; try++ {
		f, err := st.drive.Files.Get(st.root).SupportsAllDrives(true).Fields("id,name,mimeType,driveId").Context(ctx).Do()
		if err == nil {
			if f.MimeType != folderMime {
				return fmt.Errorf("DRIVE_FOLDER_ID %s is %q, not a folder", st.root, f.Name)
			}
			if subject == "" && f.DriveId == "" {
				return st.probeQuota(ctx)
			}
			st.log.Info("drive folder found", "folder", f.Name, "shared_drive", f.DriveId != "", "as", cmp.Or(subject, "the service account"))
			return nil
		}
		if msg := st.explain(err); msg != err {
			return msg
		}
		if notFound(err) {
			return fmt.Errorf("DRIVE_FOLDER_ID %s: no such folder visible to %s; share it with the service account or add the account to the shared drive", st.root, cmp.Or(subject, "the service account"))
		}
		if ctx.Err() != nil {
			return nil
		}
		st.log.Warn("cannot reach Drive yet; retrying", "err", err)
		retry.Sleep(ctx, retry.Backoff(time.Second, try))
	}
}

// probeQuota: acting as itself outside a shared drive, the service account can
// store nothing; one small upload tells for sure, and says so plainly.
func (st *stage) probeQuota(ctx context.Context) error {
	f, err := st.drive.Files.Create(&drive.File{Name: ".zoomarchive-check", Parents: []string{st.root}}).
		Media(strings.NewReader("check")).SupportsAllDrives(true).Fields("id").Context(ctx).Do()
	if err != nil {
		return st.explain(err)
	}
	if err := st.drive.Files.Delete(f.Id).SupportsAllDrives(true).Context(ctx).Do(); err != nil && !notFound(err) {
		// The proof stands; only a 5-byte file is left over, named for what it is.
		st.log.Warn("cannot delete the storage check file; delete it by hand", "name", ".zoomarchive-check", "drive_id", f.Id, "err", err)
	}
	st.log.Info("drive folder found; the service account can store files there")
	return nil
}

// explain turns the errors that mean a setting is wrong into what to fix.
func (st *stage) explain(err error) error {
	if e := serviceaccount.Explain(err, drive.DriveScope, "check DRIVE_IMPERSONATE"); e != err {
		return e
	}
	if classifyDrive(err) == driveFull {
		return errors.New("drive refused the upload: service accounts have no storage. Put DRIVE_FOLDER_ID in a shared drive (and add the service account to it), or set DRIVE_IMPERSONATE to a Workspace user (domain-wide delegation)")
	}
	return err
}

// folderFor finds or makes <root>/<year>/<month>/<recording> for a job.
func (st *stage) folderFor(ctx context.Context, job events.FileJob) (folderRecord, error) {
	parent := folderRecord{ID: st.root}
	names := st.layout.place(job.Recording, st.tz).folders
	for i, name := range names {
		var props map[string]string
		desc := ""
		if i == len(names)-1 {
			props, desc = st.tagsFor(job, false), describe(job, false, st.tz, "")
		}
		var err error
		if parent, err = st.folder(ctx, parent.ID, name, props, desc); err != nil {
			return parent, err
		}
	}
	st.share(ctx, job.Recording, parent)
	return parent, nil
}

// schedule starts a worker for each file with chunks waiting, up to concurrency.
func (st *stage) schedule(ctx context.Context, concurrency int) {
	active := map[string]bool{}
	notBefore := map[string]time.Time{}
	done := make(chan struct {
		key   string
		again time.Duration
	})
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, key := range st.waiting(ctx) {
			if len(active) >= concurrency {
				break
			}
			if active[key] || time.Now().Before(notBefore[key]) {
				continue
			}
			active[key] = true
			go func() {
				again := st.uploadFile(ctx, key)
				done <- struct {
					key   string
					again time.Duration
				}{key, again}
			}()
		}
		select {
		case <-ctx.Done():
			for len(active) > 0 {
				delete(active, (<-done).key)
			}
			return
		case d := <-done:
			delete(active, d.key)
			notBefore[d.key] = time.Now().Add(d.again)
		case <-tick.C:
		}
	}
}

// waiting are the files with chunk messages in CHUNKS, oldest subjects first.
func (st *stage) waiting(ctx context.Context) []string {
	s, err := st.js.Stream(ctx, events.StreamChunks)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = s.Info(ctx, jetstream.WithSubjectFilter(events.SubjectChunks))
	}
	if err != nil {
		if ctx.Err() == nil {
			st.log.Warn("cannot see the chunk stream; trying again", "err", err)
		}
		return nil
	}
	var keys []string
	for subj, n := range info.State.Subjects {
		if n > 0 {
			keys = append(keys, events.FileKeyOf(subj))
		}
	}
	sort.Strings(keys)
	return keys
}

// pauseFor pauses uploads for Drive's daily cap or a full Drive, whichever a says.
func (st *stage) pauseFor(ctx context.Context, a driveAnswer) {
	switch a {
	case driveDailyCap:
		st.pauseForDailyCap(ctx)
	case driveFull:
		st.pauseForFullDrive(ctx)
	}
}

// pauseForFullDrive: Drive refuses uploads for want of room. Uploads wait
// UPLOAD_RECHECK and try again, by themselves, until there is room; the
// admins hear of it once, and once more when an upload goes through again.
func (st *stage) pauseForFullDrive(ctx context.Context) {
	if !st.paused.Close(time.Now().Add(st.recheck)) {
		return // paused already
	}
	st.m.paused.Set(1)
	time.AfterFunc(st.recheck, func() { st.m.paused.Set(0) })
	st.log.Warn("drive storage full; uploads paused", "recheck_in", st.recheck)
	st.alert(ctx, events.Alert{Kind: events.AlertDriveFull, Message: fmt.Sprintf(
		"Google Drive is full: it refuses uploads (storageQuotaExceeded). Free space in Drive (empty its trash) or buy storage for the account that owns the folder. "+
			"Nothing is lost meanwhile: recordings stay in Zoom, and zoomarchive tries again every %s by itself.", st.recheck)})
}

// googleRefused: Google refuses upload's key (revoked, deleted, the delegation
// removed). Uploads wait; /readyz fails so that compose shows it; one alert.
func (st *stage) googleRefused(ctx context.Context, err error) {
	why := serviceaccount.Explain(err, drive.DriveScope, "check DRIVE_IMPERSONATE")
	st.log.Error("google refuses upload's key; uploads wait", "err", why)
	st.health.Set("google", why)
	st.alert(ctx, events.Alert{Kind: events.AlertDriveRefused, Message: "Uploads to Drive have stopped: " + why.Error() +
		". Nothing is lost meanwhile: recordings stay in Zoom, and uploads go on once Google takes the key again."})
}

// driveAlerts are the alerts upload raises; a file verified ends each.
var driveAlerts = []string{events.AlertDriveDailyCap, events.AlertDriveFull, events.AlertDriveRefused}

// driveWorks: a file went through, so what kept uploads from Drive is over.
func (st *stage) driveWorks(ctx context.Context) {
	st.health.Set("google", nil)
	for _, kind := range driveAlerts {
		if _, open := st.mayBeOpen.LoadAndDelete(kind); !open {
			continue
		}
		msg := "Uploads to Drive go through again."
		if err := bus.ClearAlert(ctx, st.js, st.kv, kind, msg); err != nil {
			st.mayBeOpen.Store(kind, true)
			st.log.Warn("cannot resolve an alert", "kind", kind, "err", err)
		}
	}
}

// alert raises a once until cleared.
func (st *stage) alert(ctx context.Context, a events.Alert) {
	st.mayBeOpen.Store(a.Kind, true)
	if err := bus.RaiseAlert(ctx, st.js, st.kv, a); err != nil {
		st.log.Warn("cannot raise an alert", "kind", a.Kind, "err", err)
	}
}

// pauseForDailyCap: Drive takes no more uploads today (750 GB a day per user, reset
// at midnight Pacific time). Uploads wait instead of burning attempts; notify hears
// of it once a day.
func (st *stage) pauseForDailyCap(ctx context.Context) {
	pt, _ := time.LoadLocation("America/Los_Angeles") // cannot fail: main links time/tzdata
	now := time.Now().In(pt)
	until := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 5, 0, 0, pt)
	if !st.paused.Close(until) {
		return // paused already
	}
	st.m.paused.Set(1)
	time.AfterFunc(time.Until(until), func() { st.m.paused.Set(0) })
	st.log.Warn("drive daily upload cap reached; uploads paused", "until", until)
	st.alert(ctx, events.Alert{Kind: events.AlertDriveDailyCap, Until: until.UTC(),
		Message: "Google Drive's daily upload cap (750 GB per user) is reached; uploads wait for it to reset at midnight Pacific time. Nothing is lost meanwhile."})
}
