package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// The hook end to end: loopback HTTP, signature check, JetStream file-storage
// acknowledgement. Client, hook and broker share the machine's cores.

func benchStack(b *testing.B) (*testHook, *fasthttp.Client) {
	b.Helper()
	h := startHook(b, stagetest.NewBroker(b), nil)
	h.waitReady(b, 200)
	return h, &fasthttp.Client{MaxConnsPerHost: 1024, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
}

// newEvent is recordingBody made the n-th of its kind: another event_ts.
func newEvent(n int64) string {
	return strings.Replace(recordingBody, `"event_ts":1773513000000`, `"event_ts":`+strconv.FormatInt(1773513000000+n, 10), 1)
}

// deliver sends one new signed event, as Zoom would, and returns the status.
func deliver(c *fasthttp.Client, url string, n int64) int {
	body := []byte(newEvent(n))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json; charset=utf-8")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", standins.SignZoom(testSecret, ts, body))
	req.Header.Set("x-zm-request-id", standins.NewZoomRequestID())
	req.SetBody(body)
	if err := c.Do(req, resp); err != nil {
		return 0
	}
	return resp.StatusCode()
}

// BenchmarkHookSaturation: as many events as 64 concurrent senders get stored.
func BenchmarkHookSaturation(b *testing.B) {
	h, c := benchStack(b)
	b.SetParallelism(32) // 32 x GOMAXPROCS senders
	b.ResetTimer()
	start := time.Now()
	var failed atomic.Int64
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if deliver(c, h.url, n.Add(1)) != 200 {
				failed.Add(1)
			}
		}
	})
	el := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d deliveries failed", failed.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}

// BenchmarkHookLatencyAt1000: an open-loop load of 1,000 events/s; each iteration
// is one second of it. Latency runs from the planned send time, so a stall counts.
func BenchmarkHookLatencyAt1000(b *testing.B) {
	h, c := benchStack(b)
	b.ResetTimer()
	p50, p99, max := openLoop(b, c, h.url, 1000, time.Duration(b.N)*time.Second, 0)
	b.StopTimer()
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(max, "max-ms")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		fmt.Printf("%d s at 1000/s: p50 %.2fms p99 %.2fms max %.2fms\n", b.N, p50, p99, max)
	}
}

// BenchmarkHookUnderFlood: the hook as its own process, a broker in this one, and
// this process sending genuine signed events; then the same again while a third
// process floods the hook with forged ones (a wrong signature, 64 connections or
// FLOOD_CONNS, as fast as the hook answers them). Reported for both: the events stored per second
// by 64 senders at saturation (5 s), p50/p99 at an open-loop 1,000 events/s (5 s),
// and, with the flood, the forged requests refused per second meanwhile.
func BenchmarkHookUnderFlood(b *testing.B) {
	for range b.N {
		url := stagetest.NewBroker(b)
		env := stagetest.Merge(map[string]string{"ZOOM_WEBHOOK_SECRET": testSecret, "HOOK_ADDR": stagetest.FreeAddr(b),
			"METRICS_ADDR": stagetest.FreeAddr(b)}, stagetest.Env(b, url, events.IdentityHook))
		p := stagetest.StartProcess(b, "hook", env)
		p.WaitLog(b, "ready")
		hookURL := "http://" + env["HOOK_ADDR"] + webhookPath
		c := &fasthttp.Client{MaxConnsPerHost: 1024, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
		var seq atomic.Int64
		for _, flooded := range []bool{false, true} {
			name := "quiet"
			if flooded {
				name = "flood"
				flood := stagetest.StartProcess(b, "flood", map[string]string{"FLOOD_URL": hookURL, "FLOOD_CONNS": os.Getenv("FLOOD_CONNS")})
				defer flood.Kill()
				time.Sleep(time.Second) // at full speed
			}
			refused0, t0 := stagetest.Metric(b, env["METRICS_ADDR"], `zoomarchive_hook_requests_total{outcome="bad_signature"}`), time.Now()
			b.ReportMetric(saturate(b, c, hookURL, &seq, 5*time.Second), name+"-events/s")
			p50, p99, _ := openLoop(b, c, hookURL, 1000, 5*time.Second, seq.Add(1<<30))
			b.ReportMetric(p50, name+"-p50-ms")
			b.ReportMetric(p99, name+"-p99-ms")
			if flooded {
				refused := stagetest.Metric(b, env["METRICS_ADDR"], `zoomarchive_hook_requests_total{outcome="bad_signature"}`) - refused0
				b.ReportMetric(refused/time.Since(t0).Seconds(), "forged-refused/s")
			}
		}
		b.ReportMetric(0, "ns/op")
	}
}

// saturate sends new events from 64 senders for d; it returns how many a second
// were stored.
func saturate(b *testing.B, c *fasthttp.Client, url string, seq *atomic.Int64, d time.Duration) float64 {
	var stored, failed atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if deliver(c, url, seq.Add(1)) == 200 {
					stored.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d deliveries failed", failed.Load(), failed.Load()+stored.Load())
	}
	return float64(stored.Load()) / d.Seconds()
}

// openLoop sends rate new events a second for d, each at its planned time whether
// or not the earlier ones were answered, and returns the p50, p99 and max latency
// in ms, counted from the planned time so that a stall counts.
func openLoop(b *testing.B, c *fasthttp.Client, url string, rate int, d time.Duration, first int64) (p50, p99, max float64) {
	total := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for i := range total {
		planned := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(planned))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if deliver(c, url, first+int64(i)) != 200 {
				failed.Add(1)
			}
			lat[i] = time.Since(planned)
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d deliveries failed", failed.Load(), total)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(q float64) float64 { return float64(lat[int(q*float64(total-1))]) / float64(time.Millisecond) }
	return ms(0.50), ms(0.99), ms(1)
}

func TestMain(m *testing.M) {
	stagetest.MainIfStage("hook", main)
	stagetest.MainIfStage("flood", flood)
	os.Exit(m.Run())
}

// flood is the forged load of BenchmarkHookUnderFlood: FLOOD_CONNS connections
// (64 unless set) sending recording events with a current timestamp and a wrong
// signature to FLOOD_URL, each as soon as the last was answered, until killed.
func flood() {
	url := os.Getenv("FLOOD_URL")
	conns, err := strconv.Atoi(os.Getenv("FLOOD_CONNS"))
	if err != nil {
		conns = 64
	}
	c := &fasthttp.Client{MaxConnsPerHost: conns, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	body := []byte(recordingBody)
	forged := standins.SignZoom("not-the-secret", "0", body)
	for range conns {
		go func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for {
				req.Reset()
				req.SetRequestURI(url)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json; charset=utf-8")
				req.Header.Set("x-zm-request-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
				req.Header.Set("x-zm-signature", forged)
				req.SetBody(body)
				c.Do(req, resp) // refused or not, the next goes at once
			}
		}()
	}
	select {}
}
