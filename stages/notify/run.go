package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/retry"
	"zoomarchive/shared/serviceaccount"
)

// notify reads ARCHIVE (recordings archived, files failed, alerts) and mails the
// admins through Gmail as GMAIL_SENDER; it watches the pipeline for alerts of its
// own and sends a daily digest (both in watch.go).

var settings = append([]config.Setting{
	serviceaccount.Setting,
	serviceaccount.IAMSetting,
	{Name: "KEY_MAX_AGE", Default: "2160h", Usage: "a Google key older than this (90 days) raises an alert until it is rotated (upload rotate-key)"},
	{Name: "GMAIL_SENDER", Required: true, Usage: "the Workspace user mail is sent as (domain-wide delegation, scope gmail.send)"},
	{Name: "NOTIFY_TO", Required: true, Usage: "comma-separated admin addresses"},
	{Name: "GMAIL_API_URL", Default: "https://gmail.googleapis.com/", Usage: "Gmail's API root"},
	{Name: "NOTIFY_TIMEZONE", Default: "UTC", Usage: "time zone of the digest and of meetings that come without one"},
	{Name: "NOTIFY_DIGEST_AT", Default: "08:00", Usage: "local time of the daily digest (HH:MM), or off"},
	{Name: "NOTIFY_MAX_PER_HOUR", Default: "30", Usage: "mails an hour at most; the rest go into the next digest"},
	{Name: "NOTIFY_REJECTED_BURST", Default: "20", Usage: "rejected webhooks within 10 minutes that make an alert"},
	{Name: "NOTIFY_STAGE_SILENT", Default: "3m", Usage: "a stage silent this long makes an alert"},
	{Name: "NOTIFY_WINDOW_FULL_FOR", Default: "15m", Usage: "a full chunk stream for this long makes an alert"},
	{Name: "NOTIFY_ZOOM_STORAGE_ALERT", Default: "80", Usage: "percent of the Zoom plan's cloud recording storage in use that makes an alert (recordings are not leaving Zoom), checked with each digest; or off"},
	{Name: "NOTIFY_CHECK_EVERY", Default: "30s", Usage: "how often the pipeline is looked at for alerts"},
	{Name: "NOTIFY_RETRY_DELAY", Default: "1m", Usage: "a mail Gmail would not take waits this long before it is tried again"},
	{Name: "HEARTBEAT_URL", Usage: "optional: a URL an outside monitor (a cron-ping service) expects a GET on; pinged every HEARTBEAT_EVERY while every stage is healthy, so its silence is the alarm when mail cannot go"},
	{Name: "HEARTBEAT_EVERY", Default: "5m", Usage: "how often HEARTBEAT_URL is pinged"},
	{Name: "CERT_CHECK_URL", Usage: "optional: the public https URL whose certificate is checked once a day (the hook's, e.g. https://archive.example.org/)"},
	{Name: "CERT_CHECK_CA", Usage: "optional: a PEM file of the CA to check CERT_CHECK_URL's certificate against, instead of the system's (a private CA)"},
	{Name: "CERT_WARN_BEFORE", Default: "336h", Usage: "alert when CERT_CHECK_URL's certificate expires within this (14 days)"},
	{Name: "METRICS_ADDR", Default: "127.0.0.1:9104", Usage: "listener for /metrics, /healthz and /readyz", Health: "/readyz"},
}, bus.Settings...)

type stage struct {
	log       *slog.Logger
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	gmail     *gmail.Service
	sender    string
	to        []string
	tz        *time.Location
	digestAt  string // HH:MM[:SS], or "off"
	maxHour   int
	burst     int64
	silent    time.Duration
	fullFor   time.Duration
	every     time.Duration
	retry     time.Duration
	now       func() time.Time
	m         metrics
	rejects   []sample // the hook's rejected count over the last 10 minutes
	fullSince time.Time
	health    *bus.Health
	// zoomFull: NOTIFY_ZOOM_STORAGE_ALERT, in percent; 0 is off.
	zoomFull float64

	heartbeatURL   string
	heartbeatEvery time.Duration
	lastPing       time.Time
	cert           certCheck

	tokens    *serviceaccount.Key // gmail.send as GMAIL_SENDER, with the key in use
	keyFile   string              // watched for a new key
	iamURL    string
	keyMaxAge time.Duration // KEY_MAX_AGE
	keyAgeMu  sync.Mutex
	keyAge    keyAge
}

