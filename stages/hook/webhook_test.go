package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// recordingBody is a recording.completed as Zoom sends it: compact, raw UTF-8, a
// UUID with '/', '+' and '==', a field this code does not know.
const recordingBody = `{"payload":{"account_id":"AAAAAABBBB","object":{"uuid":"/ajXp+112QmS7gqgP3ep==","id":81234567890,"host_id":"x1yCzABCDEfg23HiJKl4mN","topic":"Probe: Der Kirschgarten – Akt 2 ✓","type":8,"start_time":"2026-03-14T18:30:00Z","timezone":"Europe/Helsinki","duration":95,"total_size":2048,"recording_count":1,"brand_new_field":{"x":1},"recording_files":[{"id":"ed6c2f27-2ae7-42f4-b3d0-835b493e4fa8","meeting_id":"/ajXp+112QmS7gqgP3ep==","recording_start":"2026-03-14T18:31:00Z","recording_end":"2026-03-14T20:05:00Z","file_type":"MP4","file_extension":"MP4","file_size":2048,"play_url":"https://example.com/rec/play/A","download_url":"https://example.com/rec/download/A","status":"completed","recording_type":"shared_screen_with_speaker_view"}]}},"event_ts":1773513000000,"event":"recording.completed","download_token":"eyJhbGciOiJIUzUxMiJ9.secret-download-token"}`

func TestEventStoredOnceAcrossZoomRetries(t *testing.T) {
	natsURL, h := newStack(t)
	d := standins.Delivery{Body: []byte(recordingBody), RequestID: standins.NewZoomRequestID()}
	start := time.Now()
	var sigs []string
	for i := 0; i < 3; i++ {
		// Zoom retries later with a new timestamp and signature, same body and id.
		h.zoom.Now = func() time.Time { return start.Add(time.Duration(i) * 70 * time.Second) }
		req, _ := h.zoom.Request(context.Background(), d)
		sigs = append(sigs, req.Header.Get("x-zm-signature"))
		status, _, err := h.zoom.Send(context.Background(), d)
		if err != nil || status != http.StatusOK {
			t.Fatalf("delivery %d: status %d, err %v", i+1, status, err)
		}
	}
	if sigs[0] == sigs[1] || sigs[1] == sigs[2] {
		t.Fatal("the retries were not re-signed; the test would not prove dedupe by request id")
	}
	msgs := storedEvents(t, natsURL)
	if len(msgs) != 1 {
		t.Fatalf("stored %d events, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "zoom.event.recording.completed" {
		t.Errorf("subject %q", m.Subject)
	}
	assertStoredAsSent(t, m.Data, []byte(recordingBody))
	if got := m.Header.Get(events.HeaderZoomRequest); got != d.RequestID {
		t.Errorf("request id header %q, want %q", got, d.RequestID)
	}
	if got := m.Header.Get(events.HeaderZoomTime); got != fmt.Sprint(start.Unix()) {
		t.Errorf("timestamp header %q, want the first attempt's %d", got, start.Unix())
	}
	if got := m.Header.Get(events.HeaderNatsMsgID); !strings.HasPrefix(got, "sha256-") {
		t.Errorf("dedupe id %q, want the body's hash", got)
	}
	if a, dup := h.metric(t, `zoomarchive_hook_requests_total{outcome="accepted"}`), h.metric(t, `zoomarchive_hook_requests_total{outcome="duplicate"}`); a != 1 || dup != 2 {
		t.Errorf("metrics: accepted %v duplicate %v, want 1 and 2", a, dup)
	}
	// The stored event parses into the contract, unknown field and all.
	var env events.Envelope
	var p events.RecordingPayload
	if err := json.Unmarshal(m.Data, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Object.UUID != "/ajXp+112QmS7gqgP3ep==" || p.Object.ID != 81234567890 || p.Object.Extra["brand_new_field"] == nil {
		t.Errorf("payload did not parse as sent: %+v", p.Object)
	}
	assertNoSecretsLogged(t, h, sigs...)
}

// x-zm-request-id is not signed: one captured request replayed within the
// timestamp window with new request ids (or none) is still one event.
func TestReplayWithNewRequestIDsStoredOnce(t *testing.T) {
	natsURL, h := newStack(t)
	now := time.Now()
	h.zoom.Now = func() time.Time { return now }
	for _, rid := range []string{standins.NewZoomRequestID(), standins.NewZoomRequestID(), standins.NewZoomRequestID(),
		standins.NewZoomRequestID(), standins.NewZoomRequestID(), ""} {
		d := standins.Delivery{Body: []byte(recordingBody), RequestID: rid}
		if status, _, err := h.zoom.Send(context.Background(), d); err != nil || status != http.StatusOK {
			t.Fatalf("status %d, err %v", status, err)
		}
	}
	msgs := storedEvents(t, natsURL)
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0].Header.Get(events.HeaderNatsMsgID), "sha256-") {
		t.Fatalf("want one event deduped on the body hash, got %d", len(msgs))
	}
}

