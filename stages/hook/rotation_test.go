package main

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// The webhook secret rotated as docs/operating.md says (the new one added second, Zoom
// switched, the new one moved first, the old one dropped), without a restart, with
// deliveries every 100 ms throughout: none refused, each stored once. A file that
// holds no secret on the way keeps the secrets in use and fails /readyz until fixed.
func TestWebhookSecretRotationLosesNothing(t *testing.T) {
	natsURL := stagetest.NewBroker(t)
	file := filepath.Join(t.TempDir(), "webhook-secret")
	set := func(secrets string) { stagetest.Rewrite(t, file, secrets+"\n") }
	set("old-secret")
	h := startHook(t, natsURL, map[string]string{"ZOOM_WEBHOOK_SECRET": "", "ZOOM_WEBHOOK_SECRET_FILE": file})
	h.waitReady(t, http.StatusOK)

	var mu sync.Mutex
	zoomSecret := "old-secret" // what the Zoom app signs with
	var sent, refused atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { cancel(); wg.Wait() }) // a failed wait below ends the test: the sender stops first
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			mu.Lock()
			zoom := standins.ZoomWebhooks{URL: h.url, Secret: zoomSecret}
			mu.Unlock()
			d := standins.Delivery{Body: []byte(newEvent(int64(i))), RequestID: standins.NewZoomRequestID()}
			sent.Add(1)
			if status, _, err := zoom.Send(context.Background(), d); err != nil || status != http.StatusOK {
				refused.Add(1)
				t.Errorf("delivery %d: status %d, %v", i, status, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	reloads := 0
	reloaded := func(want int) {
		t.Helper()
		reloads++
		stagetest.WaitFor(t, "the secrets reloaded", 15*time.Second, func() bool {
			n := 0
			for _, l := range h.Logs.Lines() {
				if l["msg"] == "webhook secrets reloaded" {
					n++
					if n == reloads && l["secrets"] != float64(want) {
						t.Fatalf("reload %d: %v secrets, want %d", reloads, l["secrets"], want)
					}
				}
			}
			return n >= reloads
		})
	}

	set("old-secret,new-secret") // 1. the new one, second
	reloaded(2)
	mu.Lock()
	zoomSecret = "new-secret" // 2. Zoom's app gets it (Regenerate in the Marketplace)
	mu.Unlock()
	time.Sleep(time.Second)
	set("new-secret,old-secret") // 3. the new one first: it answers validation
	reloaded(2)
	set(" , ") // a slip on the way: nothing usable
	h.waitReady(t, http.StatusServiceUnavailable)
	set("new-secret") // 4. the old one dropped
	reloaded(1)
	h.waitReady(t, http.StatusOK)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	if n := len(storedEvents(t, natsURL)); int64(n) != sent.Load() || refused.Load() > 0 {
		t.Fatalf("%d deliveries, %d refused, %d stored; want every one stored once", sent.Load(), refused.Load(), n)
	}
}