type metrics struct {
	sent     *prometheus.CounterVec
	overflow prometheus.Counter
	failures prometheus.Counter
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return config.Run(ctx, "notify", "mails zoomarchive's admins through Gmail", settings, args, getenv, stdout, stderr,
		func(ctx context.Context, v *config.Values) error {
			st, c, err := configure(ctx, v, stdout)
			if err != nil {
				return err
			}
			// The token says at once whether the delegation works.
			if err := gmailToken(st.tokens); err != nil {
				return err
			}
			return st.serve(ctx, c)
		}, checkCommand(stdout))
}

// runConf is what configure reads besides the stage itself.
type runConf struct {
	bus         bus.Config
	reg         *prometheus.Registry
	metricsAddr string
}

// configure reads every setting (for the stage and its check) and returns one
// error naming every problem.
func configure(ctx context.Context, v *config.Values, stdout io.Writer) (*stage, runConf, error) {
	st := &stage{
		sender: v.String("GMAIL_SENDER"), to: v.List("NOTIFY_TO"), digestAt: v.String("NOTIFY_DIGEST_AT"),
		maxHour: v.Int("NOTIFY_MAX_PER_HOUR", 1), burst: int64(v.Int("NOTIFY_REJECTED_BURST", 1)),
		silent: v.Duration("NOTIFY_STAGE_SILENT"), fullFor: v.Duration("NOTIFY_WINDOW_FULL_FOR"),
		every: v.Duration("NOTIFY_CHECK_EVERY"), retry: v.Duration("NOTIFY_RETRY_DELAY"), now: time.Now,
		heartbeatURL: v.String("HEARTBEAT_URL"), heartbeatEvery: v.Duration("HEARTBEAT_EVERY"),
		cert: readCertCheck(v), iamURL: v.String(serviceaccount.IAMSetting.Name), keyMaxAge: v.Duration("KEY_MAX_AGE"),
	}
	if u, err := url.Parse(st.heartbeatURL); st.heartbeatURL != "" && (err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http") {
		v.Invalid("HEARTBEAT_URL", "not an http(s) URL")
	}
	for _, a := range append([]string{st.sender}, st.to...) {
		if a == "" {
			continue
		}
		if addr, err := netmail.ParseAddress(a); err != nil || addr.Address != a {
			v.Invalid(map[bool]string{true: "GMAIL_SENDER", false: "NOTIFY_TO"}[a == st.sender], fmt.Sprintf("%q is not a plain mail address", a))
		}
	}
	var err error
	if st.tz, err = time.LoadLocation(v.String("NOTIFY_TIMEZONE")); err != nil {
		v.Invalid("NOTIFY_TIMEZONE", err.Error())
	}
	if st.silent > 0 && st.silent < 2*bus.HeartbeatEvery {
		v.Invalid("NOTIFY_STAGE_SILENT", fmt.Sprintf("at least %s: stages report every %s", 2*bus.HeartbeatEvery, bus.HeartbeatEvery))
	}
	if _, err := nextDigest(st.digestAt, time.Now(), time.UTC); err != nil {
		v.Invalid("NOTIFY_DIGEST_AT", err.Error())
	}
	if raw := v.String("NOTIFY_ZOOM_STORAGE_ALERT"); raw != "off" {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(raw), "%"))
		if err != nil || n < 1 || n > 100 {
			v.Invalid("NOTIFY_ZOOM_STORAGE_ALERT", fmt.Sprintf("%q is not a percent from 1 to 100, or off", raw))
		}
		st.zoomFull = float64(n)
	}
	apiURL := v.String("GMAIL_API_URL")
	src := serviceaccount.TokenSource(v, gmail.GmailSendScope, st.sender)
	bc, metricsAddr := bus.ReadConfig(v, events.IdentityNotify), v.String("METRICS_ADDR")
	if err := v.Err(); err != nil {
		return nil, runConf{}, err
	}
	client := &http.Client{Transport: &oauth2.Transport{Source: src}, Timeout: time.Minute}
	if st.gmail, err = gmail.NewService(ctx, option.WithHTTPClient(client), option.WithEndpoint(apiURL)); err != nil {
		return nil, runConf{}, err
	}
	reg := obs.Registry()
	st.log = obs.Logger(stdout, "notify")
	st.m = metrics{
		sent:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zoomarchive_notify_mails_sent_total", Help: "Mails sent, by kind."}, []string{"kind"}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_notify_mails_over_cap_total", Help: "Mails held for the digest by the hourly cap."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "zoomarchive_notify_send_failures_total", Help: "Sends that failed after retries; the event stays queued."}),
	}
	reg.MustRegister(st.m.sent, st.m.overflow, st.m.failures)
	st.tokens, st.keyFile = src, v.String(serviceaccount.Setting.Name)
	return st, runConf{bus: bc, reg: reg, metricsAddr: metricsAddr}, nil
}