// assertStoredAsSent: the stored event is the body without download_token, every
// other field byte for byte.
func assertStoredAsSent(t *testing.T, stored, sent []byte) {
	t.Helper()
	var got, want map[string]json.RawMessage
	if err := json.Unmarshal(stored, &got); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(sent, &want)
	if _, ok := got["download_token"]; ok || bytes.Contains(stored, []byte("secret-download-token")) {
		t.Errorf("download_token stored: %s", stored)
	}
	delete(want, "download_token")
	if len(got) != len(want) {
		t.Errorf("fields %d, want %d", len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Errorf("%s stored as %s, want %s", k, got[k], v)
		}
	}
}

func TestURLValidationAnswered(t *testing.T) {
	natsURL, h := newStack(t)
	d, _ := standins.NewDelivery(events.EventURLValidation, map[string]string{"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}, "")
	req, _ := h.zoom.Request(context.Background(), d)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("validation took %s; Zoom allows 3s", took)
	}
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	want := map[string]string{"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": crcEncrypted}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("answer %v, want %v", got, want)
	}
	if n := len(storedEvents(t, natsURL)); n != 0 {
		t.Errorf("validation stored %d events; it must not be published", n)
	}
}

func TestRejectionsPublishNothing(t *testing.T) {
	natsURL, h := newStack(t)
	now := fmt.Sprint(time.Now().Unix())
	sign := func(body string) string { return standins.SignZoom(testSecret, now, []byte(body)) }
	cases := []struct {
		name, method, path, ts, sig, body string
		want                              int
	}{
		{"no headers", "POST", webhookPath, "", "", recordingBody, 401},
		{"no signature", "POST", webhookPath, now, "", recordingBody, 401},
		{"malformed signature", "POST", webhookPath, now, "v0=xyz", recordingBody, 401},
		{"timestamp in ms", "POST", webhookPath, now + "000", sign(recordingBody), recordingBody, 401},
		{"stale timestamp", "POST", webhookPath, fmt.Sprint(time.Now().Unix() - 301), "", recordingBody, 401},
		{"wrong secret", "POST", webhookPath, now, standins.SignZoom("other", now, []byte(recordingBody)), recordingBody, 401},
		{"body changed after signing", "POST", webhookPath, now, sign(recordingBody), strings.Replace(recordingBody, "Akt 2", "Akt 3", 1), 401},
		{"signed, not JSON", "POST", webhookPath, now, sign("not json"), "not json", 400},
		{"signed, JSON array", "POST", webhookPath, now, sign(`[{"event":"x"}]`), `[{"event":"x"}]`, 400},
		{"signed, no event", "POST", webhookPath, now, sign(`{"payload":{}}`), `{"payload":{}}`, 400},
		{"signed, wildcard event", "POST", webhookPath, now, sign(`{"event":"recording.>"}`), `{"event":"recording.>"}`, 400},
		{"signed, validation without token", "POST", webhookPath, now, sign(`{"event":"endpoint.url_validation","payload":{}}`), `{"event":"endpoint.url_validation","payload":{}}`, 400},
		{"GET", "GET", webhookPath, "", "", "", 405},
		{"other path", "POST", "/zoom/webhook/x", now, sign(recordingBody), recordingBody, 404},
		{"root", "GET", "/", "", "", "", 404},
	}
	for _, c := range cases {
		if c.name == "stale timestamp" {
			c.sig = standins.SignZoom(testSecret, c.ts, []byte(c.body))
		}
		req, _ := http.NewRequest(c.method, strings.TrimSuffix(h.url, webhookPath)+c.path, strings.NewReader(c.body))
		if c.ts != "" {
			req.Header.Set("x-zm-request-timestamp", c.ts)
		}
		if c.sig != "" {
			req.Header.Set("x-zm-signature", c.sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s: Allow %q", c.name, resp.Header.Get("Allow"))
		}
	}
	if n := len(storedEvents(t, natsURL)); n != 0 {
		t.Fatalf("rejected requests stored %d events", n)
	}
	for _, reason := range []string{"bad_headers", "stale", "bad_signature"} {
		if h.metric(t, `zoomarchive_hook_rejected_signatures_total{reason="`+reason+`"}`) == 0 {
			t.Errorf("no rejected_signatures metric for %s", reason)
		}
	}
}

// Forged requests are answered late and logged sparingly: a flood of them waits on
// itself and fills no disk, and every one is still counted.
func TestForgedRequestsAnsweredLateAndLoggedSparingly(t *testing.T) {
	_, h := newStack(t)
	now := fmt.Sprint(time.Now().Unix())
	forged := standins.SignZoom("not-the-secret", now, []byte(recordingBody))
	var wg sync.WaitGroup
	var fast atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", h.url, strings.NewReader(recordingBody))
			req.Header.Set("x-zm-request-timestamp", now)
			req.Header.Set("x-zm-signature", forged)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d", resp.StatusCode)
			}
			if time.Since(start) < 200*time.Millisecond {
				fast.Add(1)
			}
		}()
	}
	wg.Wait()
	if fast.Load() > 0 {
		t.Errorf("%d of 20 forged requests answered within 200 ms", fast.Load())
	}
	if n := h.metric(t, `zoomarchive_hook_requests_total{outcome="bad_signature"}`); n != 20 {
		t.Errorf("%v counted, want 20", n)
	}
	lines := 0
	for _, l := range h.Logs.Lines() {
		if l["outcome"] == "bad_signature" {
			lines++
		}
	}
	if lines == 0 || lines > 2 {
		t.Errorf("%d log lines for 20 forged requests within a second, want 1 or 2", lines)
	}
}

