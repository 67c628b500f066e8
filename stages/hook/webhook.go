package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"zoomarchive/shared/events"
)

const webhookPath = "/zoom/webhook"

// Outcomes, one per way a request can end; they label metrics and log lines.
const (
	outAccepted    = "accepted"      // stored in ZOOM_EVENTS
	outDuplicate   = "duplicate"     // a redelivery the stream already holds
	outValidated   = "validated"     // endpoint.url_validation answered
	outBadHeaders  = "bad_headers"   // 401
	outStale       = "stale"         // 401
	outBadSig      = "bad_signature" // 401
	outTooLarge    = "too_large"     // 413
	outBadBody     = "bad_body"      // 400
	outNotFound    = "not_found"     // 404
	outBadMethod   = "bad_method"    // 405
	outUnavailable = "unavailable"   // 503: the broker did not store it; Zoom retries
	outBadRequest  = "bad_request"   // 400/408 from fasthttp's parser
)

type hook struct {
	verify   *verifier
	nc       *nats.Conn
	js       jetstream.JetStream
	rejected atomic.Int64 // signature checks failed, for the heartbeat notify watches
	refusals logGate      // the log lines of 401s
	held     holds        // the 401s held back now
	timeout  time.Duration
	// clientIPHeader names the header a trusted proxy puts the client's address in.
	clientIPHeader string
	log            *slog.Logger
	now            func() time.Time

	requests   *prometheus.CounterVec
	latency    prometheus.Histogram
	pubFails   prometheus.Counter
	rejections *prometheus.CounterVec
	unheld     prometheus.Counter
}

// newHook is the hook without its broker connection (nc, js), which serve adds.
func newHook(v *verifier, timeout time.Duration, log *slog.Logger, reg prometheus.Registerer) *hook {
	h := &hook{
		verify: v, timeout: timeout, log: log, now: time.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zoomarchive_hook_requests_total", Help: "Webhook requests by outcome.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "zoomarchive_hook_request_seconds", Help: "Time from request to response.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3},
		}),
		pubFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zoomarchive_hook_publish_failures_total", Help: "Verified events the broker did not store (answered 503).",
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zoomarchive_hook_rejected_signatures_total", Help: "Requests refused by signature checks, by reason.",
		}, []string{"reason"}),
		unheld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zoomarchive_hook_refusals_unheld_total", Help: "Refused requests answered at once and their connection closed, because as many as may be were held back already.",
		}),
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "zoomarchive_hook_refusals_held", Help: "Refused requests held back now before their answer.",
	}, func() float64 { return float64(h.held.count()) })
	reg.MustRegister(h.requests, h.latency, h.pubFails, h.rejections, h.unheld, held)
	return h
}

// readiness is what /readyz reports.
func (h *hook) readiness() error {
	if !h.nc.IsConnected() {
		return errors.New("broker not connected")
	}
	return nil
}

// result is what one request came to.
type result struct {
	status    int
	outcome   string
	requestID string
	event     string
	detail    string
}

// refusedDelay holds back the answer to a request that is not Zoom's (no valid
// signature, or a stale one): a flood of forged requests then waits on itself
// instead of taking the cores from Zoom's (Zoom itself gets 401 only with a wrong
// secret, and waits 3 s for any answer).
const refusedDelay = 250 * time.Millisecond

// refusedHeldMax and refusedHeldBytes bound the refused requests held back at
// once, by number and by the memory their bodies keep: past either, a refusal is
// answered at once and its connection closed, so that forgers on many connections
// pin neither goroutines nor the hook's 64 MB without end. nginx never has more
// than 256 requests open to the hook (512 worker connections, two per request),
// so behind it only the bytes bound applies: 16 forged bodies of 1 MiB.
const (
	refusedHeldMax   = 256
	refusedHeldBytes = 16 << 20
)

// refusedLogEvery: of a kind of refusal, one log line at most this often, with the
// number held back since; the metrics count every one.
const refusedLogEvery = time.Second

// answer answers one request and logs it as one line.
func (h *hook) answer(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	r := h.handle(ctx)
	if r.status == http.StatusUnauthorized {
		h.holdBack(ctx)
	}
	if r.status != http.StatusOK {
		ctx.Response.Header.Set("Content-Type", "text/plain; charset=utf-8")
		ctx.SetBodyString(http.StatusText(r.status) + "\n")
	}
	ctx.SetStatusCode(r.status)
	h.finish(ctx, r, time.Since(start))
}

