package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broker "zoomarchive/nats"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/standins"
)

// Test support: a real nats-server with file storage, the hook started through run()
// as main starts it, and a proxy that can stall the hook's broker connection.

// logBuf collects a stage's JSON log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines are the log lines parsed so far.
func (l *logBuf) lines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitFor returns the first log line with message msg, waiting up to 10 s.
func (l *logBuf) waitFor(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range l.lines() {
			if m["msg"] == msg {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line %q within 10s; log:\n%s", msg, l.String())
	return nil
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBroker runs the project's embedded broker on addr with file storage in dir.
func startBroker(t testing.TB, addr, dir string) *server.Server {
	t.Helper()
	s, err := broker.Start(broker.Config{Listen: addr, StoreDir: dir}, obs.Logger(io.Discard, "broker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

type testHook struct {
	url, metrics string
	logs         *logBuf
	cancel       context.CancelFunc
	done         chan error
	zoom         *standins.ZoomWebhooks
}

// startHook runs the hook against natsURL with the test secret and extra settings,
// and waits until it listens.
func startHook(t testing.TB, natsURL string, extra map[string]string) *testHook {
	t.Helper()
	env := map[string]string{
		"ZOOM_WEBHOOK_SECRET": testSecret,
		"HOOK_ADDR":           "127.0.0.1:0",
		"METRICS_ADDR":        "127.0.0.1:0",
		"NATS_URL":            natsURL,
	}
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &testHook{logs: &logBuf{}, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- run(ctx, []string{"hook"}, func(k string) string { return env[k] }, h.logs, h.logs) }()
	var l map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for l == nil && time.Now().Before(deadline) {
		select {
		case err := <-h.done:
			t.Fatalf("hook stopped at start: %v\n%s", err, h.logs.String())
		default:
		}
		for _, m := range h.logs.lines() {
			if m["msg"] == "listening" {
				l = m
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if l == nil {
		t.Fatalf("hook did not listen; log:\n%s", h.logs.String())
	}
	h.url = "http://" + l["webhook"].(string) + webhookPath
	h.metrics = "http://" + l["metrics"].(string)
	h.zoom = &standins.ZoomWebhooks{URL: h.url, Secret: testSecret}
	t.Cleanup(func() { h.stop() })
	return h
}

// stop cancels the hook as SIGTERM would and returns what run returned.
func (h *testHook) stop() error {
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(15 * time.Second):
		return context.DeadlineExceeded
	}
}

// waitReady polls /readyz until it answers want.
func (h *testHook) waitReady(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		if resp, err := http.Get(h.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if got = resp.StatusCode; got == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/readyz answered %d, want %d; log:\n%s", got, want, h.logs.String())
}

// metric is the value of one sample line of /metrics, e.g.
// zoomarchive_hook_requests_total{outcome="accepted"}; 0 when absent.
func (h *testHook) metric(t testing.TB, sample string) float64 {
	t.Helper()
	resp, err := http.Get(h.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			json.Unmarshal([]byte(rest), &v)
			return v
		}
	}
	return 0
}

// storedEvents reads every message of ZOOM_EVENTS.
func storedEvents(t testing.TB, natsURL string) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamZoomEvents)
	if err != nil {
		t.Fatalf("stream %s: %v", events.StreamZoomEvents, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// stallProxy forwards TCP to target; while paused it holds every byte, like a broker
// that stopped answering without closing the connection.
type stallProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	held   int // reads waiting for resume
}

func newStallProxy(t testing.TB, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { p.resume(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

func (p *stallProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.held++
			for p.paused {
				p.cond.Wait()
			}
			p.held--
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

// waitHeld waits until the proxy holds bytes back.
func (p *stallProxy) waitHeld(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held > 0 {
			return
		}
	}
	t.Fatal("nothing reached the stalled broker connection")
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	p.cond.Broadcast()
}