// Forged requests on more connections than the hook holds back at once: no more
// than refusedHeldMax refusals wait at a time, nor more bodies than
// refusedHeldBytes hold; the others are answered at once and their connections
// closed; every one is counted; and Zoom's events sent meanwhile are stored, each
// answered within Zoom's 3 s.
func TestForgedFloodHeldBackWithinBounds(t *testing.T) {
	natsURL, h := newStack(t)
	var sent atomic.Int64
	genuine := make(chan error, 1000)
	stopGenuine := make(chan struct{})
	genuineDone := make(chan struct{})
	go func() {
		defer close(genuineDone)
		for n := int64(1); ; n++ {
			select {
			case <-stopGenuine:
				return
			case <-time.After(50 * time.Millisecond):
			}
			d := standins.Delivery{Body: []byte(newEvent(n)), RequestID: standins.NewZoomRequestID()}
			if status, _, err := h.zoom.Send(context.Background(), d); err != nil || status != http.StatusOK {
				genuine <- fmt.Errorf("event %d: status %d, %v", n, status, err)
			}
			sent.Add(1)
		}
	}()

	var refused float64
	for _, c := range []struct {
		name       string
		conns, max int
		body       []byte
	}{
		{"small bodies", refusedHeldMax + 128, refusedHeldMax, []byte(recordingBody)},
		{"bodies of 1 MiB", 48, refusedHeldBytes >> 20, bytes.Repeat([]byte("x"), 1<<20-4<<10)},
	} {
		unheld0 := h.metric(t, "zoomarchive_hook_refusals_unheld_total")
		closed, total, peak := forgedFlood(t, h, c.conns, c.body, 1500*time.Millisecond)
		refused += float64(total)
		if peak > float64(c.max) {
			t.Errorf("%s: %v refusals held back at once, want at most %d", c.name, peak, c.max)
		}
		if peak == 0 || closed == 0 {
			t.Errorf("%s on %d connections: %v held at most, %d of %d answered at once and closed; want the bound of %d reached and the rest closed",
				c.name, c.conns, peak, closed, total, c.max)
		}
		if n := h.metric(t, "zoomarchive_hook_refusals_unheld_total") - unheld0; n != float64(closed) {
			t.Errorf("%s: %v counted as answered at once, %d seen closed", c.name, n, closed)
		}
	}
	close(stopGenuine)
	<-genuineDone
	close(genuine)
	for err := range genuine {
		t.Error(err)
	}
	if n := h.metric(t, `zoomarchive_hook_requests_total{outcome="bad_signature"}`); n != refused {
		t.Errorf("%v forged requests counted, %v answered", n, refused)
	}
	if n := len(storedEvents(t, natsURL)); n != int(sent.Load()) || n == 0 {
		t.Errorf("%d of %d events stored during the flood", n, sent.Load())
	}
}

