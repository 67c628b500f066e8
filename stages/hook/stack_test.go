package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// testHook is the hook started through run(), as main starts it, with the test
// secret, and Zoom's webhook sender pointed at it.
type testHook struct {
	*stagetest.Stage
	url, metrics string
	zoom         *standins.ZoomWebhooks
}

// addr is the hook's listener, host:port.
func (h *testHook) addr() string {
	return strings.TrimPrefix(strings.TrimSuffix(h.url, webhookPath), "http://")
}

// dial is a raw connection to the hook, closed when the test ends.
func (h *testHook) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startHook(t testing.TB, natsURL string, extra map[string]string) *testHook {
	t.Helper()
	env := map[string]string{
		"ZOOM_WEBHOOK_SECRET": testSecret,
		"HOOK_ADDR":           "127.0.0.1:0",
		"METRICS_ADDR":        "127.0.0.1:0",
	}
	env = stagetest.Merge(env, stagetest.Env(t, natsURL, events.IdentityHook))
	env = stagetest.Merge(env, extra)
	h := &testHook{Stage: stagetest.Start(t, "hook", run, env)}
	l := h.WaitLog(t, "listening")
	h.url = "http://" + l["webhook"].(string) + webhookPath
	h.metrics = "http://" + l["metrics"].(string)
	h.zoom = &standins.ZoomWebhooks{URL: h.url, Secret: testSecret}
	return h
}

// newStack is a broker and a ready hook.
func newStack(t *testing.T) (natsURL string, h *testHook) {
	t.Helper()
	natsURL = stagetest.NewBroker(t)
	h = startHook(t, natsURL, nil)
	h.waitReady(t, http.StatusOK)
	return natsURL, h
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
	t.Fatalf("/readyz answered %d, want %d; log:\n%s", got, want, h.Logs.String())
}

// metric is one sample of the hook's /metrics.
func (h *testHook) metric(t testing.TB, sample string) float64 {
	t.Helper()
	return stagetest.Metric(t, strings.TrimPrefix(h.metrics, "http://"), sample)
}

func storedEvents(t testing.TB, natsURL string) []*jetstream.RawStreamMsg {
	return stagetest.StreamMsgs(t, natsURL, events.StreamZoomEvents)
}