// gmailToken asks for a token to send as GMAIL_SENDER: it works only when the
// domain-wide delegation holds the gmail.send scope for the service account and
// the sender is a user of the domain, and says which is wrong otherwise.
func gmailToken(src oauth2.TokenSource) error {
	if _, err := src.Token(); err != nil {
		if e := serviceaccount.Explain(err, gmail.GmailSendScope, "check GMAIL_SENDER"); e != err {
			return e
		}
		return fmt.Errorf("google token: %w", err)
	}
	return nil
}

func (st *stage) serve(ctx context.Context, rc runConf) error {
	conn, err := bus.Open(ctx, rc.bus, st.log, rc.reg, rc.metricsAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	st.js, st.kv, st.health = conn.JS, conn.KV, conn.Health
	st.tokens.Watch(ctx, st.keyFile, st.log, conn)
	cons, err := st.js.CreateOrUpdateConsumer(ctx, events.StreamArchive, jetstream.ConsumerConfig{
		Durable: events.ConsumerNotify, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Minute, MaxAckPending: 100,
		FilterSubjects: []string{events.RecordingArchivedSubject(">"), events.FileFailedSubject(">"), events.AlertSubject(">")},
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", events.ConsumerNotify, err)
	}
	go st.watch(ctx)
	go st.digests(ctx)
	st.log.Info("ready", "metrics", conn.MetricsAddr, "to", len(st.to), "digest_at", st.digestAt)
	bus.Consume(ctx, cons, st.log, st.handle)
	st.log.Info("stopped")
	return nil
}

// handle turns one ARCHIVE message into one mail, once.
func (st *stage) handle(ctx context.Context, msg jetstream.Msg) {
	subject := msg.Subject()
	var m mail
	var kind, summary string
	switch {
	case strings.HasPrefix(subject, events.RecordingArchivedSubject("")):
		var a events.RecordingArchived
		if json.Unmarshal(msg.Data(), &a) != nil {
			msg.TermWithReason("unreadable")
			return
		}
		kind, m = "archived", archivedMail(a, st.folderShare(ctx, a.Key), st.tz)
		summary = fmt.Sprintf("archived: %s (%s), %d files", a.Recording.Topic, localTime(a.Recording, st.tz), len(a.Files))
	case strings.HasPrefix(subject, events.FileFailedSubject("")):
		var f events.FileFailed
		if json.Unmarshal(msg.Data(), &f) != nil {
			msg.TermWithReason("unreadable")
			return
		}
		kind, m = "failed", failedMail(f, st.tz)
		summary = fmt.Sprintf("not archived: %s of %s: %s", f.FileType, f.Recording.Topic, f.Reason)
	default:
		var a events.Alert
		if json.Unmarshal(msg.Data(), &a) != nil {
			msg.TermWithReason("unreadable")
			return
		}
		kind, m = "alert", alertMail(a, st.tz)
		summary = alertTitle(a.Kind) + ": " + a.Message
		if a.Resolved {
			summary = "resolved: " + summary
		}
	}
	id := msg.Headers().Get(events.HeaderNatsMsgID)
	if id == "" {
		meta, err := msg.Metadata()
		if err != nil { // only a message not from the stream has neither
			st.log.Error("message without an id or JetStream metadata; skipped", "kind", kind, "err", err)
			msg.TermWithReason("no id")
			return
		}
		id = fmt.Sprintf("seq%d", meta.Sequence.Stream)
	}
	err := st.send(ctx, kind, safeKey(id), m, summary)
	st.mailWorks(err)
	if err != nil {
		st.m.failures.Inc()
		st.log.Error("mail not sent; it stays queued", "kind", kind, "id", id, "err", err)
		msg.NakWithDelay(st.retry)
		return
	}
	msg.Ack()
}

// mailWorks keeps a refused Google key as a fault: /readyz fails, the heartbeat
// carries it and HEARTBEAT_URL is no longer pinged, the ways left to say that no
// mail can go.
func (st *stage) mailWorks(err error) {
	var rerr *oauth2.RetrieveError
	switch {
	case err == nil:
		st.health.Set("google", nil)
	case errors.As(err, &rerr):
		st.health.Set("google", serviceaccount.Explain(err, gmail.GmailSendScope, "check GMAIL_SENDER"))
	}
}

// sent records the mails that went out, so a restart or a replay sends none twice.
type sentRecord struct {
	At      time.Time `json:"at"`
	Subject string    `json:"subject"`
	GmailID string    `json:"gmail_id,omitempty"`
}

// send mails m unless it went out before (notify.sent.<kind>.<id>) or the hourly cap
// is reached, in which case it waits for the digest (notify.overflow.<kind>.<id>).
func (st *stage) send(ctx context.Context, kind, id string, m mail, summary string) error {
	sentKey := events.NotifyKey("sent." + kind + "." + id)
	if _, found, err := bus.Get[sentRecord](ctx, st.kv, sentKey); err != nil || found {
		return err
	}
	if kind != "digest" && !st.underCap(ctx) {
		st.m.overflow.Inc()
		st.log.Warn("hourly mail cap reached; this mail goes into the next digest", "kind", kind, "id", id)
		b, _ := json.Marshal(sentRecord{At: st.now().UTC(), Subject: summary})
		st.kv.Put(ctx, events.NotifyKey("overflow."+kind+"."+id), b)
		_, err := st.kv.Put(ctx, sentKey, b) // handled: it is in the digest now
		return err
	}
	raw := render(m, st.sender, st.to, st.now(), "")
	var gid string
	var err error
	for try := 0; try < 4; try++ {
		var res *gmail.Message
		res, err = st.gmail.Users.Messages.Send("me", &gmail.Message{Raw: base64.URLEncoding.EncodeToString(raw)}).Context(ctx).Do()
		if err == nil {
			gid = res.Id
			break
		}
		var gerr *googleapi.Error
		if errors.As(err, &gerr) && gerr.Code != http.StatusTooManyRequests && gerr.Code < 500 {
			if len(gerr.Errors) > 0 && gerr.Errors[0].Reason == "failedPrecondition" {
				err = fmt.Errorf("gmail refused (failedPrecondition): the service account must act as GMAIL_SENDER through domain-wide delegation: %w", err)
			}
			break
		}
		retry.Sleep(ctx, retry.Backoff(250*time.Millisecond, try)) // then the mail waits NOTIFY_RETRY_DELAY
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(sentRecord{At: st.now().UTC(), Subject: m.Subject, GmailID: gid})
	if _, err := st.kv.Put(ctx, sentKey, b); err != nil {
		return err
	}
	st.m.sent.WithLabelValues(kind).Inc()
	st.log.Info("mail sent", "kind", kind, "id", id, "gmail_id", gid)
	return nil
}

// underCap counts this mail against the hour's cap; false when the cap is reached.
func (st *stage) underCap(ctx context.Context) bool {
	under := false
	bus.Update(ctx, st.kv, events.NotifyKey("count."+st.now().UTC().Format("2006010215")), func(n *int, _ bool) error {
		if *n >= st.maxHour {
			return bus.ErrNoChange
		}
		*n++
		under = true
		return nil
	})
	return under
}

// safeKey makes an id usable in a key: letters, digits, - and _ only.
func safeKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// folderShare is upload's record of how the recording's folder was shared, if it
// was to be; a record that does not read is left out of the mail.
func (st *stage) folderShare(ctx context.Context, meetingKey string) *events.FolderShare {
	s, found, err := bus.Get[events.FolderShare](ctx, st.kv, events.ShareKey(meetingKey))
	if err != nil || !found {
		return nil
	}
	return &s
}