// forgedFlood sends body with a wrong signature on conns connections, each as
// soon as the last was answered, for d, and samples how many refusals the hook
// holds back meanwhile. It returns the answers that closed their connection, all
// answers, and the most held back at once.
func forgedFlood(t *testing.T, h *testHook, conns int, body []byte, d time.Duration) (closed, total int64, peak float64) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	var failed atomic.Int64
	var closedN, totalN atomic.Int64
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				now := fmt.Sprint(time.Now().Unix())
				req, _ := http.NewRequest("POST", h.url, bytes.NewReader(body))
				req.Header.Set("x-zm-request-timestamp", now)
				req.Header.Set("x-zm-signature", standins.SignZoom("not-the-secret", now, body))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					failed.Add(1)
					continue
				}
				totalN.Add(1)
				if resp.Close {
					closedN.Add(1)
				}
			}
		}()
	}
	for time.Now().Before(end) {
		peak = max(peak, h.metric(t, "zoomarchive_hook_refusals_held"))
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d forged requests not answered 401", failed.Load())
	}
	return closedN.Load(), totalN.Load(), peak
}

// The body limit is enforced from the headers: the hook answers 413 before a
// single byte of the body is sent. (A client that sends the body at once may see
// the connection reset instead: the hook does not read what it refuses.)
func TestOversizedBodyNotRead(t *testing.T) {
	_, h := newStack(t)
	c := h.dial(t)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", webhookPath, 100<<20)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	if resp.StatusCode() != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode())
	}
	if h.metric(t, `zoomarchive_hook_requests_total{outcome="too_large"}`) != 1 {
		t.Error("too_large not counted")
	}
}

// A request fasthttp cannot parse is answered 400 and logged without its bytes: the
// headers it broke on may hold a signature.
func TestMalformedRequestLoggedWithoutItsHeaders(t *testing.T) {
	_, h := newStack(t)
	c := h.dial(t)
	const sig = "v0=5f1c0ffee0ddba11signature"
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nx-zm-signature: %s\r\na header line without its colon %s\r\nContent-Length: 2\r\n\r\n{}", webhookPath, sig, sig)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode() != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode())
	}
	stagetest.WaitFor(t, "the refusal logged", 5*time.Second, func() bool { return strings.Contains(h.Logs.String(), `"outcome":"bad_request"`) })
	if logs := h.Logs.String(); strings.Contains(logs, "5f1c0ffee0ddba11") {
		t.Errorf("the log holds the request's headers:\n%s", logs)
	}
}

func TestBrokerDownThen503ThenBack(t *testing.T) {
	addr, dir := stagetest.FreeAddr(t), t.TempDir()
	s := stagetest.Broker(t, addr, dir)
	natsURL := "nats://" + addr
	h := startHook(t, natsURL, nil)
	h.waitReady(t, 200)

	s.Shutdown()
	s.WaitForShutdown()
	d := standins.Delivery{Body: []byte(recordingBody), RequestID: standins.NewZoomRequestID()}
	start := time.Now()
	status, _, err := h.zoom.Send(context.Background(), d)
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("broker down: status %d err %v, want 503", status, err)
	}
	if took := time.Since(start); took >= zoomDeadline {
		t.Errorf("503 took %s; Zoom waits 3s", took)
	}
	h.waitReady(t, http.StatusServiceUnavailable)
	if h.metric(t, "zoomarchive_hook_publish_failures_total") < 1 {
		t.Error("publish failure not counted")
	}

	stagetest.Broker(t, addr, dir)
	h.waitReady(t, http.StatusOK)
	if status, _, err := h.zoom.Send(context.Background(), d); err != nil || status != 200 {
		t.Fatalf("broker back: status %d err %v", status, err)
	}
	if msgs := storedEvents(t, natsURL); len(msgs) != 1 {
		t.Fatalf("want the event stored once after the broker came back, got %d", len(msgs))
	}
}