// holdBack waits refusedDelay before a refusal is answered while the bounds
// allow; past them the refusal goes at once and the connection is closed after it.
func (h *hook) holdBack(ctx *fasthttp.RequestCtx) {
	size := cap(ctx.Request.Body())
	if !h.held.take(size) {
		h.unheld.Inc()
		ctx.SetConnectionClose()
		return
	}
	defer h.held.give(size)
	time.Sleep(refusedDelay)
}

// holds counts the refusals held back now and the bytes their bodies keep.
type holds struct {
	mu    sync.Mutex
	n     int
	bytes int
}

// take counts one more refusal of size bytes held, if the bounds allow it.
func (s *holds) take(size int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= refusedHeldMax || s.bytes+size > refusedHeldBytes {
		return false
	}
	s.n++
	s.bytes += size
	return true
}

func (s *holds) give(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	s.bytes -= size
}

func (s *holds) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (h *hook) finish(ctx *fasthttp.RequestCtx, r result, took time.Duration) {
	h.requests.WithLabelValues(r.outcome).Inc()
	h.latency.Observe(took.Seconds())
	heldBack := 0
	if r.status == http.StatusUnauthorized {
		var log bool
		if log, heldBack = h.refusals.pass(r.outcome, time.Now()); !log {
			return
		}
	}
	level := slog.LevelInfo
	switch {
	case r.status >= 500:
		level = slog.LevelError
	case r.status >= 400:
		level = slog.LevelWarn
	}
	attrs := []any{"outcome", r.outcome, "status", r.status, "remote", ctx.RemoteIP().String(), "took", took}
	if h.clientIPHeader != "" {
		attrs = append(attrs, "client", string(ctx.Request.Header.Peek(h.clientIPHeader)))
	}
	if r.requestID != "" {
		attrs = append(attrs, "request_id", r.requestID)
	}
	if r.event != "" {
		attrs = append(attrs, "event", r.event)
	}
	if r.detail != "" {
		attrs = append(attrs, "detail", r.detail)
	}
	if heldBack > 0 {
		attrs = append(attrs, "like_it_unlogged", heldBack)
	}
	h.log.Log(context.Background(), level, "webhook", attrs...)
}

// logGate lets one log line of each kind through per refusedLogEvery and counts
// the ones it holds back.
type logGate struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// pass tells whether a line of kind goes out now, and how many were held back
// before it.
func (g *logGate) pass(kind string, now time.Time) (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		g.last, g.held = map[string]time.Time{}, map[string]int{}
	}
	if now.Sub(g.last[kind]) < refusedLogEvery {
		g.held[kind]++
		return false, 0
	}
	n := g.held[kind]
	g.last[kind], g.held[kind] = now, 0
	return true, n
}

func (h *hook) handle(ctx *fasthttp.RequestCtx) result {
	rid := requestID(ctx.Request.Header.Peek("x-zm-request-id"))
	if string(ctx.Path()) != webhookPath {
		return result{status: http.StatusNotFound, outcome: outNotFound}
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		return result{status: http.StatusMethodNotAllowed, outcome: outBadMethod}
	}
	body := ctx.PostBody()
	ts := string(ctx.Request.Header.Peek("x-zm-request-timestamp"))
	if err := h.verify.check(ts, string(ctx.Request.Header.Peek("x-zm-signature")), body, h.now()); err != nil {
		out := outBadSig
		switch err {
		case errBadHeaders:
			out = outBadHeaders
		case errStale:
			out = outStale
		}
		h.rejections.WithLabelValues(out).Inc()
		h.rejected.Add(1)
		return result{status: http.StatusUnauthorized, outcome: out, requestID: rid, detail: err.Error()}
	}

	var env events.Envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Event == "" {
		return result{status: http.StatusBadRequest, outcome: outBadBody, requestID: rid, detail: "body is not a JSON object with an event"}
	}
	if env.Event == events.EventURLValidation {
		return h.validate(ctx, env, rid)
	}
	subject, err := events.ZoomEventSubject(env.Event)
	if err != nil {
		return result{status: http.StatusBadRequest, outcome: outBadBody, requestID: rid, detail: err.Error()}
	}
	return h.publish(subject, body, env.DownloadToken, rid, ts, env.Event)
}

