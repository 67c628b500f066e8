package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestLoggerTagsEachLineWithItsStage(t *testing.T) {
	var b bytes.Buffer
	Logger(&b, "fetch").Info("file fetched", "bytes", 3)
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON object: %q", b.String())
	}
	if line["stage"] != "fetch" || line["msg"] != "file fetched" || line["bytes"] != 3.0 {
		t.Errorf("line %v", line)
	}
}

func TestListenerAnswersHealthReadinessAndMetrics(t *testing.T) {
	var notReady atomic.Pointer[error]
	l, err := Listen("127.0.0.1:0", Registry(), func() error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Serve(ctx)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + l.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		path     string
		notReady error
		status   int
		body     string
	}{
		{"/healthz", nil, 200, "ok"},
		{"/readyz", nil, 200, "ready"},
		{"/readyz", errors.New("broker not connected"), 503, "not ready: broker not connected"},
		{"/healthz", errors.New("broker not connected"), 200, "ok"}, // running, even when not ready
		{"/metrics", nil, 200, "go_goroutines"},
	} {
		if c.notReady != nil {
			notReady.Store(&c.notReady)
		} else {
			notReady.Store(nil)
		}
		if status, body := get(c.path); status != c.status || !strings.Contains(body, c.body) {
			t.Errorf("%s (ready: %v): %d %q, want %d with %q", c.path, c.notReady, status, body, c.status, c.body)
		}
		if err := Probe(context.Background(), l.Addr(), c.path); (err == nil) != (c.status == 200) {
			t.Errorf("Probe %s: %v, want it to pass exactly when the answer is 200", c.path, err)
		}
	}
}

// A listener on every interface is probed over loopback.
func TestProbeAsksLoopbackForEveryInterface(t *testing.T) {
	l, err := Listen(":0", Registry(), func() error { return nil }, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Serve(ctx)
	_, port, _ := net.SplitHostPort(l.Addr())
	for _, addr := range []string{":" + port, "0.0.0.0:" + port, "[::]:" + port} {
		if err := Probe(context.Background(), addr, "/healthz"); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

// Go's profiles are served only when asked for (METRICS_PPROF, BROKER_PPROF).
func TestProfilesOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		l, err := Listen("127.0.0.1:0", Registry(), func() error { return nil }, on)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go l.Serve(ctx)
		resp, err := http.Get("http://" + l.Addr() + "/debug/pprof/heap?debug=1")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if served := resp.StatusCode == http.StatusOK; served != on {
			t.Errorf("profiles asked for: %v; /debug/pprof/heap answered %s", on, resp.Status)
		}
	}
}