// A full ZOOM_EVENTS refuses new events and keeps the old ones: the hook answers
// 503 in time and Zoom retries later; what was stored stays.
func TestFullEventStreamAnswers503(t *testing.T) {
	natsURL, h := newStack(t)
	// A small broker: ZOOM_EVENTS gets a quarter of what the window leaves, 2 MiB.
	topo := stagetest.DefaultTopology
	topo.ChunkWindow, topo.Storage = 8<<20, 16<<20
	if err := topo.Ensure(context.Background(), stagetest.JetStream(t, natsURL)); err != nil {
		t.Fatal(err)
	}
	limit := topo.Shares().Events
	// Genuine events of 600 KB each: three fit, the fourth does not.
	body := func(i int) []byte {
		return []byte(strings.Replace(recordingBody, `"brand_new_field":{"x":1}`,
			fmt.Sprintf(`"brand_new_field":{"x":%d,"pad":%q}`, i, strings.Repeat("z", 600_000)), 1))
	}
	for i := range 3 {
		if status, _, err := h.zoom.Send(context.Background(), standins.Delivery{Body: body(i), RequestID: standins.NewZoomRequestID()}); err != nil || status != http.StatusOK {
			t.Fatalf("event %d: status %d, err %v", i, status, err)
		}
	}
	start := time.Now()
	status, _, err := h.zoom.Send(context.Background(), standins.Delivery{Body: body(3), RequestID: standins.NewZoomRequestID()})
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("an event past the stream's %d bytes: status %d, err %v; want 503", limit, status, err)
	}
	if took := time.Since(start); took >= zoomDeadline {
		t.Errorf("503 took %s; Zoom waits 3s", took)
	}
	if h.metric(t, "zoomarchive_hook_publish_failures_total") != 1 {
		t.Error("the refused event was not counted")
	}
	msgs := storedEvents(t, natsURL)
	var stored int
	for _, m := range msgs {
		stored += len(m.Data)
	}
	if len(msgs) != 3 || !bytes.Contains(msgs[0].Data, []byte(`"x":0,`)) || int64(stored) > limit {
		t.Fatalf("stored %d events, %d bytes (limit %d); want the first three, kept", len(msgs), stored, limit)
	}
}

// A broker that holds the connection but stops answering: 503 at the publish
// timeout, before Zoom's 3 s; the late store and Zoom's retry still make one event.
func TestSlowBrokerAnswers503InTime(t *testing.T) {
	addr, dir := stagetest.FreeAddr(t), t.TempDir()
	stagetest.Broker(t, addr, dir)
	p := stagetest.NewStallProxy(t, addr)
	stagetest.UseAuth("nats://"+p.Addr(), stagetest.Auth(t, dir))
	h := startHook(t, "nats://"+p.Addr(), nil)
	h.waitReady(t, 200)

	d := standins.Delivery{Body: []byte(recordingBody), RequestID: standins.NewZoomRequestID()}
	p.Pause()
	start := time.Now()
	status, _, err := h.zoom.Send(context.Background(), d)
	took := time.Since(start)
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("stalled broker: status %d err %v, want 503", status, err)
	}
	if took < 2*time.Second || took >= zoomDeadline {
		t.Errorf("answered after %s; want the 2s publish timeout, under Zoom's 3s", took)
	}
	p.Resume()
	if status, _, err := h.zoom.Send(context.Background(), d); err != nil || status != 200 {
		t.Fatalf("retry: status %d err %v", status, err)
	}
	if n := len(storedEvents(t, "nats://"+addr)); n != 1 {
		t.Fatalf("stored %d events, want 1", n)
	}
}