// validate answers Zoom's endpoint check (CRC), which comes at setup and every 72 h;
// six failures in a row disable the subscription.
func (h *hook) validate(ctx *fasthttp.RequestCtx, env events.Envelope, rid string) result {
	var p events.URLValidation
	if err := json.Unmarshal(env.Payload, &p); err != nil || p.PlainToken == "" {
		return result{status: http.StatusBadRequest, outcome: outBadBody, requestID: rid, event: env.Event, detail: "url_validation without payload.plainToken"}
	}
	answer, _ := json.Marshal(struct {
		PlainToken     string `json:"plainToken"`
		EncryptedToken string `json:"encryptedToken"`
	}{p.PlainToken, h.verify.encryptToken(p.PlainToken)})
	ctx.SetContentType("application/json")
	ctx.SetBody(answer)
	return result{status: http.StatusOK, outcome: outValidated, requestID: rid, event: env.Event}
}

// publish stores the body in ZOOM_EVENTS and answers 200 only once JetStream
// acknowledged it. The dedupe id is the body's hash: Zoom's retries of one event
// carry the same body (and x-zm-request-id, which the signature does not cover),
// so a request replayed with new request ids inside HOOK_MAX_SKEW is stored once
// too. The body is stored without download_token: fetch downloads with its own
// OAuth token, and a credential that lasts 24 h has no place in a 30-day stream.
func (h *hook) publish(subject string, body []byte, downloadToken, rid, ts, event string) result {
	r := result{requestID: rid, event: event}
	if err := h.readiness(); err != nil {
		h.pubFails.Inc()
		r.status, r.outcome, r.detail = http.StatusServiceUnavailable, outUnavailable, err.Error()
		return r
	}
	sum := sha256.Sum256(body)
	msgID := "sha256-" + hex.EncodeToString(sum[:])
	stored, err := withoutDownloadToken(body, downloadToken)
	if err != nil {
		r.status, r.outcome, r.detail = http.StatusBadRequest, outBadBody, err.Error()
		return r
	}
	msg := &nats.Msg{Subject: subject, Data: stored, Header: nats.Header{}}
	msg.Header.Set(events.HeaderZoomRequest, rid)
	msg.Header.Set(events.HeaderZoomTime, ts)
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	ack, err := h.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		h.pubFails.Inc()
		r.status, r.outcome, r.detail = http.StatusServiceUnavailable, outUnavailable, "broker did not store the event: "+err.Error()
		return r
	}
	r.status, r.outcome = http.StatusOK, outAccepted
	if ack.Duplicate {
		r.outcome = outDuplicate
	}
	return r
}

// withoutDownloadToken is body less its download_token (token, as the envelope
// read it), every other byte kept. Zoom's compact body has the pair exactly once
// and is cut there (a quote inside a string is escaped, so the unescaped pair is
// a key and its value); any other layout takes the slower way round a map.
func withoutDownloadToken(body []byte, token string) ([]byte, error) {
	if token == "" {
		return body, nil
	}
	q, _ := json.Marshal(token)
	pair := append([]byte(`"download_token":`), q...)
	if i := bytes.Index(body, pair); i >= 0 && bytes.Count(body, pair) == 1 {
		j := i + len(pair)
		switch {
		case j < len(body) && body[j] == ',':
			j++
		case i > 0 && body[i-1] == ',':
			i--
		}
		return append(append(make([]byte, 0, len(body)-(j-i)), body[:i]...), body[j:]...), nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	if _, ok := top["download_token"]; !ok {
		return body, nil
	}
	delete(top, "download_token")
	return json.Marshal(top)
}

// onParseError answers what fasthttp refused before the handler ran; a body over
// the limit is refused from its Content-Length, unread. fasthttp's words are not
// logged: they quote the line it broke on, which may be a signature.
func (h *hook) onParseError(ctx *fasthttp.RequestCtx, err error) {
	r := result{status: http.StatusBadRequest, outcome: outBadRequest, detail: "not a readable HTTP request"}
	var netErr interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		r = result{status: http.StatusRequestEntityTooLarge, outcome: outTooLarge, detail: "body over the limit"}
	case errors.As(err, &netErr) && netErr.Timeout():
		r.status, r.detail = http.StatusRequestTimeout, "the request did not arrive in time"
	}
	r.requestID = requestID(ctx.Request.Header.Peek("x-zm-request-id"))
	ctx.Error(http.StatusText(r.status)+"\n", r.status)
	h.finish(ctx, r, 0)
}

// requestID keeps x-zm-request-id when it looks like one (Zoom sends a UUID-like
// token) and drops it otherwise, so that a hostile value never reaches a header or a log.
func requestID(b []byte) string {
	if len(b) == 0 || len(b) > 64 {
		return ""
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return ""
		}
	}
	return string(b)
}
