package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
)

// zoomDeadline is how long Zoom waits for an answer before it counts a failure.
const zoomDeadline = 3 * time.Second

var settings = append([]config.Setting{
	{Name: "ZOOM_WEBHOOK_SECRET", Required: true, Secret: true, Usage: "the Zoom app's webhook secret token; comma-separated for rotation (any verifies, the first answers URL validation); from ZOOM_WEBHOOK_SECRET_FILE it is read again when the file changes"},
	{Name: "HOOK_ADDR", Default: ":8080", Usage: "webhook listener; Zoom posts to " + webhookPath},
	{Name: "METRICS_ADDR", Default: "127.0.0.1:9101", Usage: "listener for /metrics, /healthz and /readyz; keep it private", Health: "/readyz"},
	{Name: "HOOK_MAX_SKEW", Default: "300s", Usage: "largest accepted distance between x-zm-request-timestamp and now"},
	{Name: "HOOK_MAX_BODY", Default: "1MiB", Usage: "largest accepted body; larger ones get 413 unread"},
	{Name: "HOOK_CLIENT_IP_HEADER", Usage: "header holding the client's address when a proxy is in front (compose: X-Real-IP from nginx); logged as client"},
	{Name: "HOOK_PUBLISH_TIMEOUT", Default: "2s", Usage: "how long to wait for the broker's acknowledgement before answering 503; under Zoom's 3s"},
	{Name: "HOOK_PUBLIC_URL", Usage: "the webhook's address as Zoom calls it (compose: https://DOMAIN/zoom/webhook), for hook check"},
	{Name: "HOOK_CHECK_CONNECT", Usage: "hook check connects to this host:port instead of where DNS points HOOK_PUBLIC_URL's host (a new host, before DNS moves)"},
}, bus.Settings...)

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return config.Run(ctx, "hook", "Zoom webhook endpoint of zoomarchive", settings, args, getenv, stdout, stderr,
		func(ctx context.Context, v *config.Values) error {
			h, c, err := configure(v, stdout)
			if err != nil {
				return err
			}
			return h.serve(ctx, c)
		}, checkCommand(stdout))
}

// runConf is what configure reads besides the hook itself.
type runConf struct {
	bus               bus.Config
	reg               *prometheus.Registry
	addr, metricsAddr string
	maxBody           int
	secretFile        string // ZOOM_WEBHOOK_SECRET_FILE, watched for a rotation
}

// configure reads every setting and returns one error naming every problem.
func configure(v *config.Values, stdout io.Writer) (*hook, runConf, error) {
	maxSkew, maxBody, timeout := v.Duration("HOOK_MAX_SKEW"), v.Bytes("HOOK_MAX_BODY"), v.Duration("HOOK_PUBLISH_TIMEOUT")
	if timeout >= zoomDeadline {
		v.Invalid("HOOK_PUBLISH_TIMEOUT", fmt.Sprintf("%s leaves no time to answer within Zoom's %s", timeout, zoomDeadline))
	}
	if maxBody > events.MaxEventBody {
		v.Invalid("HOOK_MAX_BODY", fmt.Sprintf("must be at most %dKiB: ZOOM_EVENTS refuses larger events (Zoom's are a few KiB)", events.MaxEventBody>>10))
	}
	c := runConf{bus: bus.ReadConfig(v, events.IdentityHook), reg: obs.Registry(),
		addr: v.String("HOOK_ADDR"), metricsAddr: v.String("METRICS_ADDR"), maxBody: int(maxBody),
		secretFile: v.SecretFile("ZOOM_WEBHOOK_SECRET")}
	secrets := v.List("ZOOM_WEBHOOK_SECRET")
	if err := v.Err(); err != nil {
		return nil, c, err
	}
	h := newHook(newVerifier(secrets, maxSkew), timeout, obs.Logger(stdout, "hook"), c.reg)
	h.clientIPHeader = v.String("HOOK_CLIENT_IP_HEADER")
	return h, c, nil
}

// serve answers Zoom on c.addr until ctx ends, then finishes what is in flight.
func (h *hook) serve(ctx context.Context, c runConf) error {
	log := h.log
	conn, err := bus.Listen(c.bus, log, c.reg, c.metricsAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	h.nc, h.js = conn.NC, conn.JS
	nc := conn.NC
	if c.secretFile != "" {
		cred := conn.FileCredential(events.CredentialWebhookSecret, c.secretFile, "")
		config.WatchFile(ctx, c.secretFile, config.WatchEvery, func(content string, err error) {
			h.reloadSecrets(cred, content, err)
		})
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("HOOK_ADDR %s: %w", c.addr, err)
	}
	defer ln.Close()
	srv := &fasthttp.Server{
		Handler:                      h.answer,
		ErrorHandler:                 h.onParseError,
		MaxRequestBodySize:           c.maxBody,
		ReadBufferSize:               8 << 10,
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  90 * time.Second,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		// fasthttp's errors would quote the request they broke on, signature and all.
		SecureErrorLogMessage: true,
		Logger:                fasthttpLog{log},
	}
	if pay := nc.MaxPayload(); pay > 0 && pay < int64(c.maxBody)+events.MaxHeaders {
		log.Warn("the broker's max_payload is smaller than HOOK_MAX_BODY allows; large events will be answered 503", "max_payload", pay)
	}

	refused := make(chan error, 1)
	go func() {
		for !nc.IsConnected() {
			if err := conn.Refused(); err != nil {
				refused <- err
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		log.Info("ready")
		conn.Up(ctx, func(hb *events.Heartbeat) { hb.Stats = map[string]int64{"rejected": h.rejected.Load()} })
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "webhook", ln.Addr().String(), "path", webhookPath, "metrics", conn.MetricsAddr, "secrets", h.verify.count())

	select {
	case err := <-served:
		return fmt.Errorf("webhook listener: %w", err)
	case err := <-refused:
		return err
	case <-ctx.Done():
	}
	// Finish what is in flight: each request is at most a publish timeout away.
	log.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 2*zoomDeadline)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		log.Warn("shutdown left requests unfinished", "err", err)
	}
	nc.Drain()
	log.Info("stopped")
	return nil
}

// fasthttpLog puts fasthttp's own messages into the JSON log, its format without
// the values: those may quote a request (SecureErrorLogMessage keeps the buffer out,
// not the header line it broke on). Each request also has its own line.
type fasthttpLog struct{ log *slog.Logger }

func (l fasthttpLog) Printf(format string, _ ...any) {
	l.log.Warn("http server", "detail", format)
}

// reloadSecrets takes a new ZOOM_WEBHOOK_SECRET_FILE. A file that cannot be read or
// holds no secret leaves the secrets in use and fails /readyz until it is fixed
// (the fault goes with the heartbeat to notify).
func (h *hook) reloadSecrets(cred *bus.FileCredential, content string, err error) {
	secrets := config.SplitList(content)
	if err == nil && len(secrets) == 0 {
		err = errors.New("it holds no secret")
	}
	if err != nil {
		h.log.Error("ZOOM_WEBHOOK_SECRET_FILE cannot be used; the secrets in use stay", "err", err)
		cred.Refused("", fmt.Errorf("ZOOM_WEBHOOK_SECRET_FILE cannot be used (the earlier secrets stay in use): %w", err))
		return
	}
	h.verify.set(secrets)
	cred.Taken("")
	h.log.Info("webhook secrets reloaded", "secrets", len(secrets))
}