// SIGTERM (a cancelled context) lets a request in flight finish with its answer.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	addr, dir := stagetest.FreeAddr(t), t.TempDir()
	stagetest.Broker(t, addr, dir)
	p := stagetest.NewStallProxy(t, addr)
	stagetest.UseAuth("nats://"+p.Addr(), stagetest.Auth(t, dir))
	h := startHook(t, "nats://"+p.Addr(), nil)
	h.waitReady(t, 200)

	p.Pause()
	d := standins.Delivery{Body: []byte(recordingBody), RequestID: standins.NewZoomRequestID()}
	// The request is written whole before the stop: it is in flight, waiting for the
	// stalled broker.
	conn, err := net.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := h.zoom.Request(context.Background(), d)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Errorf("in-flight request: %v", err)
			answered <- 0
			return
		}
		answered <- resp.StatusCode
	}()
	time.Sleep(200 * time.Millisecond) // the hook has read it and waits for the broker
	stopped := make(chan error, 1)
	go func() { stopped <- h.Stop() }()
	time.Sleep(200 * time.Millisecond)
	p.Resume()
	if status := <-answered; status != 200 {
		t.Fatalf("in-flight request answered %d, want 200", status)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run returned %v", err)
	}
	if n := len(storedEvents(t, "nats://"+addr)); n != 1 {
		t.Fatalf("stored %d events, want 1", n)
	}
	if _, err := net.DialTimeout("tcp", h.addr(), time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	// Started before its broker: alive, not ready, and answering 503 to Zoom.
	addr, dir := stagetest.FreeAddr(t), t.TempDir()
	stagetest.UseAuth("nats://"+addr, stagetest.Auth(t, dir))
	h := startHook(t, "nats://"+addr, nil)
	resp, err := http.Get(h.metrics + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	h.waitReady(t, http.StatusServiceUnavailable)
	d := standins.Delivery{Body: []byte(recordingBody), RequestID: standins.NewZoomRequestID()}
	if status, _, _ := h.zoom.Send(context.Background(), d); status != 503 {
		t.Fatalf("no broker yet: status %d, want 503", status)
	}
	stagetest.Broker(t, addr, dir)
	h.waitReady(t, http.StatusOK)
	if status, _, _ := h.zoom.Send(context.Background(), d); status != 200 {
		t.Fatalf("broker up: status %d, want 200", status)
	}
	if h.metric(t, `zoomarchive_hook_request_seconds_count`) < 2 {
		t.Error("latency histogram not filled")
	}
}

func TestSettingsErrorsListEverything(t *testing.T) {
	env := map[string]string{
		"HOOK_MAX_SKEW":        "soon",
		"HOOK_PUBLISH_TIMEOUT": "5s",
		"HOOK_MAX_BODY":        "1TB",
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"hook"}, func(k string) string { return env[k] }, &out, &out)
	if err == nil {
		t.Fatal("started without settings")
	}
	for _, want := range []string{"ZOOM_WEBHOOK_SECRET: required", "NATS_CREDS: required", "HOOK_MAX_SKEW", "HOOK_PUBLISH_TIMEOUT", "HOOK_MAX_BODY", "5 setting(s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

// FuzzWebhook drives the request handler with any signed body and headers: it never
// panics and answers only with the documented statuses.
func FuzzWebhook(f *testing.F) {
	f.Add([]byte(recordingBody), "abc_1", true)
	f.Add([]byte(crcBody), "", true)
	f.Add([]byte(`{"event":"endpoint.url_validation","payload":{"plainToken":7}}`), "x", true)
	f.Add([]byte(`{"event":"a..b"}`), "", false)
	nc, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true))
	if err != nil {
		f.Fatal(err)
	}
	defer nc.Close()
	h := newHook(newVerifier([]string{testSecret}, 300*time.Second), time.Second, obs.Logger(io.Discard, "hook"), obs.Registry())
	h.nc = nc
	f.Fuzz(func(t *testing.T, body []byte, rid string, signed bool) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI(webhookPath)
		ts := fmt.Sprint(time.Now().Unix())
		ctx.Request.Header.Set("x-zm-request-timestamp", ts)
		ctx.Request.Header.Set("x-zm-request-id", rid)
		if signed {
			ctx.Request.Header.Set("x-zm-signature", standins.SignZoom(testSecret, ts, body))
		}
		ctx.Request.SetBody(body)
		h.answer(&ctx)
		switch st := ctx.Response.StatusCode(); st {
		case 200:
			var ans map[string]string
			if err := json.Unmarshal(ctx.Response.Body(), &ans); err != nil || ans["encryptedToken"] == "" {
				t.Fatalf("200 without a validation answer: %s", ctx.Response.Body())
			}
		case 400, 503:
			if !signed {
				t.Fatalf("unsigned request got %d, want 401", st)
			}
		case 401:
			if signed {
				t.Fatal("signed request refused as unsigned")
			}
		default:
			t.Fatalf("status %d", st)
		}
	})
}

