package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

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

// deliver sends one new signed event, as Zoom would, and returns the status.
func deliver(c *fasthttp.Client, url string, n int64) int {
	body := []byte(strings.Replace(recordingBody, `"event_ts":1773513000000`, `"event_ts":`+strconv.FormatInt(1773513000000+n, 10), 1))
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
	var n, failed atomic.Int64
	b.SetParallelism(32) // 32 x GOMAXPROCS senders
	b.ResetTimer()
	start := time.Now()
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
	const rate = 1000
	total := b.N * rate
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < total; i++ {
		planned := start.Add(time.Duration(i) * time.Second / rate)
		time.Sleep(time.Until(planned))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if deliver(c, h.url, int64(i)) != 200 {
				failed.Add(1)
			}
			lat[i] = time.Since(planned)
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d deliveries failed", failed.Load(), total)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(q float64) float64 { return float64(lat[int(q*float64(total-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		fmt.Printf("%d events at %d/s: p50 %.2fms p99 %.2fms max %.2fms\n", total, rate, ms(.5), ms(.99), ms(1))
	}
}