func assertNoSecretsLogged(t *testing.T, h *testHook, sigs ...string) {
	t.Helper()
	logs := h.Logs.String()
	for _, secret := range append([]string{testSecret, "secret-download-token", "Kirschgarten"}, sigs...) {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q", secret)
		}
	}
	if !strings.Contains(logs, `"outcome":"accepted"`) {
		t.Error("no log line per request")
	}
}

// Credentials that are missing, another program's, or not the broker's: the hook
// stops with one error naming NATS_CREDS and what is wrong, never serves blind.
func TestWrongCredentialsStopTheHook(t *testing.T) {
	url := stagetest.NewBroker(t)
	other := stagetest.Auth(t, t.TempDir())
	for _, c := range []struct{ creds, want string }{
		{filepath.Join(t.TempDir(), "missing.creds"), "no such file"},
		{stagetest.Creds(t, url, events.IdentityFetch), `holds the identity "fetch", not "hook"`},
		{filepath.Join(other, "hook.creds"), "the broker refused them: nats: authorization violation"},
	} {
		env := map[string]string{"ZOOM_WEBHOOK_SECRET": testSecret, "HOOK_ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0",
			"NATS_URL": url, "NATS_CREDS": c.creds}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var out bytes.Buffer
		err := run(ctx, []string{"hook"}, func(k string) string { return env[k] }, &out, &out)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "NATS_CREDS") || !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("%s: %v, want NATS_CREDS and %q", c.creds, err, c.want)
		}
	}
}

// hook check sends Zoom's URL validation through HOOK_PUBLIC_URL to the running
// hook and proves its answer; another secret, or no hook there, is named.
func TestCheckValidatesThroughThePublicURL(t *testing.T) {
	natsURL, h := newStack(t)
	env := stagetest.Merge(stagetest.Env(t, natsURL, events.IdentityHook), map[string]string{
		"ZOOM_WEBHOOK_SECRET": testSecret, "HOOK_PUBLIC_URL": h.url})
	out, err := stagetest.Command(run, env, "hook", "check")
	if err != nil || strings.Count(out, "hook: ok ") != 2 {
		t.Fatalf("a good deployment: %v\n%s", err, out)
	}
	out, err = stagetest.Command(run, stagetest.Merge(env, map[string]string{"ZOOM_WEBHOOK_SECRET": "another"}), "hook", "check")
	if err == nil || !strings.Contains(out, "hook: FAIL Zoom's URL validation") || !strings.Contains(out, "same ZOOM_WEBHOOK_SECRET") {
		t.Errorf("another secret: %v\n%s", err, out)
	}
	// A hook of another deployment, whose first secret is not ours: it verifies ours
	// (second) but answers with its own.
	other := startHook(t, natsURL, map[string]string{"ZOOM_WEBHOOK_SECRET": "theirs," + testSecret})
	out, err = stagetest.Command(run, stagetest.Merge(env, map[string]string{"HOOK_PUBLIC_URL": other.url}), "hook", "check")
	if err == nil || !strings.Contains(out, "answered with another secret") {
		t.Errorf("another deployment's hook: %v\n%s", err, out)
	}
	// A host DNS does not point at yet, reached at its address.
	out, err = stagetest.Command(run, stagetest.Merge(env, map[string]string{"HOOK_PUBLIC_URL": "http://archive.example.invalid" + webhookPath,
		"HOOK_CHECK_CONNECT": strings.TrimSuffix(strings.TrimPrefix(h.url, "http://"), webhookPath)}), "hook", "check")
	if err != nil || !strings.Contains(out, "hook: ok   Zoom's URL validation through http://archive.example.invalid/zoom/webhook at 127.0.0.1:") {
		t.Errorf("HOOK_CHECK_CONNECT: %v\n%s", err, out)
	}
	out, err = stagetest.Command(run, stagetest.Merge(env, map[string]string{"HOOK_PUBLIC_URL": ""}), "hook", "check")
	if err == nil || !strings.Contains(err.Error(), "HOOK_PUBLIC_URL") {
		t.Errorf("no HOOK_PUBLIC_URL: %v\n%s", err, out)
	}
}
